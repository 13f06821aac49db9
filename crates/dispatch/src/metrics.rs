//! Dispatch metrics (`igrelay_dispatch_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub outcomes: Family<OutcomeLabel, Counter>,
    pub calls: Counter,
    pub throttled: Counter,
    pub retries: Counter,
    pub partitions: Gauge,
    /// Commands fetched and not yet finished (queued in lanes, parked, or in hand).
    pub queued: Gauge,
    /// Accounts whose commands are parked because the account is not active.
    pub parked_accounts: Gauge,
    /// Accounts with commands in the park stream (IGRELAY_PARKED), in this process's partitions.
    pub park_stream_accounts: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("igrelay_dispatch");
        r.register(
            "outcomes",
            "Commands finished, by outcome (sent, rejected, failed, expired, duplicate, dead_letter)",
            m.outcomes.clone(),
        );
        r.register("graph_calls", "Graph API calls made", m.calls.clone());
        r.register("throttled", "Graph API answers that were throttling errors", m.throttled.clone());
        r.register("retries", "Retries after transient errors", m.retries.clone());
        r.register("partitions_held", "Command partitions this process serves", m.partitions.clone());
        r.register(
            "queued",
            "Commands fetched and not finished yet (queued in lanes, parked, or in hand), each counted once",
            m.queued.clone(),
        );
        r.register(
            "parked_accounts",
            "Accounts whose commands are parked until the account is active again (new token)",
            m.parked_accounts.clone(),
        );
        r.register(
            "park_stream_accounts",
            "Accounts of this process's partitions with commands in the park stream IGRELAY_PARKED",
            m.park_stream_accounts.clone(),
        );
        m
    }

    pub fn outcome(&self, outcome: &'static str) {
        self.outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

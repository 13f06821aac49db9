//! Gateway metrics (`igrelay_gateway_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Commands accepted, by kind (send, upload), duplicates included.
    pub commands: Family<KindLabel, Counter>,
    /// Resubmitted commands JetStream already had.
    pub duplicates: Counter,
    /// Open StreamEvents calls.
    pub event_streams: Gauge,
    /// Events delivered to StreamEvents callers.
    pub events_streamed: Counter,
    /// Token refreshes by result (refreshed, failed, retry_later).
    pub token_refreshes: Family<ResultLabel, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("igrelay_gateway");
        r.register("commands", "Commands accepted", m.commands.clone());
        r.register("commands_duplicate", "Resubmitted commands already accepted", m.duplicates.clone());
        r.register("event_streams", "Open StreamEvents calls", m.event_streams.clone());
        r.register("events_streamed", "Events delivered to StreamEvents callers", m.events_streamed.clone());
        r.register("token_refreshes", "Instagram token refreshes by result", m.token_refreshes.clone());
        m
    }
}

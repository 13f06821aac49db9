//! Enrich's metrics, named `igrelay_enrich_<name>_<unit>_total` (counters) per the project's
//! telemetry convention (docs/operations.md).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    /// Enriched events published, by outcome (`enriched` or the not-enriched reason).
    pub published: Family<OutcomeLabel, Counter>,
    /// Graph API profile look-ups, by outcome.
    pub lookups: Family<OutcomeLabel, Counter>,
    /// Cache reads, by result (hit, refusal, miss, error).
    pub cache: Family<OutcomeLabel, Counter>,
    /// Data deletion requests, by outcome.
    pub deletions: Family<OutcomeLabel, Counter>,
    /// Events that could not be decoded (acknowledged and skipped; the raw event stays in
    /// IGRELAY_EVENTS).
    pub undecodable: Counter,
    /// From picking an event up to its enriched copy being stored.
    pub latency: Histogram,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            published: Family::default(),
            lookups: Family::default(),
            cache: Family::default(),
            deletions: Family::default(),
            undecodable: Counter::default(),
            // 0.25 ms .. ~4 s
            latency: Histogram::new(exponential_buckets(0.00025, 2.0, 15)),
        };
        let r = registry.sub_registry_with_prefix("igrelay_enrich");
        r.register(
            "events_published",
            "Enriched events stored, by outcome (enriched or the reason)",
            m.published.clone(),
        );
        r.register("profile_lookups", "User Profile API calls, by outcome", m.lookups.clone());
        r.register("cache_reads", "Profile cache reads, by result", m.cache.clone());
        r.register("data_deletions", "Data deletion requests, by outcome", m.deletions.clone());
        r.register("events_undecodable", "Events skipped because they could not be decoded", m.undecodable.clone());
        r.register(
            "event_duration_seconds",
            "Time from picking an event up to storing its enriched copy",
            m.latency.clone(),
        );
        m
    }

    pub fn count(family: &Family<OutcomeLabel, Counter>, outcome: &'static str) {
        family.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

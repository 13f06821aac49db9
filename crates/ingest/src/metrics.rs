//! Ingest's metrics, named `igrelay_ingest_<name>_<unit>_total` (counters) per the project's
//! telemetry convention (docs/operations.md).

use igrelay_bus::subjects::EventKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    pub received: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    /// One counter per kind, in `EventKind::ALL` order, created up front: every kind shows (at 0)
    /// from the start and a delivery does not look its label up.
    published: Vec<Counter>,
    pub duplicates: Counter,
    /// Events too large for one NATS message, stored as `oversized` stand-ins.
    pub oversized: Counter,
    /// Events with a time Meta gave that could not be read (event_time left unset).
    pub time_unreadable: Counter,
    pub latency: Histogram,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let published = Family::<KindLabel, Counter>::default();
        let mut m = Self {
            received: Counter::default(),
            rejected: Family::default(),
            published: Vec::new(),
            duplicates: Counter::default(),
            oversized: Counter::default(),
            time_unreadable: Counter::default(),
            // 0.5 ms .. ~4 s
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 14)),
        };
        let r = registry.sub_registry_with_prefix("igrelay_ingest");
        r.register("webhooks_received", "Webhook POSTs received", m.received.clone());
        r.register("webhooks_rejected", "Webhook requests answered with an error, by reason", m.rejected.clone());
        r.register("events_published", "Events stored in JetStream, by kind", published.clone());
        m.published =
            EventKind::ALL.iter().map(|k| published.get_or_create(&KindLabel { kind: k.token() }).clone()).collect();
        r.register("events_duplicate", "Events JetStream already had (Meta redelivered them)", m.duplicates.clone());
        r.register(
            "events_oversized",
            "Events larger than one NATS message can hold, stored as an unknown event with reason oversized",
            m.oversized.clone(),
        );
        r.register(
            "events_time_unreadable",
            "Events whose time (timestamp, time or entry.time) could not be read; event_time left unset",
            m.time_unreadable.clone(),
        );
        r.register("webhook_duration_seconds", "Time from request to answer of webhook POSTs", m.latency.clone());
        m
    }

    /// Counts one stored event of `kind`.
    pub fn published(&self, kind: EventKind) {
        if let Some(c) = EventKind::ALL.iter().position(|k| *k == kind).and_then(|i| self.published.get(i)) {
            c.inc();
        }
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }
}

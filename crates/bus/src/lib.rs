//! igrelay's NATS layer, and the only code that knows subject strings.
//!
//! - [`subjects`]: every subject igrelay publishes or consumes, built by functions, never by hand.
//! - [`topology`]: stream and KV bucket definitions, created or updated idempotently at start-up.
//! - [`publish`]: JetStream publishing with `Nats-Msg-Id`, `traceparent` and `Igrelay-Type` headers.
//! - [`consume`]: a pull-consumer loop that acks only after the handler succeeded, retries with a
//!   delay, dead-letters poison messages with a reason, and drains on shutdown.
//! - [`trace`]: W3C trace-context propagation through NATS headers.

pub mod connect;
pub mod consume;
pub mod error;
pub mod local_server;
pub mod publish;
pub mod subjects;
pub mod topology;
pub mod trace;

pub use connect::{ConnectConfig, connect};

/// How a service reaches NATS and what it may create there (`[nats]` and `[topology]`).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub nats: ConnectConfig,
    pub topology: TopologyConfig,
}
pub use consume::{ConsumerDef, Delivery, HandlerError, run_consumer};
pub use error::BusError;
pub use publish::{OutgoingMessage, Publisher};
pub use topology::{KvDef, StreamDef, TopologyConfig, ensure_kv, ensure_streams};

/// Header carrying the full protobuf type name of the payload, e.g. `igrelay.v1.Event`.
pub const TYPE_HEADER: &str = "Igrelay-Type";
/// Header carrying the event kind (the last subject token of events), for filters that do not
/// want to parse subjects.
pub const KIND_HEADER: &str = "Igrelay-Kind";
/// Headers added to dead letters.
pub const DLQ_REASON_HEADER: &str = "Igrelay-Dlq-Reason";
pub const DLQ_SUBJECT_HEADER: &str = "Igrelay-Dlq-Subject";
pub const DLQ_STREAM_SEQ_HEADER: &str = "Igrelay-Dlq-Stream-Seq";
pub const DLQ_DELIVERED_HEADER: &str = "Igrelay-Dlq-Delivered";
/// The dead-lettered message's own `Nats-Msg-Id` (the dead letter has an id of its own).
pub const DLQ_MSG_ID_HEADER: &str = "Igrelay-Dlq-Msg-Id";

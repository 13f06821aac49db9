//! The consume loop every service uses: ack only after the handler succeeded, retry later on a
//! transient failure, dead-letter what can never succeed, drain on shutdown.

use std::future::Future;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use bytes::Bytes;
use futures::StreamExt;
use opentelemetry::Context;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::topology::StreamDef;
use crate::{
    BusError, DLQ_DELIVERED_HEADER, DLQ_MSG_ID_HEADER, DLQ_REASON_HEADER, DLQ_STREAM_SEQ_HEADER, DLQ_SUBJECT_HEADER,
    subjects, trace,
};

/// A durable pull consumer.
#[derive(Debug, Clone)]
pub struct ConsumerDef {
    pub stream: StreamDef,
    /// Durable name, shared by all replicas of a service so they split the work.
    pub durable: String,
    /// Subjects to receive (empty = the whole stream).
    pub filter_subjects: Vec<String>,
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries before a message that keeps failing transiently is dead-lettered.
    pub max_deliver: i64,
    /// Unacknowledged messages outstanding at once across all replicas.
    pub max_ack_pending: i64,
    /// Messages fetched per pull.
    pub batch: usize,
}

impl ConsumerDef {
    pub fn new(stream: StreamDef, durable: impl Into<String>) -> Self {
        Self {
            stream,
            durable: durable.into(),
            filter_subjects: Vec::new(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            max_ack_pending: 1000,
            batch: 64,
        }
    }

    pub fn filter(mut self, subject: impl Into<String>) -> Self {
        self.filter_subjects.push(subject.into());
        self
    }

    fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            // One delivery beyond our own limit: we dead-letter on the last one we see, so the
            // server never silently stops delivering a message we have not settled.
            max_deliver: if self.max_deliver > 0 { self.max_deliver + 1 } else { -1 },
            filter_subjects: self.filter_subjects.clone(),
            max_ack_pending: self.max_ack_pending,
            ..Default::default()
        }
    }
}

/// A message handed to a handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    pub headers: HeaderMap,
    /// 1 on first delivery.
    pub delivered: i64,
    pub stream_sequence: u64,
}

/// Why a handler did not finish a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Try again after `after` (NATS down, Graph API throttled, ...).
    #[error("retry after {after:?}: {reason}")]
    Retry { reason: String, after: Duration },
    /// Will never succeed (undecodable payload, ...): dead-letter it with the reason.
    #[error("rejected: {reason}")]
    Reject { reason: String },
}

/// Creates (or updates) the consumer and processes messages one at a time until `shutdown`.
/// On shutdown the message being handled is finished and acknowledged; messages fetched but not
/// started are handed back with a NAK so another replica takes them at once.
pub async fn run_consumer<H, Fut>(
    js: &jetstream::Context,
    def: &ConsumerDef,
    mut handler: H,
    shutdown: CancellationToken,
) -> Result<(), BusError>
where
    H: FnMut(Delivery) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let consumer_err =
        |reason: String| BusError::Consumer { stream: def.stream.name().into(), consumer: def.durable.clone(), reason };
    let stream = js.get_stream(def.stream.name()).await.map_err(|e| consumer_err(e.to_string()))?;
    let consumer: jetstream::consumer::Consumer<pull::Config> =
        stream.create_consumer(def.config()).await.map_err(|e| consumer_err(e.to_string()))?;
    let dlq_subject = subjects::dead_letter(def.stream.name(), &def.durable);

    while !shutdown.is_cancelled() {
        let batch = consumer.fetch().max_messages(def.batch).expires(Duration::from_secs(1)).messages().await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(consumer = %def.durable, error = %e, "fetch failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => None,
                m = batch.next() => m,
            };
            let Some(msg) = next else { break };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "fetch ended");
                    break;
                }
            };
            if shutdown.is_cancelled() {
                hand_back(&msg).await;
                continue;
            }
            handle_one(js, def, &dlq_subject, &mut handler, msg).await;
        }
        // Hand back what was fetched but not started because shutdown arrived mid-batch.
        if shutdown.is_cancelled() {
            while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(50), batch.next()).await {
                hand_back(&msg).await;
            }
        }
    }
    tracing::info!(consumer = %def.durable, "consumer drained");
    Ok(())
}

async fn hand_back(msg: &jetstream::Message) {
    if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
        tracing::warn!(error = %e, "could not hand back message; it returns after ack_wait");
    }
}

async fn handle_one<H, Fut>(
    js: &jetstream::Context,
    def: &ConsumerDef,
    dlq_subject: &str,
    handler: &mut H,
    msg: jetstream::Message,
) where
    H: FnMut(Delivery) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let (delivered, stream_sequence) = msg.info().map(|i| (i.delivered, i.stream_sequence)).unwrap_or((1, 0));
    let headers = msg.headers.clone().unwrap_or_default();
    let span = tracing::info_span!(
        "process",
        otel.name = %format!("process {}", msg.subject),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.destination.name = %msg.subject,
        messaging.consumer.group.name = %def.durable,
        messaging.message.id = tracing::field::Empty,
    );
    if let Some(id) = headers.get("Nats-Msg-Id") {
        span.record("messaging.message.id", id.as_str());
    }
    if let Some(parent) = trace::extract(&headers) {
        let _ = span.set_parent(parent);
    }
    let delivery = Delivery {
        subject: msg.subject.to_string(),
        payload: msg.payload.clone(),
        headers,
        delivered,
        stream_sequence,
    };
    let result = handler(delivery).instrument(span.clone()).await;
    let _enter = span.enter();
    let settle = match result {
        Ok(()) => msg.ack().await,
        Err(HandlerError::Retry { reason, after }) if def.max_deliver <= 0 || delivered < def.max_deliver => {
            tracing::warn!(delivered, %reason, "handler will retry");
            msg.ack_with(AckKind::Nak(Some(after))).await
        }
        Err(HandlerError::Retry { reason, .. }) => {
            let reason = format!("gave up after {delivered} deliveries: {reason}");
            return dead_letter(js, dlq_subject, &msg, &reason, delivered).await;
        }
        Err(HandlerError::Reject { reason }) => {
            return dead_letter(js, dlq_subject, &msg, &reason, delivered).await;
        }
    };
    if let Err(e) = settle {
        tracing::warn!(error = %e, "ack failed; the message will be delivered again");
    }
}

/// Copies the message to the dead-letter subject with the reason, then terminates it. If the
/// copy cannot be stored the message is NAKed instead, so nothing is lost.
pub async fn dead_letter(
    js: &jetstream::Context,
    dlq_subject: &str,
    msg: &jetstream::Message,
    reason: &str,
    delivered: i64,
) {
    tracing::error!(subject = %msg.subject, %reason, "dead-lettering message");
    let mut headers = msg.headers.clone().unwrap_or_default();
    // The original id stays under another name for correlation. Reused as the dead letter's
    // own id it would make the DLQ stream drop a second dead letter of the same message (another
    // consumer's, or for another reason) as a duplicate.
    if let Some(original) = headers.get(NATS_MESSAGE_ID).cloned() {
        headers.insert(DLQ_MSG_ID_HEADER, original);
    }
    headers.insert(DLQ_REASON_HEADER, sanitize_header(reason).as_str());
    headers.insert(DLQ_SUBJECT_HEADER, msg.subject.as_str());
    headers.insert(DLQ_DELIVERED_HEADER, delivered.to_string().as_str());
    match msg.info() {
        Ok(info) => {
            headers.insert(DLQ_STREAM_SEQ_HEADER, info.stream_sequence.to_string().as_str());
            // A retried dead-letter publish has the same id and is stored once.
            headers.insert(NATS_MESSAGE_ID, dead_letter_id(info.stream, info.consumer, info.stream_sequence, reason));
        }
        Err(_) => {
            // No stream sequence (not a JetStream delivery): the content is what identifies it.
            let mut digest = Sha256::new();
            for part in [msg.subject.as_bytes(), reason.as_bytes(), &msg.payload[..]] {
                digest.update((part.len() as u64).to_be_bytes());
                digest.update(part);
            }
            let mut id = String::from("dlq:");
            igrelay_core::ids::push_hex(&mut id, &digest.finalize()[..16]);
            headers.insert(NATS_MESSAGE_ID, id);
        }
    }
    let stored = match js.publish_with_headers(dlq_subject.to_owned(), headers, msg.payload.clone()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    let settle = if stored {
        msg.ack_with(AckKind::Term).await
    } else {
        msg.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await
    };
    if let Err(e) = settle {
        tracing::warn!(error = %e, "could not settle dead-lettered message");
    }
}

/// The `Nats-Msg-Id` of a dead letter: one per (stream, consumer, stream sequence, reason), so
/// distinct dead letters are never deduplicated into one and a retried publish of the same one
/// is.
pub fn dead_letter_id(stream: &str, consumer: &str, stream_sequence: u64, reason: &str) -> String {
    let mut id = format!("dlq:{stream}:{consumer}:{stream_sequence}:");
    igrelay_core::ids::push_hex(&mut id, &Sha256::digest(reason.as_bytes())[..16]);
    id
}

/// Header values may not contain CR or LF.
fn sanitize_header(s: &str) -> String {
    s.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect()
}

/// The parent context of a delivery, for handlers that start their own spans.
pub fn parent_context(delivery: &Delivery) -> Option<Context> {
    trace::extract(&delivery.headers)
}

#[cfg(test)]
mod tests {
    use super::dead_letter_id;

    #[test]
    fn dead_letter_ids_are_stable_and_distinct() {
        let id = dead_letter_id("IGRELAY_EVENTS", "enrich", 42, "cannot decode");
        assert_eq!(id, dead_letter_id("IGRELAY_EVENTS", "enrich", 42, "cannot decode"), "a retry has the same id");
        assert!(id.starts_with("dlq:IGRELAY_EVENTS:enrich:42:") && id.len() == 29 + 32, "{id}");
        assert_ne!(id, dead_letter_id("IGRELAY_EVENTS", "enrich", 42, "gave up after 3 deliveries"));
        assert_ne!(id, dead_letter_id("IGRELAY_EVENTS", "dispatch", 42, "cannot decode"));
        assert_ne!(id, dead_letter_id("IGRELAY_EVENTS", "enrich", 43, "cannot decode"));
    }
}

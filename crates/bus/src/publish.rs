//! Publishing to JetStream: every message carries `Nats-Msg-Id` (deduplication), `traceparent`
//! (tracing) and `Igrelay-Type` (the protobuf type name), and counts as published only once the
//! stream acknowledged it.

use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, message::PublishMessage, publish::PublishAck};
use async_nats::{HeaderMap, HeaderName, HeaderValue, Subject};
use bytes::Bytes;
use futures::future::try_join_all;
use opentelemetry::Context;
use sha2::{Digest, Sha256};

use crate::{BusError, KIND_HEADER, TYPE_HEADER, trace};

/// One message to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub subject: String,
    /// Deduplication id: the stream stores a message with an id it saw within its duplicate
    /// window only once.
    pub msg_id: String,
    /// Full protobuf type name of `payload`.
    pub type_name: &'static str,
    /// Optional kind (for events, the last subject token).
    pub kind: Option<&'static str>,
    pub payload: Bytes,
}

impl OutgoingMessage {
    /// Encodes a protobuf message.
    pub fn proto<M: prost::Message + igrelay_core::v1::TypeName>(subject: String, msg_id: String, msg: &M) -> Self {
        Self { subject, msg_id, type_name: M::TYPE_NAME, kind: None, payload: Bytes::from(msg.encode_to_vec()) }
    }

    pub fn with_kind(mut self, kind: &'static str) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Splits the message into its subject, headers and payload.
    fn into_parts(self, cx: &Context) -> (Subject, HeaderMap, Bytes) {
        let mut headers = HeaderMap::new();
        trace::inject(cx, &mut headers);
        // Static names: a `&str` name is copied into a new allocation on every insert.
        headers.insert(HeaderName::from_static(TYPE_HEADER), self.type_name);
        if let Some(kind) = self.kind {
            headers.insert(HeaderName::from_static(KIND_HEADER), kind);
        }
        headers.insert(NATS_MESSAGE_ID, header_safe_id(self.msg_id));
        (Subject::from(self.subject), headers, self.payload)
    }
}

/// The `Nats-Msg-Id` value for a deduplication id. Ids can come from outside (Meta's JSON may
/// carry `\r` or `\n` in an id) but a NATS header cannot hold a line break, and async-nats
/// panics on one; such an id is replaced by its digest, which is as stable, so deduplication
/// still holds. Any other id goes in as it is, moved rather than copied.
fn header_safe_id(id: String) -> HeaderValue {
    if id.contains(['\r', '\n']) {
        let mut safe = String::from("sha256:");
        igrelay_core::ids::push_hex(&mut safe, &Sha256::digest(id.as_bytes()));
        HeaderValue::from(safe)
    } else {
        HeaderValue::from(id)
    }
}

/// Result of publishing a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchAck {
    /// Messages the stream stored now.
    pub stored: usize,
    /// Messages the stream had already (same `Nats-Msg-Id` within the duplicate window).
    pub duplicates: usize,
}

/// Publishes to JetStream.
#[derive(Debug, Clone)]
pub struct Publisher {
    js: jetstream::Context,
}

impl Publisher {
    pub fn new(js: jetstream::Context) -> Self {
        Self { js }
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes one message and waits for the stream's acknowledgement.
    pub async fn publish(
        &self,
        msg: OutgoingMessage,
        cx: &Context,
        deadline: Duration,
    ) -> Result<PublishAck, BusError> {
        let fut = async {
            let (subject, ack) = self.send(msg, cx).await?;
            ack.await.map_err(|e| publish_error(&subject, e))
        };
        tokio::time::timeout(deadline, fut).await.map_err(|_| BusError::AckTimeout(deadline))?
    }

    /// Publishes every message and waits until the stream acknowledged all of them. Messages are
    /// pipelined (all sent before the first acknowledgement is awaited). Fails if any is refused
    /// or the deadline passes; some may then be stored, which is safe to repeat because each
    /// carries its deduplication id.
    pub async fn publish_all(
        &self,
        mut msgs: Vec<OutgoingMessage>,
        cx: &Context,
        deadline: Duration,
    ) -> Result<BatchAck, BusError> {
        // Most webhooks carry one event: no pending list, no join.
        if msgs.len() == 1
            && let Some(msg) = msgs.pop()
        {
            let ack = self.publish(msg, cx, deadline).await?;
            return Ok(BatchAck { stored: usize::from(!ack.duplicate), duplicates: usize::from(ack.duplicate) });
        }
        let fut = async {
            let mut pending = Vec::with_capacity(msgs.len());
            for msg in msgs {
                let (subject, ack) = self.send(msg, cx).await?;
                pending.push(async move { ack.await.map_err(|e| publish_error(&subject, e)) });
            }
            let acks = try_join_all(pending).await?;
            let duplicates = acks.iter().filter(|a| a.duplicate).count();
            Ok(BatchAck { stored: acks.len() - duplicates, duplicates })
        };
        tokio::time::timeout(deadline, fut).await.map_err(|_| BusError::AckTimeout(deadline))?
    }

    /// Sends one message; returns its subject (kept for error messages: a `Subject` clone
    /// shares the bytes, a `String` clone would copy them on every publish) and the pending ack.
    async fn send(
        &self,
        msg: OutgoingMessage,
        cx: &Context,
    ) -> Result<(Subject, jetstream::context::PublishAckFuture), BusError> {
        let (subject, headers, payload) = msg.into_parts(cx);
        let publish = PublishMessage::build().payload(payload).headers(headers);
        match self.js.send_publish(subject.clone(), publish).await {
            Ok(ack) => Ok((subject, ack)),
            Err(e) => Err(publish_error(&subject, e)),
        }
    }
}

fn publish_error(subject: &Subject, e: impl std::fmt::Display) -> BusError {
    BusError::Publish { subject: subject.to_string(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_that_a_header_cannot_carry_become_a_stable_digest() {
        assert_eq!(header_safe_id("msg:m-1".into()).as_str(), "msg:m-1");
        let a = header_safe_id("msg:m\r\nx".into());
        assert!(a.as_str().starts_with("sha256:") && a.as_str().len() == 7 + 64, "{a}");
        assert_eq!(a, header_safe_id("msg:m\r\nx".into()), "same id, same digest");
        assert_ne!(a, header_safe_id("msg:m\nx".into()));
    }

    #[test]
    fn the_message_carries_its_id_type_and_kind() {
        let msg = OutgoingMessage {
            subject: "ig.v1.evt.1.message".into(),
            msg_id: "msg:1".into(),
            type_name: "igrelay.v1.Event",
            kind: Some("message"),
            payload: Bytes::from_static(b"x"),
        };
        let (subject, headers, payload) = msg.into_parts(&Context::new());
        assert_eq!(subject.as_str(), "ig.v1.evt.1.message");
        assert_eq!(headers.get(NATS_MESSAGE_ID).unwrap().as_str(), "msg:1");
        assert_eq!(headers.get(TYPE_HEADER).unwrap().as_str(), "igrelay.v1.Event");
        assert_eq!(headers.get(KIND_HEADER).unwrap().as_str(), "message");
        assert_eq!(payload, Bytes::from_static(b"x"));
    }
}

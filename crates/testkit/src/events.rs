//! Reading what landed in the events stream, for assertions.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use igrelay_core::v1::Event;
use prost::Message as _;

/// One stored message with its decoded event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub subject: String,
    pub headers: async_nats::HeaderMap,
    pub event: Event,
    pub sequence: u64,
}

/// Every message currently in stream `IGRELAY_EVENTS` matching `filter` (e.g. `ig.v1.evt.>`),
/// read with an ephemeral ordered consumer.
pub async fn read_all(js: &jetstream::Context, filter: &str) -> anyhow::Result<Vec<StoredEvent>> {
    read_stream(js, "IGRELAY_EVENTS", filter).await
}

/// Every message in `stream` matching `filter`, decoded as [`Event`].
pub async fn read_stream(js: &jetstream::Context, stream: &str, filter: &str) -> anyhow::Result<Vec<StoredEvent>> {
    read_messages(js, stream, filter)
        .await?
        .into_iter()
        .map(|(subject, headers, payload, sequence)| {
            Ok(StoredEvent { subject, headers, event: Event::decode(payload)?, sequence })
        })
        .collect()
}

/// (subject, headers, payload, stream sequence) of every message in `stream` matching `filter`,
/// read with an ephemeral ordered consumer until the stream's count is reached or none comes
/// for a while (the filter may match fewer messages than the stream holds).
async fn read_messages(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> anyhow::Result<Vec<(String, async_nats::HeaderMap, bytes::Bytes, u64)>> {
    let mut stream = js.get_stream(stream).await?;
    let expected = stream.info().await?.state.messages;
    let consumer = stream
        .create_consumer(pull::OrderedConfig { filter_subject: filter.to_string(), ..Default::default() })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while out.len() < expected as usize {
        match tokio::time::timeout(Duration::from_millis(300), messages.next()).await {
            Ok(Some(Ok(msg))) => {
                let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                out.push((
                    msg.subject.to_string(),
                    msg.headers.clone().unwrap_or_default(),
                    msg.payload.clone(),
                    sequence,
                ));
            }
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(out)
}

/// Every message in `stream` matching `filter`, undecoded: (subject, payload).
pub async fn read_raw(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> anyhow::Result<Vec<(String, bytes::Bytes)>> {
    Ok(read_messages(js, stream, filter).await?.into_iter().map(|(s, _, p, _)| (s, p)).collect())
}

/// Number of messages in a stream.
pub async fn count(js: &jetstream::Context, stream: &str) -> anyhow::Result<u64> {
    Ok(js.get_stream(stream).await?.info().await?.state.messages)
}

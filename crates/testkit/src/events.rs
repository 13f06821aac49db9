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
    let mut stream = js.get_stream(stream).await?;
    let expected = stream.info().await?.state.messages;
    let consumer = stream
        .create_consumer(pull::OrderedConfig { filter_subject: filter.to_string(), ..Default::default() })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    // The filter may match fewer messages than the stream holds: stop when none comes for a while.
    while out.len() < expected as usize {
        match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
            Ok(Some(Ok(msg))) => {
                let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                out.push(StoredEvent {
                    subject: msg.subject.to_string(),
                    headers: msg.headers.clone().unwrap_or_default(),
                    event: Event::decode(msg.payload.clone())?,
                    sequence,
                });
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
    let mut stream = js.get_stream(stream).await?;
    let expected = stream.info().await?.state.messages;
    let consumer = stream
        .create_consumer(pull::OrderedConfig { filter_subject: filter.to_string(), ..Default::default() })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while out.len() < expected as usize {
        match tokio::time::timeout(Duration::from_millis(300), messages.next()).await {
            Ok(Some(Ok(msg))) => out.push((msg.subject.to_string(), msg.payload.clone())),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(out)
}

/// Number of messages in a stream.
pub async fn count(js: &jetstream::Context, stream: &str) -> anyhow::Result<u64> {
    Ok(js.get_stream(stream).await?.info().await?.state.messages)
}

//! Every message published on a subject, as core NATS delivers it: before JetStream's duplicate
//! window drops a second publish with the same `Nats-Msg-Id`. A test that reads a stream sees
//! one copy of a message published twice; a [`WireTap`] sees both.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;

/// A core-NATS subscription recording (subject, payload) of every message, in arrival order.
#[derive(Debug, Clone)]
pub struct WireTap {
    seen: Arc<Mutex<Vec<(String, Bytes)>>>,
}

impl WireTap {
    /// Subscribes to `filter` (e.g. `ig.v1.out.>`); returns once the server has the subscription,
    /// so everything published afterwards is recorded.
    pub async fn start(client: &async_nats::Client, filter: &str) -> anyhow::Result<Self> {
        let mut sub = client.subscribe(filter.to_owned()).await?;
        client.flush().await?;
        let seen: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Ok(mut v) = sink.lock() {
                    v.push((m.subject.to_string(), m.payload));
                }
            }
        });
        Ok(Self { seen })
    }

    /// Everything recorded so far.
    pub fn messages(&self) -> Vec<(String, Bytes)> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

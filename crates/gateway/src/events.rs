//! `igrelay.v1.EventsService`: live events from stream IGRELAY_EVENTS.
//!
//! Each call gets its own ephemeral ordered consumer filtered on the requested accounts and
//! kinds, starting where the caller asks (a sequence, a time, the beginning, or now). Events go
//! through a small bounded channel: while the caller does not read, the channel stays full, the
//! consumer is not polled and fetches nothing more, so a slow caller slows only its own stream.
//! The channel is bounded twice: `events_buffer` items and `events_buffer_bytes` encoded bytes.
//! Each API key may hold `max_streams_per_key` streams open at once.

use std::pin::Pin;
use std::sync::Arc;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use igrelay_bus::subjects::{self, EventKind};
use igrelay_bus::topology::StreamDef;
use igrelay_core::AccountId;
use igrelay_core::v1::stream_events_request::Start;
use igrelay_core::v1::{Event, StreamEventsRequest, StreamEventsResponse};
use prost::Message as _;
use prost_types::Timestamp;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::Scope;
use crate::proto::events_service_server::EventsService;
use crate::server::Gateway;
use crate::status::{self, Violations};

/// Most filter subjects one stream may ask for (accounts × kinds).
const MAX_FILTERS: usize = 256;

/// The consumer's filter subjects for the requested accounts and kinds.
fn filters(accounts: Option<&[AccountId]>, kinds: Option<&[EventKind]>) -> Vec<String> {
    match (accounts, kinds) {
        (None, None) => vec![subjects::EVENTS_ALL.to_owned()],
        (Some(a), None) => a.iter().map(subjects::events_of_account).collect(),
        (None, Some(k)) => k.iter().map(|k| subjects::events_of_kind(*k)).collect(),
        (Some(a), Some(k)) => a.iter().flat_map(|a| k.iter().map(move |k| subjects::event(a, *k))).collect(),
    }
}

fn to_timestamp(t: time::OffsetDateTime) -> Timestamp {
    let nanos = t.unix_timestamp_nanos();
    Timestamp { seconds: nanos.div_euclid(1_000_000_000) as i64, nanos: nanos.rem_euclid(1_000_000_000) as i32 }
}

/// The sending side of a channel bounded by items and by bytes: an item holds its size in
/// bytes from `send` until the receiving stream hands it on.
struct BudgetSender<T> {
    tx: mpsc::Sender<(T, OwnedSemaphorePermit)>,
    bytes: Arc<Semaphore>,
    max: u32,
}

/// A channel of at most `items` items and `bytes` bytes (an item larger than `bytes` alone
/// takes the whole budget, so it still passes).
fn budget_channel<T: Send + 'static>(
    items: usize,
    bytes: usize,
) -> (BudgetSender<T>, impl futures::Stream<Item = T> + Send + 'static) {
    let (tx, rx) = mpsc::channel(items);
    let max = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
    let bytes = Arc::new(Semaphore::new(max as usize));
    // The permit drops as the item is handed on, giving its bytes back.
    (BudgetSender { tx, bytes, max }, ReceiverStream::new(rx).map(|(item, _permit)| item))
}

impl<T> BudgetSender<T> {
    /// Waits for room for `size` bytes and one item; `Err` once the receiver is gone.
    async fn send(&self, item: T, size: usize) -> Result<(), ()> {
        let n = u32::try_from(size).unwrap_or(u32::MAX).clamp(1, self.max);
        let permit = self.bytes.clone().acquire_many_owned(n).await.map_err(|_| ())?;
        self.tx.send((item, permit)).await.map_err(|_| ())
    }

    async fn closed(&self) {
        self.tx.closed().await
    }
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<StreamEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventsService for Gateway {
    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let p = self.principal(&request, Scope::EventsRead)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let mut accounts = Vec::new();
        for (i, a) in r.account_ids.iter().enumerate() {
            match AccountId::parse(a.clone()) {
                Ok(id) if !accounts.contains(&id) => accounts.push(id),
                Ok(_) => {}
                Err(e) => v.add(format!("account_ids[{i}]"), format!("{a:?}: {e}")),
            }
        }
        let mut kinds = Vec::new();
        for (i, k) in r.kinds.iter().enumerate() {
            match EventKind::from_token(k) {
                Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                Some(_) => {}
                None => v.add(
                    format!("kinds[{i}]"),
                    format!("unknown event kind {k:?} (known: {})", EventKind::ALL.map(EventKind::token).join(", ")),
                ),
            }
        }
        let deliver_policy = match &r.start {
            None => DeliverPolicy::New,
            Some(Start::FromBeginning(_)) => DeliverPolicy::All,
            Some(Start::AfterSequence(seq)) => DeliverPolicy::ByStartSequence { start_sequence: seq.saturating_add(1) },
            Some(Start::StartTime(t)) => {
                let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
                match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
                    Ok(start_time) => DeliverPolicy::ByStartTime { start_time },
                    Err(_) => {
                        v.add("start_time", "out of range");
                        DeliverPolicy::New
                    }
                }
            }
        };
        v.check()?;
        for a in &accounts {
            p.require_account(a.as_str())?;
        }
        if accounts.is_empty()
            && let Some(allowed) = p.accounts()
        {
            for a in allowed {
                accounts.push(AccountId::parse(a).map_err(|e| Status::internal(format!("api key: {e}")))?);
            }
        }
        let filter_subjects = filters(
            (!accounts.is_empty()).then_some(accounts.as_slice()),
            (!kinds.is_empty()).then_some(kinds.as_slice()),
        );
        if filter_subjects.len() > MAX_FILTERS {
            return Err(status::invalid(
                "account_ids",
                format!("accounts × kinds must be at most {MAX_FILTERS}; stream fewer at once"),
            ));
        }
        self.ensure_connected()?;
        // Held by the streaming task: the key's stream count drops when the stream ends.
        let slot = self.streams.take(&p.key_id)?;
        let stream = self.js.get_stream(StreamDef::Events.name()).await.map_err(status::nats_unavailable)?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig { filter_subjects, deliver_policy, ..Default::default() })
            .await
            .map_err(status::nats_unavailable)?;
        let mut messages = consumer.messages().await.map_err(status::nats_unavailable)?;

        let (tx, rx) = budget_channel(self.cfg.events_buffer, self.cfg.events_buffer_bytes);
        let shutdown = self.shutdown.clone();
        let metrics = self.metrics.clone();
        let key_id = p.key_id.clone();
        tokio::spawn(async move {
            let _slot = slot;
            metrics.event_streams.inc();
            tracing::debug!(caller = %key_id, "event stream opened");
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tx.closed() => break,
                    m = messages.next() => m,
                };
                let item = match next {
                    Some(Ok(m)) => {
                        let Ok(info) = m.info() else { continue };
                        let (sequence, stored) = (info.stream_sequence, info.published);
                        let subject = m.subject.to_string();
                        let (account, kind) = subjects::parse_event(&subject)
                            .map(|(a, k)| (a.to_owned(), k.token().to_owned()))
                            .unwrap_or_default();
                        let event = match Event::decode(m.payload.clone()) {
                            Ok(e) => e,
                            Err(e) => {
                                tracing::warn!(%subject, sequence, error = %e, "stored event cannot be decoded; skipped");
                                continue;
                            }
                        };
                        Ok(StreamEventsResponse {
                            sequence,
                            stored_time: Some(to_timestamp(stored)),
                            subject,
                            account_id: account,
                            kind,
                            event: Some(event),
                        })
                    }
                    Some(Err(e)) => Err(status::nats_unavailable(format!(
                        "event stream interrupted ({e}); resume with after_sequence"
                    ))),
                    None => Err(status::nats_unavailable("event stream ended; resume with after_sequence")),
                };
                let failed = item.is_err();
                let size = item.as_ref().map(prost::Message::encoded_len).unwrap_or(0);
                // Waits while the caller's buffer is full: back-pressure on this stream only.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tx.closed() => break,
                    sent = tx.send(item, size) => if sent.is_err() { break },
                }
                if failed {
                    break;
                }
                metrics.events_streamed.inc();
            }
            metrics.event_streams.dec();
            tracing::debug!(caller = %key_id, "event stream closed");
        });
        Ok(Response::new(Box::pin(rx) as EventStream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that does not read holds back the sender once the bytes are buffered, even
    /// though the channel has room for more items.
    #[tokio::test(start_paused = true)]
    async fn the_byte_budget_holds_back_the_sender() {
        let (tx, rx) = budget_channel::<u32>(100, 100);
        let mut rx = Box::pin(rx);
        tx.send(1, 60).await.unwrap();
        let second = tx.send(2, 60);
        tokio::pin!(second);
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), &mut second).await;
        assert!(waited.is_err(), "120 bytes went into a 100-byte buffer");
        assert_eq!(rx.next().await, Some(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), &mut second).await.unwrap().unwrap();
        assert_eq!(rx.next().await, Some(2));
        // An item larger than the whole budget still passes on its own.
        tx.send(3, 1_000).await.unwrap();
        assert_eq!(rx.next().await, Some(3));
    }

    #[test]
    fn filters_combine_accounts_and_kinds() {
        let a = AccountId::parse("111").unwrap();
        let b = AccountId::parse("222").unwrap();
        assert_eq!(filters(None, None), vec!["ig.v1.evt.>"]);
        assert_eq!(filters(Some(&[a.clone(), b]), None), vec!["ig.v1.evt.111.>", "ig.v1.evt.222.>"]);
        assert_eq!(filters(None, Some(&[EventKind::Comment])), vec!["ig.v1.evt.*.comment"]);
        assert_eq!(
            filters(Some(&[a]), Some(&[EventKind::Message, EventKind::Seen])),
            vec!["ig.v1.evt.111.message", "ig.v1.evt.111.seen"]
        );
    }
}

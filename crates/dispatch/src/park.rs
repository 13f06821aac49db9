//! The durable park: stream IGRELAY_PARKED, subjects `ig.v1.park.<partition>.<account>`.
//!
//! Commands of an account that cannot call Meta are moved there (published, then acknowledged
//! on the commands stream) once more than `dispatch.park_hold` of them wait, so they stop
//! counting against the partition consumer's `max_ack_pending`. A parked command keeps its
//! payload and headers; its commands-stream subject and store time travel in headers, so it is
//! processed exactly as if it came from the commands stream. Its `Nats-Msg-Id` is derived from its
//! commands-stream sequence: a move retried after a lost acknowledgement is dropped by the
//! stream as a duplicate.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull};
use futures::TryStreamExt;
use igrelay_bus::StreamDef;
use igrelay_bus::subjects;

use crate::Ctx;

/// The commands-stream subject of a parked command.
pub const SUBJECT_HEADER: &str = "Igrelay-Command-Subject";
/// When the command was stored in the commands stream (ms since the epoch): its accepted time
/// when the command carries none.
pub const STORED_MS_HEADER: &str = "Igrelay-Stored-Ms";

/// Moves one commands-stream message to the park (publish, wait for the stream's ack). The caller
/// acknowledges the original afterwards.
pub async fn publish(ctx: &Ctx, partition: u32, msg: &jetstream::Message) -> anyhow::Result<()> {
    let info = msg.info().map_err(|e| anyhow::anyhow!("no stream info on a command: {e}"))?;
    let account = crate::process::account_of(&msg.subject);
    let mut headers = msg.headers.clone().unwrap_or_default();
    headers.insert("Nats-Msg-Id", format!("park:{}:{}", info.stream, info.stream_sequence).as_str());
    headers.insert(SUBJECT_HEADER, msg.subject.as_str());
    let stored_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
    if stored_header(msg).is_none() {
        headers.insert(STORED_MS_HEADER, stored_ms.to_string().as_str());
    }
    let ack = ctx.js.publish_with_headers(subjects::parked(partition, account), headers, msg.payload.clone()).await?;
    tokio::time::timeout(Duration::from_secs(5), ack).await.map_err(|_| anyhow::anyhow!("park: no ack in 5s"))??;
    Ok(())
}

fn stored_header(msg: &jetstream::Message) -> Option<i64> {
    msg.headers.as_ref().and_then(|h| h.get(STORED_MS_HEADER)).and_then(|v| v.as_str().parse().ok())
}

/// When the command was first stored (ms since the epoch), if it came through the park.
pub fn stored_ms(msg: &jetstream::Message) -> Option<i64> {
    stored_header(msg)
}

/// A message drained from the park, with its commands-stream subject back, so lanes, accounts
/// and processing see the command as it was accepted. Acks still go to the park.
pub fn restore(mut msg: jetstream::Message) -> jetstream::Message {
    let original = msg.headers.as_ref().and_then(|h: &HeaderMap| h.get(SUBJECT_HEADER)).map(|v| v.to_string());
    if let Some(s) = original {
        msg.message.subject = s.into();
    }
    msg
}

/// The durable consumer draining one account's park, in order. Durable, so a new owner of the
/// partition continues where the last one stopped (its unsettled messages are delivered again).
pub async fn consumer(
    ctx: &Ctx,
    partition: u32,
    account: &str,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = ctx.js.get_stream(StreamDef::Parked.name()).await?;
    let config = pull::Config {
        durable_name: Some(consumer_name(partition, account)),
        filter_subject: subjects::parked(partition, account),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: ctx.cfg.ack_wait,
        max_deliver: -1,
        // At most this many of the account's commands in memory at once.
        max_ack_pending: i64::try_from(ctx.cfg.park_hold.max(1)).unwrap_or(i64::MAX),
        // Deleted once the park is empty; this only cleans up after a crash.
        inactive_threshold: Duration::from_secs(7 * 86_400),
        ..Default::default()
    };
    Ok(stream.create_consumer(config).await?)
}

/// The first parked message of `subject` after stream sequence `after`, as a message without an
/// ack subject (read, not consumed): its sequence and the command with its subject restored.
pub async fn next_after(
    ctx: &Ctx,
    stream: &jetstream::stream::Stream,
    subject: &str,
    after: u64,
) -> Option<(u64, jetstream::Message)> {
    let raw = stream.raw_message_builder().sequence(after + 1).next_by_subject(subject).send().await.ok()?;
    let msg = async_nats::Message {
        subject: raw.subject,
        reply: None,
        payload: raw.payload,
        headers: Some(raw.headers),
        status: None,
        description: None,
        length: 0,
    };
    Some((raw.sequence, restore(jetstream::Message { message: msg, context: ctx.js.clone() })))
}

/// The durable consumer of one account's park.
pub fn consumer_name(partition: u32, account: &str) -> String {
    format!("park-p{partition}-{account}")
}

/// Accounts of `partition` with commands in the park (after a restart or handover).
pub async fn accounts(ctx: &Ctx, partition: u32) -> anyhow::Result<Vec<String>> {
    let stream = ctx.js.get_stream(StreamDef::Parked.name()).await?;
    let mut found = Vec::new();
    let mut subjects = stream.info_with_subjects(subjects::parked_partition_filter(partition)).await?;
    while let Some((subject, count)) = subjects.try_next().await? {
        if count > 0
            && let Some((_, account)) = subjects::parse_parked(&subject)
        {
            found.push(account.to_owned());
        }
    }
    Ok(found)
}

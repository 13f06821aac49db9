//! One partition of the commands stream, served by the process that holds its lease.
//!
//! Commands are fetched in stream order and put into lanes, one lane per (account, recipient).
//! A lane runs its commands one after the other, so a recipient receives messages in the order
//! they were accepted; different lanes run concurrently (up to `dispatch.max_in_flight`). On
//! shutdown or lease loss, the command in hand finishes and queued ones are handed back (NAK) to
//! be served, in order, by the next owner.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use igrelay_bus::StreamDef;
use igrelay_bus::subjects;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::lease::Lease;
use crate::{Ctx, process};

#[derive(Default)]
struct Lane {
    queue: VecDeque<jetstream::Message>,
    running: bool,
}

/// The durable consumer of one partition.
pub async fn consumer(ctx: &Ctx, partition: u32) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = ctx.js.get_stream(StreamDef::Commands.name()).await?;
    let config = pull::Config {
        durable_name: Some(format!("dispatch-p{partition}")),
        filter_subject: subjects::command_partition_filter(partition),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: ctx.cfg.ack_wait,
        // Never give up on a command: each ends in an outcome, not in silence.
        max_deliver: -1,
        max_ack_pending: (ctx.cfg.max_in_flight * 8).max(1024) as i64,
        ..Default::default()
    };
    Ok(stream.create_consumer(config).await?)
}

pub async fn run(ctx: Arc<Ctx>, partition: u32, lease: Lease, stop: CancellationToken) {
    let consumer = loop {
        match consumer(&ctx, partition).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot create the partition consumer; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    // The previous owner may have called Meta until shortly before its lease ran out: wait one
    // rate-limit window so its last second and ours never add up above a per-second limit.
    // If it died holding commands, wait until they are due for redelivery (ack_wait), so they come
    // before newer commands of the same recipients and order holds.
    let pending = consumer.clone().info().await.map(|i| i.num_ack_pending).unwrap_or(0);
    let settle = if pending > 0 { ctx.cfg.ack_wait.max(Duration::from_secs(1)) } else { Duration::from_secs(1) };
    if pending > 0 {
        tracing::info!(partition, pending, "waiting for the previous owner's commands to be redelivered");
    }
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(settle) => {}
    }
    tracing::info!(partition, "serving partition");
    let lanes: Arc<Mutex<HashMap<String, Lane>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(ctx.cfg.max_in_flight));
    let mut tasks = JoinSet::new();
    while !stop.is_cancelled() && lease.valid() {
        let batch = consumer.fetch().max_messages(256).expires(Duration::from_millis(500)).messages().await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(partition, error = %e, "fetch failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => None,
                m = batch.next() => m,
            };
            let Some(Ok(msg)) = next else { break };
            let key = process::lane_of(&msg.subject, &msg.payload);
            let mut map = lanes.lock().await;
            let lane = map.entry(key.clone()).or_default();
            lane.queue.push_back(msg);
            if !lane.running {
                lane.running = true;
                tasks.spawn(run_lane(ctx.clone(), lanes.clone(), key, lease.clone(), stop.clone(), in_flight.clone()));
            }
        }
        // Reap finished lane tasks and forget idle lanes.
        while tasks.try_join_next().is_some() {}
        lanes.lock().await.retain(|_, l| l.running || !l.queue.is_empty());
    }
    // Stop: lanes finish the command in hand and hand back the rest.
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!(partition, "partition released");
}

async fn run_lane(
    ctx: Arc<Ctx>,
    lanes: Arc<Mutex<HashMap<String, Lane>>>,
    key: String,
    lease: Lease,
    stop: CancellationToken,
    in_flight: Arc<Semaphore>,
) {
    loop {
        let msg = {
            let mut map = lanes.lock().await;
            let Some(lane) = map.get_mut(&key) else { return };
            match lane.queue.pop_front() {
                Some(m) => m,
                None => {
                    lane.running = false;
                    return;
                }
            }
        };
        if stop.is_cancelled() || !lease.valid() {
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            continue;
        }
        let Ok(_slot) = in_flight.acquire().await else { return };
        process::handle(&ctx, msg, &lease).await;
    }
}

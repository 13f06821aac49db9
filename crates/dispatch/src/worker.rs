//! One partition of the commands stream, served by the process that holds its lease.
//!
//! Commands are fetched in stream order and put into lanes: one per (account, recipient) for
//! sends, one per account for uploads. A lane runs its commands one after the other, so a
//! recipient receives messages in the order they were accepted; different lanes run concurrently
//! (up to `dispatch.max_in_flight` in-flight slots).
//!
//! Parking: when a command finds its account not active (needs re-authorisation, paused), the
//! lane stops with the command back at its head and the account is marked paused: its lanes hold
//! no slot and run no task, and new commands of the account join their lanes without starting
//! them. Every half second the partition looks the paused accounts up again; once one is active
//! (a new token was stored) its lanes start again, each in order. A parked command whose deadline
//! passes is taken up alone, to end as Expired.
//!
//! Durable park (crate::park): a paused account with more than `dispatch.park_hold` parked
//! commands has them moved to stream IGRELAY_PARKED (in lane order, by one parker task), so they
//! stop holding the partition consumer's `max_ack_pending`. While the account has anything in the
//! park, each new command of it fetched here goes there too, behind the others, so order per
//! recipient holds. A drain task per such account reads its park in order (once the account is
//! active) into the normal lanes, and the account returns to normal only when its park is empty
//! and nothing of it is queued, being moved or in flight. A new owner finds such accounts from
//! the park stream's subjects before it fetches anything. While the account is inactive, its
//! drain task expires parked commands past their deadline (and deletes them from the park).
//!
//! Every queued message (parked or waiting for a slot) is kept alive with a progress ack every
//! third of `ack_wait`, and messages are tracked by stream sequence, so a redelivered copy of one
//! already held is dropped instead of queued twice. On shutdown or lease loss, the command in
//! hand finishes and every queued one is handed back (NAK) to be served, in order, by the next
//! owner.

mod parking;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use igrelay_bus::StreamDef;
use igrelay_bus::subjects;
use igrelay_core::v1::AccountStatus;
use tokio::sync::{Mutex, Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lease::Lease;
use crate::park;
use crate::process::{self, Handled};
use crate::{Ctx, metrics::Metrics};

/// How long a fetch waits for messages (shorter than process::HAND_BACK_DELAY).
const FETCH_EXPIRY: Duration = Duration::from_millis(500);

/// How often the accounts of parked commands are looked up again.
const PARK_CHECK: Duration = Duration::from_millis(500);

struct Lane {
    account: String,
    queue: VecDeque<jetstream::Message>,
    running: bool,
    parked: bool,
}

/// A held message: (from the park stream, stream sequence).
type Held = (bool, u64);

#[derive(Default)]
struct State {
    lanes: HashMap<String, Lane>,
    /// The messages queued, in hand or being moved to the park.
    held: HashSet<Held>,
    /// Accounts whose commands are parked.
    paused: HashSet<String>,
    /// Accounts with commands in the durable park (or on their way there): their new commands
    /// go there too, until the park is drained.
    in_park: HashSet<String>,
    /// Accounts whose park a drain task serves.
    draining: HashSet<String>,
    /// Commands-stream messages waiting to be moved to the park, in order.
    to_park: VecDeque<jetstream::Message>,
}

struct Partition {
    ctx: Arc<Ctx>,
    partition: u32,
    state: Mutex<State>,
    lease: Lease,
    stop: CancellationToken,
    in_flight: Arc<Semaphore>,
    lanes: TaskTracker,
    /// Wakes the parker when `to_park` gets messages.
    park_wake: Notify,
}

fn seq_of(msg: &jetstream::Message) -> Option<Held> {
    msg.info().ok().map(|i| (i.stream == StreamDef::Parked.name(), i.stream_sequence))
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
        max_ack_pending: i64::try_from(ctx.cfg.max_ack_pending()).unwrap_or(i64::MAX),
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
    // Accounts with parked commands keep their place: their new commands queue behind the park.
    let in_park = loop {
        match park::accounts(&ctx, partition).await {
            Ok(a) => break a,
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot list parked accounts; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    tracing::info!(partition, parked_accounts = in_park.len(), "serving partition");
    let state = State { in_park: in_park.into_iter().collect(), ..Default::default() };
    ctx.metrics.park_stream_accounts.inc_by(state.in_park.len() as i64);
    let p = Arc::new(Partition {
        in_flight: Arc::new(Semaphore::new(ctx.cfg.max_in_flight)),
        ctx,
        partition,
        state: Mutex::new(state),
        lease,
        stop,
        lanes: TaskTracker::new(),
        park_wake: Notify::new(),
    });
    p.lanes.spawn(p.clone().parker());
    let keeper = tokio::spawn(p.clone().keeper());
    while !p.stop.is_cancelled() && p.lease.valid() {
        let batch = consumer.fetch().max_messages(256).expires(FETCH_EXPIRY).messages().await;
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
                _ = p.stop.cancelled() => None,
                m = batch.next() => m,
            };
            let Some(Ok(msg)) = next else { break };
            p.enqueue(msg).await;
        }
        // Forget idle lanes.
        p.state.lock().await.lanes.retain(|_, l| l.running || l.parked || !l.queue.is_empty());
    }
    p.stop.cancel();
    let _ = keeper.await;
    p.lanes.close();
    p.lanes.wait().await;
    p.hand_back_all().await;
    tracing::info!(partition, "partition released");
}

impl Partition {
    fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    /// Queues a fetched message in its lane (dropping a copy of one already held) and starts the
    /// lane unless it runs already or its account is parked.
    async fn enqueue(self: &Arc<Self>, msg: jetstream::Message) {
        let key = process::lane_of(&msg.subject, &msg.payload);
        let account = process::account_of(&msg.subject).to_owned();
        let seq = seq_of(&msg);
        let mut st = self.state.lock().await;
        if let Some(seq) = seq
            && !st.held.insert(seq)
        {
            tracing::debug!(
                partition = self.partition,
                seq = seq.1,
                parked = seq.0,
                "redelivered copy of a held command dropped"
            );
            return;
        }
        self.metrics().queued.inc();
        // Behind the account's parked commands (a drained one is one of them: it goes to a lane).
        if st.in_park.contains(&account) && !seq.is_some_and(|(from_park, _)| from_park) {
            st.to_park.push_back(msg);
            self.park_wake.notify_one();
            return;
        }
        let paused = st.paused.contains(&account);
        let lane = st.lanes.entry(key.clone()).or_insert_with(|| Lane {
            account,
            queue: VecDeque::new(),
            running: false,
            parked: false,
        });
        lane.queue.push_back(msg);
        if lane.running || lane.parked {
            return;
        }
        if paused {
            lane.parked = true;
            return;
        }
        lane.running = true;
        self.lanes.spawn(self.clone().run_lane(key));
    }

    async fn run_lane(self: Arc<Self>, key: String) {
        loop {
            // A slot first: a command waiting for one stays queued (and kept alive).
            let slot = tokio::select! {
                s = self.in_flight.clone().acquire_owned() => s.ok(),
                _ = self.stop.cancelled() => None,
            };
            let (msg, account) = {
                let mut guard = self.state.lock().await;
                let st = &mut *guard;
                let Some(lane) = st.lanes.get_mut(&key) else { return };
                if slot.is_none() || self.stop.is_cancelled() || !self.lease.valid() {
                    // Handed back by the partition when it stops.
                    lane.running = false;
                    return;
                }
                // A parked account's lane stops, unless its head is due to expire.
                if st.paused.contains(&lane.account)
                    && !lane.queue.front().is_some_and(|m| process::deadline_passed(&self.ctx.cfg, m))
                {
                    (lane.running, lane.parked) = (false, true);
                    return;
                }
                match lane.queue.pop_front() {
                    Some(m) => (m, lane.account.clone()),
                    None => {
                        lane.running = false;
                        return;
                    }
                }
            };
            let seq = seq_of(&msg);
            let handled = process::handle(&self.ctx, msg, &self.lease, &self.stop).await;
            drop(slot);
            let mut guard = self.state.lock().await;
            let st = &mut *guard;
            match handled {
                Handled::Parked(msg) => {
                    if st.paused.insert(account.clone()) {
                        self.metrics().parked_accounts.inc();
                        tracing::info!(
                            partition = self.partition,
                            account,
                            "account not active; its commands are parked"
                        );
                    }
                    if let Some(lane) = st.lanes.get_mut(&key) {
                        lane.queue.push_front(*msg);
                        (lane.running, lane.parked) = (false, true);
                    }
                    return;
                }
                Handled::Done | Handled::HandedBack => {
                    if let Some(seq) = seq
                        && st.held.remove(&seq)
                    {
                        self.metrics().queued.dec();
                    }
                }
            }
        }
    }

    /// Keeps queued messages alive and resumes parked accounts once they are active again.
    async fn keeper(self: Arc<Self>) {
        let progress_every = self.ctx.cfg.ack_wait / 3;
        let mut last_progress = Instant::now();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(PARK_CHECK.min(progress_every)) => {}
            }
            if last_progress.elapsed() + PARK_CHECK >= progress_every {
                self.progress_all().await;
                last_progress = Instant::now();
            }
            self.check_parked().await;
            self.overflow_to_park().await;
            self.start_drains().await;
        }
    }

    /// A progress ack for every queued message, so none is redelivered while it waits.
    async fn progress_all(&self) {
        let queued: Vec<jetstream::Message> = {
            let st = self.state.lock().await;
            st.lanes.values().flat_map(|l| l.queue.iter().cloned()).chain(st.to_park.iter().cloned()).collect()
        };
        for m in &queued {
            let _ = m.ack_with(AckKind::Progress).await;
        }
    }

    async fn check_parked(self: &Arc<Self>) {
        let paused: Vec<String> = self.state.lock().await.paused.iter().cloned().collect();
        for account in paused {
            // Active again (or removed: its commands then end as Rejected): resume every lane.
            let resume = match self.ctx.accounts.get(&account).await {
                Ok(Some(a)) => a.status == AccountStatus::Active as i32,
                Ok(None) => true,
                Err(_) => false,
            };
            let mut st = self.state.lock().await;
            if resume && st.paused.remove(&account) {
                self.metrics().parked_accounts.dec();
                tracing::info!(partition = self.partition, account, "account active again; resuming its commands");
            }
            let cfg = &self.ctx.cfg;
            for (key, lane) in st.lanes.iter_mut().filter(|(_, l)| l.parked && l.account == account) {
                // Still paused: only a lane whose head is past its deadline runs (to expire it).
                if resume || lane.queue.front().is_some_and(|m| process::deadline_passed(cfg, m)) {
                    (lane.parked, lane.running) = (false, true);
                    self.lanes.spawn(self.clone().run_lane(key.clone()));
                }
            }
        }
    }

    /// Hands every queued message back (NAK), for the next owner.
    async fn hand_back_all(&self) {
        let mut st = self.state.lock().await;
        let lanes = std::mem::take(&mut st.lanes);
        let to_park = std::mem::take(&mut st.to_park);
        let mut handed = 0usize;
        for m in lanes.into_values().flat_map(|l| l.queue).chain(to_park) {
            let _ = m.ack_with(AckKind::Nak(Some(process::HAND_BACK_DELAY))).await;
            handed += 1;
        }
        self.metrics().park_stream_accounts.dec_by(st.in_park.len() as i64);
        st.in_park.clear();
        st.draining.clear();
        self.metrics().queued.dec_by(st.held.len() as i64);
        self.metrics().parked_accounts.dec_by(st.paused.len() as i64);
        st.held.clear();
        st.paused.clear();
        if handed > 0 {
            tracing::info!(partition = self.partition, handed, "queued commands handed back");
        }
    }
}

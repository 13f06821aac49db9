//! The partition's side of the durable park (see crate::park): moving a paused account's parked
//! commands there, and draining them back in order once the account is active.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use igrelay_bus::{StreamDef, subjects};
use igrelay_core::time::now_ms;
use tokio::time::Instant;

use super::{FETCH_EXPIRY, PARK_CHECK, Partition, seq_of};
use crate::park;
use crate::process;

/// Longest time between two looks for expired commands in a paused account's park.
const PARK_SWEEP: Duration = Duration::from_secs(60);

impl Partition {
    /// A paused account with more than `park_hold` commands waiting here, none in flight, has
    /// them all queued for the park, lane by lane in order (its new commands follow them there).
    /// When the paused accounts together hold half the partition's ack budget, every one of them
    /// with commands waiting moves, so many small pauses cannot add up to a stall either.
    pub(super) async fn overflow_to_park(&self) {
        let hold = self.ctx.cfg.park_hold;
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        let mut candidates: Vec<(String, usize, bool)> = Vec::new();
        for account in st.paused.iter().filter(|a| !st.in_park.contains(*a)) {
            let (mut waiting, mut running) = (0usize, false);
            for l in st.lanes.values().filter(|l| &l.account == account) {
                waiting += l.queue.len();
                running |= l.running;
            }
            candidates.push((account.clone(), waiting, running));
        }
        let total: usize = candidates.iter().map(|(_, w, _)| w).sum();
        let pressure = total.saturating_mul(2) >= self.ctx.cfg.max_ack_pending();
        for (account, waiting, running) in candidates {
            // A running lane may still hand its command back to the head of its lane.
            if running || waiting == 0 || (waiting <= hold && !pressure) {
                continue;
            }
            for lane in st.lanes.values_mut().filter(|l| l.account == account) {
                st.to_park.extend(lane.queue.drain(..));
                lane.parked = false;
            }
            if st.in_park.insert(account.clone()) {
                self.metrics().park_stream_accounts.inc();
            }
            tracing::info!(partition = self.partition, account, waiting, "moving parked commands to the park stream");
        }
        self.park_wake.notify_one();
    }

    /// Moves `to_park` to the park stream, in order, one at a time: publish (deduplicated by the
    /// original's stream sequence), then acknowledge the original.
    pub(super) async fn parker(self: Arc<Self>) {
        loop {
            let next = self.state.lock().await.to_park.front().cloned();
            let Some(msg) = next else {
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = self.park_wake.notified() => {}
                    _ = tokio::time::sleep(PARK_CHECK) => {}
                }
                continue;
            };
            if self.stop.is_cancelled() || !self.lease.valid() {
                return;
            }
            if let Err(e) = park::publish(&self.ctx, self.partition, &msg).await {
                tracing::warn!(partition = self.partition, error = %e, "cannot park a command; retrying");
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            // If this ack is lost the command comes again and its copy in the park is a duplicate.
            if let Err(e) = msg.double_ack().await {
                tracing::warn!(partition = self.partition, error = %e, "ack of a parked command not confirmed");
            }
            let mut st = self.state.lock().await;
            let key = seq_of(&msg);
            if st.to_park.front().map(seq_of) == Some(key) {
                st.to_park.pop_front();
            }
            if let Some(k) = key
                && st.held.remove(&k)
            {
                self.metrics().queued.dec();
            }
        }
    }

    /// A drain task for every account with a park that has none.
    pub(super) async fn start_drains(self: &Arc<Self>) {
        let mut st = self.state.lock().await;
        let start: Vec<String> = st.in_park.iter().filter(|a| !st.draining.contains(*a)).cloned().collect();
        for account in start {
            st.draining.insert(account.clone());
            self.lanes.spawn(self.clone().drain(account));
        }
    }

    /// Reads the account's park, in order, into its lanes while the account is not paused; ends
    /// when the park is empty and nothing of the account is queued, moving or in flight.
    async fn drain(self: Arc<Self>, account: String) {
        self.drain_until_empty(&account).await;
        self.state.lock().await.draining.remove(&account);
    }

    async fn drain_until_empty(self: &Arc<Self>, account: &str) {
        let mut consumer = loop {
            match park::consumer(&self.ctx, self.partition, account).await {
                Ok(c) => break c,
                Err(e) => tracing::warn!(partition = self.partition, account, error = %e, "cannot open the park"),
            }
            if !self.pause(Duration::from_millis(500)).await {
                return;
            }
        };
        // A previous owner's unsettled parked commands come first: wait until they are due again.
        let pending = consumer.clone().info().await.map(|i| i.num_ack_pending).unwrap_or(0);
        if pending > 0 && !self.pause(self.ctx.cfg.ack_wait.max(Duration::from_secs(1))).await {
            return;
        }
        let batch_size = self.ctx.cfg.park_hold.clamp(1, 256);
        let mut next_sweep = Instant::now();
        loop {
            if self.stop.is_cancelled() || !self.lease.valid() {
                return;
            }
            if self.state.lock().await.paused.contains(account) {
                if Instant::now() >= next_sweep {
                    next_sweep = self.expire_parked(account).await;
                }
                if !self.pause(PARK_CHECK).await {
                    return;
                }
                continue;
            }
            let mut got = 0usize;
            match consumer.fetch().max_messages(batch_size).expires(FETCH_EXPIRY).messages().await {
                Ok(mut batch) => loop {
                    let next = tokio::select! {
                        biased;
                        _ = self.stop.cancelled() => None,
                        m = batch.next() => m,
                    };
                    let Some(Ok(msg)) = next else { break };
                    got += 1;
                    self.enqueue(park::restore(msg)).await;
                },
                Err(e) => {
                    tracing::warn!(partition = self.partition, account, error = %e, "park fetch failed");
                    if !self.pause(Duration::from_millis(200)).await {
                        return;
                    }
                    // The consumer may be gone (deleted by hand): open it again.
                    if let Ok(c) = park::consumer(&self.ctx, self.partition, account).await {
                        consumer = c;
                    }
                    continue;
                }
            }
            if got == 0 {
                if self.leave_park(&consumer, account).await {
                    return;
                }
                // Commands of the account still in hand (or the server answered at once).
                if !self.pause(Duration::from_millis(100)).await {
                    return;
                }
            }
        }
    }

    /// While the account is paused: every parked command past its deadline ends as Expired (the
    /// same processing as when drained: idempotency first, then the deadline), and once its
    /// outcome is recorded it is deleted from the park. Returns when to look again: at the earliest
    /// deadline seen, at the latest after PARK_SWEEP.
    async fn expire_parked(&self, account: &str) -> Instant {
        let mut next = Instant::now() + PARK_SWEEP;
        let Ok(stream) = self.ctx.js.get_stream(StreamDef::Parked.name()).await else {
            return Instant::now() + PARK_CHECK;
        };
        let subject = subjects::parked(self.partition, account);
        let mut after = 0u64;
        while let Some((seq, msg)) = park::next_after(&self.ctx, &stream, &subject, after).await {
            after = seq;
            if self.stop.is_cancelled() || !self.lease.valid() {
                break;
            }
            // Held here (drained before the pause): the lane expires it.
            if self.state.lock().await.held.contains(&(true, seq)) {
                continue;
            }
            // Undecodable ones are dead-lettered when drained.
            let Some(deadline) = process::deadline_of(&self.ctx.cfg, &msg) else { continue };
            let now = now_ms();
            if deadline > now {
                let left = Duration::from_millis(u64::try_from(deadline - now).unwrap_or(u64::MAX));
                next = next.min(Instant::now() + left);
                continue;
            }
            process::handle(&self.ctx, msg.clone(), &self.lease, &self.stop).await;
            if process::recorded(&self.ctx, &msg).await
                && let Err(e) = stream.delete_message(seq).await
            {
                tracing::warn!(partition = self.partition, account, error = %e, "expired parked command not deleted");
            }
        }
        next
    }

    /// Returns the account to normal if its park is empty and nothing of it is held here. The
    /// state lock is held throughout, so no new command of the account can slip past the check.
    async fn leave_park(
        &self,
        consumer: &jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
        account: &str,
    ) -> bool {
        let mut st = self.state.lock().await;
        if st.to_park.iter().any(|m| process::account_of(&m.subject) == account)
            || st.lanes.values().any(|l| l.account == account && (l.running || !l.queue.is_empty()))
        {
            return false;
        }
        let Ok(info) = consumer.clone().info().await.cloned() else { return false };
        if info.num_pending > 0 || info.num_ack_pending > 0 {
            return false;
        }
        // Deleted before the account can park again, which creates it anew.
        if let Ok(stream) = self.ctx.js.get_stream(igrelay_bus::StreamDef::Parked.name()).await {
            let _ = stream.delete_consumer(&park::consumer_name(self.partition, account)).await;
        }
        if st.in_park.remove(account) {
            self.metrics().park_stream_accounts.dec();
        }
        tracing::info!(partition = self.partition, account, "park drained; the account is served normally again");
        true
    }

    /// Sleeps `d`; false if the partition stops meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => self.lease.valid(),
        }
    }
}

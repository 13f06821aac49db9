//! Per-account, per-class rate limits, exact for one process.
//!
//! Each (account, class) keeps a log of its last N calls. A call may start when fewer than N
//! calls are in the log, or when the oldest finished at least one window ago. Counting from the
//! moment a call *finished* (its answer arrived, so Meta had received it) means any window of
//! Meta's clock, fixed or sliding, sees at most N calls, whatever the network delay. Accounts are
//! owned by one dispatch process at a time (partitions), so the log is local.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Send,
    Media,
    PrivateReply,
    LivePrivateReply,
}

impl Class {
    fn budget(self, l: &Limits) -> (usize, Duration) {
        match self {
            Self::Send => (l.send_per_s as usize, Duration::from_secs(1)),
            Self::Media => (l.media_per_s as usize, Duration::from_secs(1)),
            Self::PrivateReply => (l.private_replies_per_h as usize, Duration::from_secs(3600)),
            Self::LivePrivateReply => (l.live_private_replies_per_s as usize, Duration::from_secs(1)),
        }
    }
}

#[derive(Debug, Default)]
struct Log {
    next_id: u64,
    /// Earliest start of the next call: per-second classes are also paced evenly, so calls do
    /// not all start at the top of a window, pile up, and come back late (which would delay the
    /// next window, since slots count from completion). Kept on a schedule (not "gap after the
    /// last actual start") so timer lateness does not add up.
    next_start: Option<Instant>,
    /// (id, finished at) oldest first; `None` while the call is in flight.
    calls: VecDeque<(u64, Option<Instant>)>,
}

#[derive(Debug, Default)]
struct State {
    logs: HashMap<(String, Class), Log>,
    /// Account-wide pauses from usage headers and throttling answers.
    not_before: HashMap<String, Instant>,
}

#[derive(Debug, Clone)]
pub struct Limiter {
    limits: Limits,
    state: Arc<Mutex<State>>,
}

/// A reserved call. `finish` when the answer arrived; dropping it unfinished frees the slot (the
/// call was not made).
#[derive(Debug)]
pub struct Permit {
    state: Arc<Mutex<State>>,
    key: (String, Class),
    id: u64,
    finished: bool,
}

impl Permit {
    pub fn finish(mut self) {
        self.finished = true;
        if let Ok(mut st) = self.state.lock()
            && let Some(log) = st.logs.get_mut(&self.key)
            && let Some(slot) = log.calls.iter_mut().find(|(id, _)| *id == self.id)
        {
            slot.1 = Some(Instant::now());
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(mut st) = self.state.lock()
            && let Some(log) = st.logs.get_mut(&self.key)
        {
            log.calls.retain(|(id, _)| *id != self.id);
        }
    }
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Self { limits, state: Arc::default() }
    }

    /// Waits until a call of `class` may start for `account`, or returns `None` at `deadline`.
    pub async fn acquire(&self, account: &str, class: Class, deadline: Instant) -> Option<Permit> {
        let (limit, window) = class.budget(&self.limits);
        let key = (account.to_owned(), class);
        loop {
            let wait_until = {
                let Ok(mut st) = self.state.lock() else { return None };
                let now = Instant::now();
                let paused = st.not_before.get(account).copied().filter(|t| *t > now);
                match paused {
                    Some(t) => t,
                    None => {
                        let log = st.logs.entry(key.clone()).or_default();
                        while matches!(log.calls.front(), Some((_, Some(done))) if *done + window <= now) {
                            log.calls.pop_front();
                        }
                        let gap = window / limit.max(1) as u32;
                        let pacing = window <= Duration::from_secs(1);
                        let paced = log.next_start.filter(|t| pacing && *t > now);
                        if let Some(t) = paced {
                            t
                        } else if log.calls.len() < limit {
                            let id = log.next_id;
                            log.next_id += 1;
                            log.calls.push_back((id, None));
                            if pacing {
                                let scheduled = log.next_start.map_or(now, |t| t + gap);
                                log.next_start = Some(scheduled.max(now + gap / 2));
                            }
                            return Some(Permit { state: self.state.clone(), key, id, finished: false });
                        } else {
                            match log.calls.front() {
                                Some((_, Some(done))) => *done + window,
                                // The oldest call is still in flight: look again shortly.
                                _ => now + Duration::from_millis(2),
                            }
                        }
                    }
                }
            };
            if wait_until >= deadline {
                return None;
            }
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Pauses every call of `account` until `until` (throttling, usage near 100%).
    pub fn pause(&self, account: &str, for_: Duration) {
        if let Ok(mut st) = self.state.lock() {
            let until = Instant::now() + for_;
            let entry = st.not_before.entry(account.to_owned()).or_insert(until);
            if *entry < until {
                *entry = until;
            }
        }
    }

    /// Forgets an account's logs (its partition moved to another process).
    pub fn forget(&self, accounts: impl Fn(&str) -> bool) {
        if let Ok(mut st) = self.state.lock() {
            st.logs.retain(|(a, _), _| !accounts(a));
            st.not_before.retain(|a, _| !accounts(a));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_most_n_per_window_counted_from_completion() {
        let limiter = Limiter::new(Limits { send_per_s: 3, ..Limits::default() });
        let far = Instant::now() + Duration::from_secs(60);
        let start = Instant::now();
        let mut permits = Vec::new();
        for _ in 0..3 {
            permits.push(limiter.acquire("a", Class::Send, far).await.unwrap());
        }
        // A fourth waits while the first three are in flight.
        let fourth = tokio::time::timeout(Duration::from_millis(500), limiter.acquire("a", Class::Send, far)).await;
        assert!(fourth.is_err());
        tokio::time::advance(Duration::from_millis(100)).await;
        for p in permits.drain(..) {
            p.finish();
        }
        let p = limiter.acquire("a", Class::Send, far).await.unwrap();
        // One window after the first completion, not after its start.
        assert!(Instant::now() - start >= Duration::from_millis(1600));
        p.finish();
        // Other accounts and classes are independent.
        assert!(limiter.acquire("b", Class::Send, far).await.is_some());
        assert!(limiter.acquire("a", Class::Media, far).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_permits_free_their_slot_and_deadlines_end_waits() {
        let limiter = Limiter::new(Limits { send_per_s: 1, ..Limits::default() });
        let far = Instant::now() + Duration::from_secs(60);
        drop(limiter.acquire("a", Class::Send, far).await.unwrap());
        let p = limiter.acquire("a", Class::Send, far).await.unwrap();
        assert!(limiter.acquire("a", Class::Send, Instant::now() + Duration::from_millis(10)).await.is_none());
        p.finish();
        limiter.pause("a", Duration::from_secs(5));
        assert!(limiter.acquire("a", Class::Send, Instant::now() + Duration::from_secs(2)).await.is_none());
    }
}

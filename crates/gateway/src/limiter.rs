//! A per-account call-rate limiter for the Conversations API (Meta allows 2 calls/s per
//! account). Calls take the next free slot of their account; one that would have to wait
//! longer than the configured queue time is refused instead, so callers learn at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct AccountLimiter {
    interval: Duration,
    max_queue: Duration,
    next: Mutex<HashMap<String, Instant>>,
}

impl AccountLimiter {
    pub fn new(per_second: u32, max_queue: Duration) -> Self {
        Self { interval: Duration::from_secs(1) / per_second.max(1), max_queue, next: Mutex::new(HashMap::new()) }
    }

    /// Waits for the account's next slot; `Err(wait)` when that is more than the queue allows.
    pub async fn acquire(&self, account: &str) -> Result<(), Duration> {
        let wait = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.get(account).copied().unwrap_or(now).max(now);
            let wait = slot - now;
            if wait > self.max_queue {
                return Err(wait);
            }
            next.insert(account.to_owned(), slot + self.interval);
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_and_refuses_a_long_queue() {
        let l = AccountLimiter::new(2, Duration::from_millis(600));
        let start = Instant::now();
        let (a, b, c) = tokio::join!(l.acquire("a"), l.acquire("a"), l.acquire("a"));
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
        assert_eq!(c, Err(Duration::from_secs(1)));
        assert!(start.elapsed() >= Duration::from_millis(500));
        // Another account is not held back.
        let before = Instant::now();
        l.acquire("b").await.unwrap();
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}

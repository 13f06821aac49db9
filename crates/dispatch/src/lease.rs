//! Partition ownership. Every dispatch process heartbeats `m.<id>` in KV bucket
//! `igrelay_dispatch`; partition `p` belongs to the live member at position `p mod n` of the
//! sorted member list and is held through key `p.<p>`, created by its owner and renewed every
//! third of the lease time. Entries age out after `topology.dispatch_lease_ttl`, so a killed
//! process's partitions are free again after at most that long. A process that cannot renew in
//! time stops calling Meta for the partition before its lease can have expired.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

/// The validity of one held partition, checked before every Graph API call.
#[derive(Debug, Clone)]
pub struct Lease {
    base: Instant,
    /// Milliseconds after `base` until which the lease is safe to use.
    valid_until_ms: Arc<AtomicU64>,
}

impl Lease {
    fn new(base: Instant) -> Self {
        Self { base, valid_until_ms: Arc::new(AtomicU64::new(0)) }
    }

    fn extend(&self, until: Instant) {
        self.valid_until_ms.store(until.saturating_duration_since(self.base).as_millis() as u64, Ordering::Relaxed);
    }

    pub fn valid(&self) -> bool {
        let now = Instant::now().saturating_duration_since(self.base).as_millis() as u64;
        now < self.valid_until_ms.load(Ordering::Relaxed)
    }

    /// A lease that never expires, for tests of the command logic alone.
    pub fn forever() -> Self {
        let l = Self::new(Instant::now());
        l.valid_until_ms.store(u64::MAX, Ordering::Relaxed);
        l
    }
}

#[derive(Debug)]
pub struct Ownership {
    kv: kv::Store,
    pub me: String,
    ttl: Duration,
    partitions: u32,
    base: Instant,
}

/// What changed in one round.
#[derive(Debug, Default)]
pub struct Round {
    pub acquired: Vec<(u32, Lease)>,
    pub lost: Vec<u32>,
    pub to_release: Vec<u32>,
}

impl Ownership {
    pub fn new(kv: kv::Store, me: String, ttl: Duration, partitions: u32) -> Self {
        Self { kv, me, ttl, partitions, base: Instant::now() }
    }

    pub fn interval(&self) -> Duration {
        self.ttl / 3
    }

    fn margin_until(&self, renewed_at: Instant) -> Instant {
        // Stop using a lease well before the server could let it expire.
        renewed_at + self.ttl.mul_f64(0.6)
    }

    async fn members(&self) -> anyhow::Result<Vec<String>> {
        let mut keys = self.kv.keys().await?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            if let Some(m) = k?.strip_prefix("m.") {
                out.push(m.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// One round: heartbeat, renew held partitions, take free ones this member should own, and
    /// name the ones it should give up. `held` maps held partitions to their leases.
    pub async fn round(&self, held: &std::collections::HashMap<u32, Lease>) -> anyhow::Result<Round> {
        let started = Instant::now();
        self.kv.put(format!("m.{}", self.me), Bytes::from(self.me.clone())).await?;
        let mut members = self.members().await?;
        if !members.contains(&self.me) {
            members.push(self.me.clone());
            members.sort();
        }
        let mut round = Round::default();
        for p in 0..self.partitions {
            let desired = members[(p as usize) % members.len()] == self.me;
            let key = format!("p.{p}");
            let entry = self.kv.entry(&key).await?.filter(|e| e.operation == kv::Operation::Put);
            let owner = entry.as_ref().map(|e| String::from_utf8_lossy(&e.value).into_owned());
            match (held.get(&p), entry, owner) {
                (Some(lease), Some(e), Some(o)) if o == self.me => {
                    if desired {
                        match self.kv.update(&key, Bytes::from(self.me.clone()), e.revision).await {
                            Ok(_) => lease.extend(self.margin_until(started)),
                            Err(_) => round.lost.push(p),
                        }
                    } else {
                        round.to_release.push(p);
                    }
                }
                (Some(_), _, _) => round.lost.push(p),
                (None, None, _) if desired && self.kv.create(&key, Bytes::from(self.me.clone())).await.is_ok() => {
                    let lease = Lease::new(self.base);
                    lease.extend(self.margin_until(started));
                    round.acquired.push((p, lease));
                }
                _ => {}
            }
        }
        Ok(round)
    }

    /// Gives a partition up (after its worker stopped).
    pub async fn release(&self, p: u32) {
        let key = format!("p.{p}");
        if let Ok(Some(e)) = self.kv.entry(&key).await
            && e.operation == kv::Operation::Put
            && e.value.as_ref() == self.me.as_bytes()
        {
            let _ = self.kv.delete_expect_revision(&key, Some(e.revision)).await;
        }
    }

    pub async fn leave(&self) {
        let _ = self.kv.delete(format!("m.{}", self.me)).await;
    }
}

//! The profile cache in KV bucket `igrelay_profiles`, shared by every replica:
//! `p.<account>.<igsid>` holds a [`CachedProfile`] (a profile or a remembered refusal, with its
//! own expiry, because the bucket's age limit is one day for every key), `c.<account>.<igsid>`
//! a [`UserConsent`], `l.<account>.<igsid>` marks a look-up in progress on some replica (its
//! value: the claim time, ms, big-endian), `f.<igsid>` is written by every forget of the user
//! (its value: the time, ms, big-endian) and guards look-ups in flight ([`WriteGuard`]). Messaging windows (`w.<account>.<igsid>` in `igrelay_windows`, written by
//! dispatch) are only ever purged from here.
//!
//! Each process keeps a copy of the entries it read or wrote, kept current by a watch on the
//! bucket (another replica's look-up or purge reaches it within milliseconds): a warm event then
//! costs no KV round trip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use igrelay_core::v1::{CachedProfile, NotEnrichedReason, UserConsent, UserProfile};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

/// Beyond this many local entries the copy starts over (the bucket stays the truth).
const MAX_LOCAL_ENTRIES: usize = 200_000;

#[derive(Debug, Clone)]
enum Local {
    Profile(Cached, i64),
    Consent,
}

#[derive(Debug, Clone)]
pub struct ProfileCache {
    profiles: kv::Store,
    windows: kv::Store,
    local: Arc<Mutex<HashMap<String, Local>>>,
    /// The watch runs: the local copy is current.
    following: Arc<AtomicBool>,
}

/// What the cache knows about a user.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    Profile(UserProfile),
    Refused { reason: NotEnrichedReason, detail: String },
}

fn profile_key(account: &str, igsid: &str) -> String {
    format!("p.{account}.{igsid}")
}

fn consent_key(account: &str, igsid: &str) -> String {
    format!("c.{account}.{igsid}")
}

fn claim_key(account: &str, igsid: &str) -> String {
    format!("l.{account}.{igsid}")
}

/// Written by every forget of the user (any replica) before it purges: a look-up that began
/// before must not cache its answer.
fn forget_key(igsid: &str) -> String {
    format!("f.{igsid}")
}

/// What a look-up saw before it called Meta: the revision of the user's forget marker and of
/// its cache entry. Its answer is cached only if neither changed meanwhile, whichever replica
/// forgot the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteGuard {
    forgotten: u64,
    entry: u64,
}

fn expiry(ttl: Duration) -> prost_types::Timestamp {
    igrelay_core::time::timestamp_from_ms(igrelay_core::time::now_ms() + ttl.as_millis() as i64)
}

impl ProfileCache {
    pub fn new(profiles: kv::Store, windows: kv::Store) -> Self {
        Self { profiles, windows, local: Arc::default(), following: Arc::default() }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, key: String, entry: Local) {
        if !self.following.load(Ordering::Acquire) {
            return;
        }
        let mut local = self.local();
        if local.len() >= MAX_LOCAL_ENTRIES {
            local.clear();
        }
        local.insert(key, entry);
    }

    /// Follows the bucket's changes into the local copy until `shutdown`. The local copy is
    /// only used while the watch runs, so a broken watch cannot serve a purged profile.
    pub async fn follow(self, shutdown: CancellationToken) {
        loop {
            match self.profiles.watch_all().await {
                Ok(mut watch) => loop {
                    self.following.store(true, Ordering::Release);
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        n = watch.next() => n,
                    };
                    match next {
                        Some(Ok(entry)) => self.apply(&entry),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "profile cache watch failed; restarting it");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot watch the profile cache yet"),
            }
            // Changes may have been missed: start over from the bucket.
            self.following.store(false, Ordering::Release);
            self.local().clear();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    fn apply(&self, entry: &kv::Entry) {
        if entry.key.starts_with("l.") || entry.key.starts_with("f.") {
            // Look-up claims and forget markers are never cached locally.
        } else if entry.operation != kv::Operation::Put {
            self.local().remove(&entry.key);
        } else if entry.key.starts_with("c.") {
            self.remember(entry.key.clone(), Local::Consent);
        } else if let Some((cached, expires)) = decode(entry.value.clone()) {
            self.remember(entry.key.clone(), Local::Profile(cached, expires));
        }
    }

    /// A fresh entry, or `None` when there is none or it expired.
    pub async fn get(&self, account: &str, igsid: &str) -> anyhow::Result<Option<Cached>> {
        let key = profile_key(account, igsid);
        let now = igrelay_core::time::now_ms();
        if let Some(Local::Profile(cached, expires)) = self.local().get(&key) {
            if *expires > now {
                return Ok(Some(cached.clone()));
            }
            return Ok(None);
        }
        let Some(bytes) = self.profiles.get(key.as_str()).await? else {
            return Ok(None);
        };
        let Some((cached, expires)) = decode(bytes) else {
            return Ok(None);
        };
        self.remember(key, Local::Profile(cached.clone(), expires));
        Ok((expires > now).then_some(cached))
    }

    /// Taken before a look-up calls Meta; see [`WriteGuard`].
    pub async fn guard(&self, account: &str, igsid: &str) -> anyhow::Result<WriteGuard> {
        Ok(WriteGuard {
            forgotten: self.revision(&forget_key(igsid)).await?,
            entry: self.revision(&profile_key(account, igsid)).await?,
        })
    }

    /// The key's last revision, a delete or purge included; 0 when it never existed.
    async fn revision(&self, key: &str) -> anyhow::Result<u64> {
        Ok(self.profiles.entry(key).await?.map_or(0, |e| e.revision))
    }

    /// Caches a profile unless the user was forgotten (or the entry changed) since `guard`.
    /// `false`: not written.
    pub async fn put_profile(&self, profile: &UserProfile, ttl: Duration, guard: WriteGuard) -> anyhow::Result<bool> {
        let entry =
            CachedProfile { profile: Some(profile.clone()), expires_time: Some(expiry(ttl)), ..Default::default() };
        let key = profile_key(&profile.account_id, &profile.igsid);
        if !self.put_guarded(&key, &profile.igsid, entry, guard).await? {
            return Ok(false);
        }
        let expires = igrelay_core::time::now_ms() + ttl.as_millis() as i64;
        self.remember(key, Local::Profile(Cached::Profile(profile.clone()), expires));
        Ok(true)
    }

    /// Remembers a refusal, under the same condition as [`put_profile`](Self::put_profile).
    pub async fn put_refusal(
        &self,
        account: &str,
        igsid: &str,
        reason: NotEnrichedReason,
        detail: &str,
        ttl: Duration,
        guard: WriteGuard,
    ) -> anyhow::Result<bool> {
        let entry = CachedProfile {
            profile: None,
            negative_reason: reason as i32,
            negative_detail: detail.to_owned(),
            expires_time: Some(expiry(ttl)),
        };
        let key = profile_key(account, igsid);
        if !self.put_guarded(&key, igsid, entry, guard).await? {
            return Ok(false);
        }
        let expires = igrelay_core::time::now_ms() + ttl.as_millis() as i64;
        self.remember(key, Local::Profile(Cached::Refused { reason, detail: detail.to_owned() }, expires));
        Ok(true)
    }

    /// A compare-and-set on the entry's revision: a forget purges the entry (whether it existed
    /// or not) after writing its marker, so a look-up that raced it fails one check or the other.
    async fn put_guarded(
        &self,
        key: &str,
        igsid: &str,
        entry: CachedProfile,
        guard: WriteGuard,
    ) -> anyhow::Result<bool> {
        if self.revision(&forget_key(igsid)).await? != guard.forgotten {
            return Ok(false);
        }
        match self.profiles.update(key, Bytes::from(entry.encode_to_vec()), guard.entry).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn has_consent(&self, account: &str, igsid: &str) -> anyhow::Result<bool> {
        let key = consent_key(account, igsid);
        if matches!(self.local().get(&key), Some(Local::Consent)) {
            return Ok(true);
        }
        let found = self.profiles.get(key.as_str()).await?.is_some();
        if found {
            self.remember(key, Local::Consent);
        }
        Ok(found)
    }

    pub async fn put_consent(&self, account: &str, igsid: &str, event_id: &str) -> anyhow::Result<()> {
        let c = UserConsent { given_time: Some(igrelay_core::time::now()), event_id: event_id.to_owned() };
        let key = consent_key(account, igsid);
        self.profiles.put(key.as_str(), Bytes::from(c.encode_to_vec())).await?;
        self.remember(key, Local::Consent);
        Ok(())
    }

    /// Claims the look-up of a user for this process, across replicas. `false`: another replica
    /// claimed it less than `lease` ago. A claim older than `lease` (its owner died) is taken over.
    pub async fn claim(&self, account: &str, igsid: &str, lease: Duration) -> anyhow::Result<bool> {
        let key = claim_key(account, igsid);
        let now = igrelay_core::time::now_ms();
        let value = Bytes::copy_from_slice(&now.to_be_bytes());
        match self.profiles.create(key.as_str(), value.clone()).await {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let Some(entry) = self.profiles.entry(key.as_str()).await? else {
            return Ok(false);
        };
        let claimed_at = <[u8; 8]>::try_from(entry.value.as_ref()).map(i64::from_be_bytes).unwrap_or(0);
        if entry.operation == kv::Operation::Put && now - claimed_at < lease.as_millis() as i64 {
            return Ok(false);
        }
        Ok(self.profiles.update(key.as_str(), value, entry.revision).await.is_ok())
    }

    /// Whether some replica holds a fresh claim on the user's look-up.
    pub async fn claimed(&self, account: &str, igsid: &str, lease: Duration) -> anyhow::Result<bool> {
        let Some(entry) = self.profiles.entry(claim_key(account, igsid)).await? else {
            return Ok(false);
        };
        let claimed_at = <[u8; 8]>::try_from(entry.value.as_ref()).map(i64::from_be_bytes).unwrap_or(0);
        Ok(entry.operation == kv::Operation::Put
            && igrelay_core::time::now_ms() - claimed_at < lease.as_millis() as i64)
    }

    pub async fn release(&self, account: &str, igsid: &str) {
        if let Err(e) = self.profiles.purge(claim_key(account, igsid)).await {
            tracing::debug!(error = %e, "cannot release look-up claim; it lapses");
        }
    }

    /// Purges every entry about `igsid` (for `account`, or every account): profile, consent,
    /// look-up claims, messaging windows. Returns how many keys were purged. Lists the buckets'
    /// keys, which is linear in their size: fine for the rare deletion request.
    ///
    /// First it marks the user forgotten, and it purges the profile entry of every account it
    /// finds the user under even where none is cached yet: a look-up in flight on any replica
    /// then cannot cache the user again ([`WriteGuard`]).
    pub async fn forget(&self, igsid: &str, account: Option<&str>) -> anyhow::Result<u32> {
        let now = igrelay_core::time::now_ms();
        self.profiles.put(forget_key(igsid), Bytes::copy_from_slice(&now.to_be_bytes())).await?;
        let mut purged = 0;
        let mut accounts = std::collections::BTreeSet::new();
        for store in [&self.profiles, &self.windows] {
            let mut keys = store.keys().await?;
            let mut matching = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key?;
                if let Some(acct) = account_if_about(&key, igsid, account) {
                    accounts.insert(acct.to_owned());
                    matching.push(key);
                }
            }
            for key in matching {
                store.purge(&key).await?;
                self.local().remove(&key);
                purged += 1;
            }
        }
        if let Some(a) = account {
            accounts.insert(a.to_owned());
        }
        for acct in accounts {
            // Not counted: most were purged above; this one only moves the entry's revision.
            let key = profile_key(&acct, igsid);
            self.profiles.purge(&key).await?;
            self.local().remove(&key);
        }
        Ok(purged)
    }
}

fn decode(bytes: Bytes) -> Option<(Cached, i64)> {
    let entry = CachedProfile::decode(bytes).ok()?;
    let expires = entry.expires_time.as_ref().map(igrelay_core::time::timestamp_to_ms).unwrap_or(0);
    let cached = match entry.profile {
        Some(p) => Cached::Profile(p),
        None => Cached::Refused {
            reason: NotEnrichedReason::try_from(entry.negative_reason).unwrap_or(NotEnrichedReason::LookupFailed),
            detail: entry.negative_detail,
        },
    };
    Some((cached, expires))
}

/// Keys are `<prefix>.<account>.<igsid>`: the account, when the key is about the user.
fn account_if_about<'a>(key: &'a str, igsid: &str, account: Option<&str>) -> Option<&'a str> {
    let mut parts = key.splitn(3, '.');
    let (Some(_), Some(acct), Some(user)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    (user == igsid && account.is_none_or(|a| a == acct)).then_some(acct)
}

#[cfg(test)]
fn key_is_about(key: &str, igsid: &str, account: Option<&str>) -> bool {
    account_if_about(key, igsid, account).is_some()
}

#[cfg(test)]
mod tests {
    use super::key_is_about;

    #[test]
    fn matches_only_the_users_keys() {
        assert!(key_is_about("p.178.55", "55", None));
        assert!(key_is_about("w.178.55", "55", Some("178")));
        assert!(!key_is_about("w.178.55", "55", Some("179")));
        assert!(!key_is_about("p.178.555", "55", None));
        assert!(!key_is_about("p.55", "55", None));
        assert!(!key_is_about("f.55", "55", None), "the forget marker stays");
    }
}

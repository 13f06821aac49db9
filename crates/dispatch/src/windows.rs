//! What dispatch learns from ingested events, in KV bucket `igrelay_windows`:
//! - `w.<account>.<igsid>`: when the user last messaged (or tapped a postback, or opened an ig.me
//!   link): the 24-hour / 7-day window starts there. Comments do not open a window.
//! - `c.<account>.<comment id>`: when a comment was made and whether it was a Live comment.
//! - `r.<account>.<comment id>`: a private reply was sent to that comment (one per comment).
//!
//! Values are 8-byte big-endian milliseconds (+ one byte "live" for comments).

use async_nats::jetstream::kv;
use bytes::Bytes;
use igrelay_core::v1::{Event, event::Payload};

pub fn user_key(account: &str, igsid: &str) -> Option<String> {
    key("w", account, igsid)
}

pub fn comment_key(account: &str, comment: &str) -> Option<String> {
    key("c", account, comment)
}

pub fn reply_key(account: &str, comment: &str) -> Option<String> {
    key("r", account, comment)
}

fn key(prefix: &str, account: &str, id: &str) -> Option<String> {
    // Ids from Meta are digits; anything else cannot be a KV key and is not looked up.
    (igrelay_core::ids::check_token(account).is_ok() && igrelay_core::ids::check_token(id).is_ok())
        .then(|| format!("{prefix}.{account}.{id}"))
}

fn ms_of(value: &[u8]) -> Option<i64> {
    value.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes)
}

#[derive(Debug, Clone)]
pub struct Windows {
    kv: kv::Store,
}

impl Windows {
    pub fn new(kv: kv::Store) -> Self {
        Self { kv }
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        Ok(self.kv.get(key).await?)
    }

    /// When `igsid` last opened the window of `account`, ms since the epoch.
    pub async fn last_user_message(&self, account: &str, igsid: &str) -> anyhow::Result<Option<i64>> {
        let Some(k) = user_key(account, igsid) else { return Ok(None) };
        Ok(self.get(&k).await?.as_deref().and_then(ms_of))
    }

    /// (time, live) of a comment seen on `account`'s media.
    pub async fn comment(&self, account: &str, comment: &str) -> anyhow::Result<Option<(i64, bool)>> {
        let Some(k) = comment_key(account, comment) else { return Ok(None) };
        Ok(self.get(&k).await?.and_then(|v| Some((ms_of(&v)?, v.get(8) == Some(&1)))))
    }

    pub async fn replied(&self, account: &str, comment: &str) -> anyhow::Result<bool> {
        let Some(k) = reply_key(account, comment) else { return Ok(false) };
        Ok(self.get(&k).await?.is_some())
    }

    /// Records that a private reply went out for `comment`.
    pub async fn mark_replied(&self, account: &str, comment: &str, at_ms: i64) -> anyhow::Result<()> {
        if let Some(k) = reply_key(account, comment) {
            self.kv.put(&k, Bytes::copy_from_slice(&at_ms.to_be_bytes())).await?;
        }
        Ok(())
    }

    /// Learns from one event.
    pub async fn learn(&self, event: &Event) -> anyhow::Result<()> {
        let Some(meta) = &event.meta else { return Ok(()) };
        let at = meta.event_time.as_ref().map(igrelay_core::time::timestamp_to_ms).unwrap_or(0);
        let account = meta.account_id.as_str();
        let (key, value) = match &event.payload {
            Some(Payload::Message(m)) if !m.is_echo => (user_key(account, &m.sender_id), at.to_be_bytes().to_vec()),
            Some(Payload::Postback(p)) => (user_key(account, &p.sender_id), at.to_be_bytes().to_vec()),
            Some(Payload::Referral(r)) => (user_key(account, &r.sender_id), at.to_be_bytes().to_vec()),
            Some(Payload::Comment(c)) => {
                let mut v = at.to_be_bytes().to_vec();
                v.push(u8::from(c.live));
                (comment_key(account, &c.comment_id), v)
            }
            _ => (None, Vec::new()),
        };
        let Some(key) = key else { return Ok(()) };
        // Keep the newest time: events can arrive out of order after Meta's retries.
        for _ in 0..5 {
            match self.kv.entry(&key).await? {
                Some(e) if e.operation == kv::Operation::Put => {
                    if ms_of(&e.value).is_some_and(|old| old >= at) {
                        return Ok(());
                    }
                    match self.kv.update(&key, Bytes::from(value.clone()), e.revision).await {
                        Ok(_) => return Ok(()),
                        Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                        Err(err) => return Err(err.into()),
                    }
                }
                _ => match self.kv.create(&key, Bytes::from(value.clone())).await {
                    Ok(_) => return Ok(()),
                    Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                    Err(err) => return Err(err.into()),
                },
            }
        }
        Ok(())
    }
}

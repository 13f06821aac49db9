//! Scheduled refresh of long-lived Instagram User tokens.
//!
//! Every `check_interval`, accounts with Instagram Login, status ACTIVE, and a token older than
//! `refresh_after` and not expired get a new token from Meta (`refresh_access_token`), stored
//! encrypted with its new issue and expiry times. Replicas do not refresh the same account at
//! once: each takes a lease first (`create` of `refresh.<account>` in bucket `igrelay_leases`,
//! which succeeds for one replica; the entry ages out after two minutes). When Meta refuses the
//! token (an auth error: 190 and its family), the account becomes NEEDS_REAUTH and an
//! `account_status` event is published; any other error is logged and retried at the next check.
//!
//! Both write-backs are compare-and-swap on the revision the token was read at: a removal or a
//! new registration that happens while Meta answers is never undone.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use igrelay_bus::OutgoingMessage;
use igrelay_bus::subjects::{self, EventKind};
use igrelay_core::AccountId;
use igrelay_core::v1::{Account, AccountStatus, AccountStatusChanged, Event, EventMeta, LoginType, event::Payload};
use igrelay_graph::{AccessToken, ErrorClass};
use tokio_util::sync::CancellationToken;

use crate::metrics::ResultLabel;
use crate::server::Shared;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefreshReport {
    pub refreshed: usize,
    pub failed: usize,
    pub retry_later: usize,
}

pub async fn run(s: Arc<Shared>, shutdown: CancellationToken) {
    let every = s.cfg.token_refresh.check_interval;
    loop {
        if igrelay_bus::connect::is_connected(&s.client) {
            let report = refresh_due(&s).await;
            if report != RefreshReport::default() {
                tracing::info!(?report, "token refresh round");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn due(a: &Account, refresh_after: Duration, now_ms: i64) -> bool {
    let ms = |t: &prost_types::Timestamp| igrelay_core::time::timestamp_to_ms(t);
    a.login_type == LoginType::Instagram as i32
        && a.status == AccountStatus::Active as i32
        && a.token_issued_time
            .as_ref()
            .is_some_and(|t| now_ms.saturating_sub(ms(t)) >= refresh_after.as_millis() as i64)
        && a.token_expires_time.as_ref().is_none_or(|t| ms(t) > now_ms)
}

/// One round over every account.
pub async fn refresh_due(s: &Shared) -> RefreshReport {
    let mut report = RefreshReport::default();
    let accounts = match s.store.list().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "token refresh: cannot list accounts");
            return report;
        }
    };
    let now = igrelay_core::time::now_ms();
    for a in accounts {
        if !due(&a, s.cfg.token_refresh.refresh_after, now) {
            continue;
        }
        let id = a.account_id.clone();
        // One replica per account at a time.
        if s.leases.create(format!("refresh.{id}"), Bytes::from_static(b"gateway")).await.is_err() {
            continue;
        }
        let result = refresh_one(s, &id).await;
        let label = match result {
            Outcome::Refreshed => {
                report.refreshed += 1;
                "refreshed"
            }
            Outcome::Failed => {
                report.failed += 1;
                "failed"
            }
            Outcome::RetryLater => {
                report.retry_later += 1;
                "retry_later"
            }
        };
        s.metrics.token_refreshes.get_or_create(&ResultLabel { result: label }).inc();
    }
    report
}

enum Outcome {
    Refreshed,
    Failed,
    RetryLater,
}

async fn refresh_one(s: &Shared, id: &str) -> Outcome {
    let (account, token, revision) = match s.store.credentials_at(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Outcome::RetryLater,
        Err(e) => {
            tracing::warn!(account = id, error = %e, "token refresh: cannot read the token");
            return Outcome::RetryLater;
        }
    };
    match s.graph.refresh_access_token(&AccessToken::new(token.expose())).await {
        Ok(r) => {
            let now = igrelay_core::time::now_ms();
            let mut updated = account;
            updated.token_issued_time = Some(igrelay_core::time::timestamp_from_ms(now));
            updated.token_expires_time = r.value.expires_in.map(|s| {
                let ms = i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000);
                igrelay_core::time::timestamp_from_ms(now.saturating_add(ms))
            });
            match s.store.put_at(updated, r.value.access_token.expose(), revision).await {
                Ok(_) => {
                    tracing::info!(account = id, "instagram token refreshed");
                    Outcome::Refreshed
                }
                Err(e @ igrelay_accounts::AccountsError::Changed(_)) => {
                    tracing::info!(account = id, error = %e, "refreshed token discarded: the account changed meanwhile");
                    Outcome::RetryLater
                }
                Err(e) => {
                    tracing::error!(account = id, error = %e, "token refreshed by Meta but not stored");
                    Outcome::RetryLater
                }
            }
        }
        // Only Meta saying the token itself is invalid (190 family) needs a new login; anything
        // else (a bad parameter, a policy or permission answer, throttling, an outage) says
        // nothing about the token and is tried again.
        Err(e) => match e.class() {
            ErrorClass::Auth => {
                tracing::warn!(account = id, error = %e, "token refresh refused; account needs re-authorisation");
                mark_needs_reauth_at(s, id, &format!("token refresh refused: {e}"), Some(revision)).await;
                Outcome::Failed
            }
            ErrorClass::Permanent => {
                tracing::warn!(account = id, error = %e, "token refresh failed (not an auth error); retrying at the next check");
                Outcome::RetryLater
            }
            ErrorClass::Throttled { .. } | ErrorClass::Transient => {
                tracing::info!(account = id, error = %e, "token refresh failed; retrying at the next check");
                Outcome::RetryLater
            }
        },
    }
}

/// Marks the account NEEDS_REAUTH and, if that changed its status, publishes an
/// `account_status` event.
pub async fn mark_needs_reauth(s: &Shared, id: &str, reason: &str) {
    mark_needs_reauth_at(s, id, reason, None).await;
}

/// As `mark_needs_reauth`, only while the account's record is at `revision` (when given).
async fn mark_needs_reauth_at(s: &Shared, id: &str, reason: &str, revision: Option<u64>) {
    let changed = match s.store.set_status_at(id, AccountStatus::NeedsReauth, reason, revision).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(account = id, error = %e, "cannot mark the account NEEDS_REAUTH");
            return;
        }
    };
    let Some((previous, account)) = changed else {
        return;
    };
    let Ok(account_id) = AccountId::parse(id) else {
        return;
    };
    let unique = match igrelay_core::ids::random_id() {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(account = id, error = %e, "no randomness for an event id; account_status event not published");
            return;
        }
    };
    let now = igrelay_core::time::now();
    let event = Event {
        meta: Some(EventMeta {
            event_id: format!("account_status:{id}:{unique}"),
            account_id: id.to_owned(),
            event_time: Some(now),
            received_time: Some(now),
            // Not from Meta (as in dispatch's account_status events).
            webhook_field: "igrelay".into(),
            ..Default::default()
        }),
        payload: Some(Payload::AccountStatus(AccountStatusChanged {
            account: Some(account),
            previous_status: previous as i32,
        })),
    };
    let msg = OutgoingMessage::proto(
        subjects::event(&account_id, EventKind::AccountStatus),
        event.meta.as_ref().map(|m| m.event_id.clone()).unwrap_or_default(),
        &event,
    )
    .with_kind(EventKind::AccountStatus.token());
    if let Err(e) = s.publisher.publish(msg, &igrelay_bus::trace::current(), s.cfg.publish_deadline).await {
        tracing::error!(account = id, error = %e, "cannot publish the account_status event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_unexpired_active_instagram_tokens_are_due() {
        let day = 86_400_000;
        let now = 100 * day;
        let ts = igrelay_core::time::timestamp_from_ms;
        let a = Account {
            login_type: LoginType::Instagram as i32,
            status: AccountStatus::Active as i32,
            token_issued_time: Some(ts(now - 2 * day)),
            token_expires_time: Some(ts(now + 50 * day)),
            ..Default::default()
        };
        let h24 = Duration::from_secs(86_400);
        assert!(due(&a, h24, now));
        let young = Account { token_issued_time: Some(ts(now - 3_600_000)), ..a.clone() };
        assert!(!due(&young, h24, now));
        let expired = Account { token_expires_time: Some(ts(now - 1)), ..a.clone() };
        assert!(!due(&expired, h24, now));
        let facebook = Account { login_type: LoginType::Facebook as i32, ..a.clone() };
        assert!(!due(&facebook, h24, now));
        let paused = Account { status: AccountStatus::Paused as i32, ..a };
        assert!(!due(&paused, h24, now));
    }

    #[test]
    fn absurd_issue_times_neither_panic_nor_wrap() {
        let ts = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        let a = Account {
            login_type: LoginType::Instagram as i32,
            status: AccountStatus::Active as i32,
            token_issued_time: Some(ts(i64::MIN)),
            ..Default::default()
        };
        let h24 = Duration::from_secs(86_400);
        assert!(due(&a, h24, 1_700_000_000_000));
        let future = Account { token_issued_time: Some(ts(i64::MAX)), ..a };
        assert!(!due(&future, h24, 1_700_000_000_000));
    }
}

//! Scheduled refresh of long-lived Instagram User tokens.
//!
//! Every `check_interval`, accounts with Instagram Login, status ACTIVE, and a token older than
//! `refresh_after` and not expired get a new token from Meta (`refresh_access_token`), stored
//! encrypted with its new issue and expiry times. Replicas do not refresh the same account at
//! once: each takes a lease first (`create` of `refresh.<account>` in bucket `igrelay_leases`,
//! which succeeds for one replica; the entry ages out after two minutes). When Meta refuses the
//! token (auth or permanent error), the account becomes NEEDS_REAUTH and an `account_status`
//! event is published; throttling and transient errors are retried at the next check.

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
        && a.token_issued_time.as_ref().is_some_and(|t| now_ms - ms(t) >= refresh_after.as_millis() as i64)
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
    let (account, token) = match s.store.credentials(id).await {
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
            updated.token_expires_time =
                r.value.expires_in.map(|s| igrelay_core::time::timestamp_from_ms(now + (s as i64) * 1000));
            match s.store.put(updated, r.value.access_token.expose()).await {
                Ok(_) => {
                    tracing::info!(account = id, "instagram token refreshed");
                    Outcome::Refreshed
                }
                Err(e) => {
                    tracing::error!(account = id, error = %e, "token refreshed by Meta but not stored");
                    Outcome::RetryLater
                }
            }
        }
        Err(e) => match e.class() {
            ErrorClass::Auth | ErrorClass::Permanent => {
                tracing::warn!(account = id, error = %e, "token refresh refused; account needs re-authorisation");
                mark_needs_reauth(s, id, &format!("token refresh refused: {e}")).await;
                Outcome::Failed
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
    let changed = match s.store.set_status(id, AccountStatus::NeedsReauth, reason).await {
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
    let now = igrelay_core::time::now();
    let event = Event {
        meta: Some(EventMeta {
            event_id: format!("account_status:{id}:{}", nuid::next()),
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
}

//! The call stage: credentials, rate limit, the Graph API call, and what each answer means.
//! Every wait here observes shutdown and the partition's lease, and an account that is not
//! active parks the command instead of holding its in-flight slot.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use igrelay_bus::OutgoingMessage;
use igrelay_bus::subjects::{self, EventKind};
use igrelay_core::AccountId;
use igrelay_core::time::{now_ms, timestamp_from_ms};
use igrelay_core::v1::{
    self, AccountStatus, CommandOutcome, ErrorClass as PbClass, RejectReason, command_outcome::Result as OutcomeResult,
    event::Payload,
};
use igrelay_graph::{AccountAuth, ErrorClass, GraphError, Host};
use tokio::time::Instant;

use crate::Ctx;
use crate::limiter::{Class, Permit};
use crate::process::{Call, Early, Job};
use crate::validate::{PlanTarget, reject};

impl Job<'_> {
    /// Calls until an answer that ends the command.
    pub(crate) async fn call_until_done(
        &self,
        call: &Call,
        class: Class,
        deadline: Instant,
        mut attempts: u32,
    ) -> Result<CommandOutcome, Early> {
        let mut backoff = self.ctx.cfg.retry_initial;
        let mut last_error = String::new();
        loop {
            let auth = self.credentials(deadline, attempts, &mut last_error).await?;
            let permit = self.acquire(class, deadline, attempts, &last_error).await?;
            self.still_owned()?;
            attempts += 1;
            self.ctx.metrics.calls.inc();
            // Keep the delivery alive during the call: a redelivery while the call is in flight
            // would be taken for a dead owner's call and sent again.
            let result = with_progress(self.msg, self.ctx.cfg.ack_wait / 3, self.call_once(call, &auth)).await;
            permit.finish();
            match result {
                Ok((usage, sent)) => return Ok(self.sent(call, usage, sent, attempts).await),
                Err(e) => {
                    if let Some(u) = e.usage() {
                        slow_down(self.ctx, self.acct(), u);
                    }
                    last_error = e.to_string();
                    self.after_error(&e, deadline, attempts, &mut backoff, &last_error).await?;
                }
            }
        }
    }

    /// The account's credentials when it is active; parks the command otherwise.
    async fn credentials(
        &self,
        deadline: Instant,
        attempts: u32,
        last_error: &mut String,
    ) -> Result<AccountAuth, Early> {
        loop {
            match self.ctx.accounts.credentials(self.acct()).await {
                Ok(Some((a, t))) if a.status == AccountStatus::Active as i32 => {
                    let host =
                        if a.login_type == v1::LoginType::Facebook as i32 { Host::Facebook } else { Host::Instagram };
                    return Ok(AccountAuth { host, token: igrelay_graph::AccessToken::new(t.expose()) });
                }
                Ok(Some(_)) if Instant::now() < deadline => return Err(Early::Park),
                Ok(Some((a, _))) => {
                    let status = AccountStatus::try_from(a.status).unwrap_or_default();
                    let last_error = format!("account is {status:?}: {}", a.status_reason);
                    return Err(self.done(attempts, OutcomeResult::Expired(v1::Expired { last_error })));
                }
                Ok(None) => {
                    let r = reject(RejectReason::UnknownAccount, "account_id", "the account was removed");
                    return Err(self.done(attempts, OutcomeResult::Rejected(r)));
                }
                Err(e) => *last_error = e.to_string(),
            }
            self.wait(deadline, Duration::from_millis(500), attempts, last_error.as_str()).await?;
        }
    }

    /// A rate-limit slot, keeping the delivery alive while waiting for it.
    async fn acquire(&self, class: Class, deadline: Instant, attempts: u32, last_error: &str) -> Result<Permit, Early> {
        let step = self.ctx.cfg.ack_wait / 3;
        loop {
            self.still_owned()?;
            let until = (Instant::now() + step).min(deadline);
            let permit = tokio::select! {
                p = self.ctx.limiter.acquire(self.acct(), class, until) => p,
                _ = self.stop.cancelled() => return Err(Early::HandBack),
            };
            if let Some(p) = permit {
                return Ok(p);
            }
            if Instant::now() >= deadline {
                let last_error = format!("rate limit: no free slot before the deadline {last_error}");
                return Err(self.done(attempts, OutcomeResult::Expired(v1::Expired { last_error })));
            }
            let _ = self.msg.ack_with(AckKind::Progress).await;
        }
    }

    async fn call_once(&self, call: &Call, auth: &AccountAuth) -> Result<(igrelay_graph::Usage, v1::Sent), GraphError> {
        let (ctx, acct) = (self.ctx, self.acct());
        match call {
            Call::Send(plan) => ctx.graph.send_message(auth, acct, &plan.request).await.map(|r| {
                let sent = v1::Sent {
                    message_id: r.value.message_id.unwrap_or_default(),
                    recipient_id: r.value.recipient_id.unwrap_or_default(),
                    attachment_id: String::new(),
                };
                (r.usage, sent)
            }),
            Call::Upload(kind, url) => ctx
                .graph
                .upload_attachment(auth, acct, *kind, url, true)
                .await
                .map(|r| (r.usage, v1::Sent { attachment_id: r.value.attachment_id, ..Default::default() })),
        }
    }

    /// Records what a successful call changed, and builds the outcome.
    async fn sent(&self, call: &Call, usage: igrelay_graph::Usage, sent: v1::Sent, attempts: u32) -> CommandOutcome {
        slow_down(self.ctx, self.acct(), &usage);
        if let Call::Send(plan) = call
            && let PlanTarget::Comment(c) = &plan.target
        {
            let _ = self.ctx.windows.mark_replied(self.acct(), c, now_ms()).await;
        }
        if !sent.message_id.is_empty() {
            let key = igrelay_bus::topology::sent_message_key(&sent.message_id);
            let _ = self.ctx.idem.put(key, Bytes::from(self.id.to_owned())).await;
        }
        self.outcome(attempts, OutcomeResult::Sent(sent))
    }

    /// Decides what a failed call means: wait and retry (Ok), or end the command (Err).
    async fn after_error(
        &self,
        e: &GraphError,
        deadline: Instant,
        attempts: u32,
        backoff: &mut Duration,
        last_error: &str,
    ) -> Result<(), Early> {
        match e.class() {
            ErrorClass::Throttled { retry_after } => {
                self.ctx.metrics.throttled.inc();
                let wait_for = retry_after.min(self.ctx.cfg.throttle_wait).max(Duration::from_millis(200));
                self.ctx.limiter.pause(self.acct(), wait_for);
                tracing::warn!(account = self.acct(), ?wait_for, error = %e, "throttled by Meta; waiting");
                Ok(())
            }
            ErrorClass::Transient => {
                self.ctx.metrics.retries.inc();
                let jitter = Duration::from_millis(now_ms().rem_euclid(97) as u64);
                self.wait(deadline, *backoff + jitter, attempts, last_error).await?;
                *backoff = (*backoff * 2).min(self.ctx.cfg.retry_max);
                Ok(())
            }
            // The next round finds the account not active and parks the command.
            ErrorClass::Auth => {
                pause_account(self.ctx, self.account, e).await;
                Ok(())
            }
            ErrorClass::Permanent => Err(self.done(attempts, OutcomeResult::Failed(failed(e)))),
        }
    }

    /// Sleeps `for_`, keeping the delivery alive; ends the command as Expired if the deadline
    /// comes first, hands it back on shutdown or lease loss.
    async fn wait(&self, deadline: Instant, for_: Duration, attempts: u32, last_error: &str) -> Result<(), Early> {
        let until = Instant::now() + for_;
        if until >= deadline {
            let last_error = last_error.to_owned();
            return Err(self.done(attempts, OutcomeResult::Expired(v1::Expired { last_error })));
        }
        let step = self.ctx.cfg.ack_wait / 3;
        while Instant::now() < until {
            self.still_owned()?;
            let next = (Instant::now() + step).min(until);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.stop.cancelled() => return Err(Early::HandBack),
            }
            let _ = self.msg.ack_with(AckKind::Progress).await;
        }
        self.still_owned()
    }
}

/// Runs `fut`, sending a progress ack every `every` until it completes.
async fn with_progress<T>(msg: &jetstream::Message, every: Duration, fut: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(fut);
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = ticker.tick() => {
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        }
    }
}

fn slow_down(ctx: &Ctx, account: &str, usage: &igrelay_graph::Usage) {
    if let Some(regain) = usage.regain_access_in() {
        ctx.limiter.pause(account, regain);
        return;
    }
    // Throttling proper comes back as an error (and pauses the account there); the rate
    // limiter already keeps the per-second classes within Meta's limits, so a header at 100 %
    // only means a budget is used up exactly.
    if usage.max_percent() >= ctx.cfg.usage_slowdown_percent {
        // Close to the budget: leave one send interval free before the next call, so the
        // account slows down before it runs into a throttle.
        ctx.limiter.pause(account, Duration::from_secs(1) / ctx.cfg.limits.send_per_s.max(1));
    }
}

fn failed(e: &GraphError) -> v1::Failed {
    let class = match e.class() {
        ErrorClass::Throttled { .. } => PbClass::Throttled,
        ErrorClass::Transient => PbClass::Transient,
        ErrorClass::Auth => PbClass::Auth,
        ErrorClass::Permanent => PbClass::Permanent,
    };
    match e.api() {
        Some(api) => v1::Failed {
            code: api.code,
            subcode: api.subcode.unwrap_or(0),
            message: api.message.clone(),
            fbtrace_id: api.fbtrace_id.clone().unwrap_or_default(),
            error_class: class as i32,
        },
        None => v1::Failed { message: e.to_string(), error_class: class as i32, ..Default::default() },
    }
}

/// Marks the account as needing re-authorisation and tells the world (once).
async fn pause_account(ctx: &Ctx, account: &AccountId, e: &GraphError) {
    let reason = e.api().map(|a| format!("({}) {}", a.code, a.message)).unwrap_or_else(|| e.to_string());
    match ctx.accounts.set_status(account.as_str(), AccountStatus::NeedsReauth, &reason).await {
        Ok(Some((previous, acct))) => {
            tracing::warn!(account = %account, %reason, "account needs re-authorisation; its commands are parked");
            let at = now_ms();
            let event = v1::Event {
                meta: Some(v1::EventMeta {
                    event_id: format!("account_status:{account}:{at}"),
                    account_id: account.to_string(),
                    event_time: Some(timestamp_from_ms(at)),
                    received_time: Some(timestamp_from_ms(at)),
                    webhook_field: "igrelay".into(),
                    ..Default::default()
                }),
                payload: Some(Payload::AccountStatus(v1::AccountStatusChanged {
                    account: Some(acct),
                    previous_status: previous as i32,
                })),
            };
            let msg = OutgoingMessage::proto(
                subjects::event(account, EventKind::AccountStatus),
                format!("account_status:{account}:{at}"),
                &event,
            )
            .with_kind(EventKind::AccountStatus.token());
            if let Err(err) = ctx.publisher.publish(msg, &igrelay_bus::trace::current(), Duration::from_secs(5)).await {
                tracing::warn!(error = %err, "account status event not published");
            }
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "cannot mark the account"),
    }
}

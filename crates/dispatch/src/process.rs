//! One command, from delivery to outcome.
//!
//! Exactly one outcome per command: the outcome is published with `Nats-Msg-Id =
//! out:<account>:<command id>` and recorded in KV bucket `igrelay_idempotency` before the
//! command is acknowledged. A command delivered again (redelivery, or the same id submitted
//! again) finds the record and never causes a second Graph call once one succeeded. The one gap:
//! a process killed while a call was in flight leaves an "in flight" record and no answer; the
//! next owner sends that call again (at-least-once for that call alone) and says so in the
//! outcome's attempt count.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use igrelay_bus::OutgoingMessage;
use igrelay_bus::subjects::{self, EventKind, OutcomeKind};
use igrelay_core::AccountId;
use igrelay_core::time::{now, now_ms, timestamp_from_ms, timestamp_to_ms};
use igrelay_core::v1::{
    self, AccountStatus, CommandOutcome, ErrorClass as PbClass, RejectReason, SendCommand, UploadAttachmentCommand,
    command_outcome::Result as OutcomeResult, event::Payload,
};
use igrelay_graph::{AccountAuth, ErrorClass, GraphError, Host};
use prost::Message as _;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::Ctx;
use crate::lease::Lease;
use crate::limiter::Class;
use crate::validate::{self, PlanTarget, reject};

/// A decoded command.
enum Command {
    Send(SendCommand),
    Upload(UploadAttachmentCommand),
}

impl Command {
    fn id(&self) -> &str {
        match self {
            Self::Send(c) => &c.command_id,
            Self::Upload(c) => &c.command_id,
        }
    }

    fn account(&self) -> &str {
        match self {
            Self::Send(c) => &c.account_id,
            Self::Upload(c) => &c.account_id,
        }
    }

    fn deadline(&self) -> Option<&prost_types::Timestamp> {
        match self {
            Self::Send(c) => c.deadline.as_ref(),
            Self::Upload(c) => c.deadline.as_ref(),
        }
    }

    fn accepted(&self) -> Option<&prost_types::Timestamp> {
        match self {
            Self::Send(c) => c.accepted_time.as_ref(),
            Self::Upload(c) => c.accepted_time.as_ref(),
        }
    }

    /// Hash of what the command asks for (not who or when), to tell a resubmission from a
    /// different command that reuses an id.
    fn content_hash(&self) -> [u8; 32] {
        let bytes = match self {
            Self::Send(c) => {
                let mut c = c.clone();
                (c.accepted_time, c.caller, c.deadline) = (None, None, None);
                c.encode_to_vec()
            }
            Self::Upload(c) => {
                let mut c = c.clone();
                (c.accepted_time, c.caller, c.deadline) = (None, None, None);
                c.encode_to_vec()
            }
        };
        Sha256::digest(bytes).into()
    }
}

/// The lane a command is served in: commands of one lane go out one at a time, in order.
pub fn lane_of(subject: &str, payload: &[u8]) -> String {
    let kind = subjects::parse_stored_command(subject).map(|(k, _, _)| k).unwrap_or("send");
    match kind {
        "send" => match SendCommand::decode(payload) {
            Ok(c) => {
                let to = match c.recipient.and_then(|r| r.target) {
                    Some(v1::recipient::Target::Igsid(u)) => u,
                    Some(v1::recipient::Target::CommentId(c)) => format!("c:{c}"),
                    None => String::new(),
                };
                format!("{}/{to}", c.account_id)
            }
            Err(_) => "_undecodable".into(),
        },
        other => format!("_{other}"),
    }
}

fn idem_key(account: &str, command_id: &str) -> String {
    let h = Sha256::digest(format!("{account}\n{command_id}"));
    format!("cmd.{}", hex::encode(&h[..16]))
}

const IN_FLIGHT: u8 = b'I';
const DONE: u8 = b'D';

/// Handles one delivered command completely, including its acknowledgement.
pub async fn handle(ctx: &Ctx, msg: jetstream::Message, lease: &Lease) {
    let kind = subjects::parse_stored_command(&msg.subject).map(|(k, _, _)| k.to_owned()).unwrap_or_default();
    let cmd = match kind.as_str() {
        "send" => SendCommand::decode(msg.payload.clone()).map(Command::Send),
        "upload" => UploadAttachmentCommand::decode(msg.payload.clone()).map(Command::Upload),
        other => {
            let reason = format!("unknown command kind {other:?} in subject {}", msg.subject);
            return dead_letter(ctx, &msg, &reason).await;
        }
    };
    let cmd = match cmd {
        Ok(c) => c,
        Err(e) => return dead_letter(ctx, &msg, &format!("payload is not a {kind} command: {e}")).await,
    };
    let account = match AccountId::parse(cmd.account()) {
        Ok(a) => a,
        Err(e) => return dead_letter(ctx, &msg, &format!("account_id {:?}: {e}", cmd.account())).await,
    };
    let published_ms = msg.info().ok().map(|i| i.published.unix_timestamp_nanos() / 1_000_000).map(|n| n as i64);
    match process(ctx, &msg, &cmd, &account, published_ms, lease).await {
        Some(outcome) => finish(ctx, &msg, &account, outcome).await,
        // Handed back (lease lost or shutting down): another owner carries it out.
        None => {
            let _ = msg.ack_with(AckKind::Nak(None)).await;
        }
    }
}

async fn dead_letter(ctx: &Ctx, msg: &jetstream::Message, reason: &str) {
    ctx.metrics.outcome("dead_letter");
    let subject = subjects::dead_letter(igrelay_bus::StreamDef::Commands.name(), "dispatch");
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    igrelay_bus::consume::dead_letter(&ctx.js, &subject, msg, reason, delivered).await;
}

/// Publishes the outcome, records it, acknowledges the command.
async fn finish(ctx: &Ctx, msg: &jetstream::Message, account: &AccountId, outcome: CommandOutcome) {
    let kind = match &outcome.result {
        Some(OutcomeResult::Sent(_)) => OutcomeKind::Sent,
        Some(OutcomeResult::Rejected(_)) => OutcomeKind::Rejected,
        Some(OutcomeResult::Failed(_)) => OutcomeKind::Failed,
        _ => OutcomeKind::Expired,
    };
    ctx.metrics.outcome(kind.token());
    let out = OutgoingMessage::proto(
        subjects::outcome(account, kind),
        format!("out:{account}:{}", outcome.command_id),
        &outcome,
    )
    .with_kind(kind.token());
    let cx = msg.headers.as_ref().and_then(igrelay_bus::trace::extract).unwrap_or_else(igrelay_bus::trace::current);
    if let Err(e) = ctx.publisher.publish(out, &cx, Duration::from_secs(5)).await {
        tracing::warn!(error = %e, command = %outcome.command_id, "outcome not stored; command will be redelivered");
        let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        return;
    }
    let mut record = vec![DONE];
    record.extend_from_slice(&outcome.encode_to_vec());
    if let Err(e) = ctx.idem.put(idem_key(account.as_str(), &outcome.command_id), Bytes::from(record)).await {
        tracing::warn!(error = %e, "idempotency record not written; the outcome is deduplicated on redelivery");
    }
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(error = %e, "ack not confirmed; a redelivery finds the outcome record");
    }
}

fn outcome(cmd_id: &str, account: &str, attempts: u32, result: OutcomeResult) -> CommandOutcome {
    CommandOutcome {
        command_id: cmd_id.to_owned(),
        account_id: account.to_owned(),
        completed_time: Some(now()),
        attempts,
        result: Some(result),
    }
}

/// Carries the command out; `None` when it must be handed back unfinished.
async fn process(
    ctx: &Ctx,
    msg: &jetstream::Message,
    cmd: &Command,
    account: &AccountId,
    published_ms: Option<i64>,
    lease: &Lease,
) -> Option<CommandOutcome> {
    let id = cmd.id().to_owned();
    let acct = account.as_str();
    let done = |attempts: u32, r: OutcomeResult| Some(outcome(&id, acct, attempts, r));
    let rejected = |r: v1::Rejected| Some(outcome(&id, acct, 0, OutcomeResult::Rejected(r)));
    if id.is_empty() {
        return rejected(reject(RejectReason::Invalid, "command_id", "every command needs an id"));
    }

    // Idempotency: a finished command is never carried out again.
    let key = idem_key(acct, &id);
    let hash = cmd.content_hash();
    let mut attempts = 0u32;
    match ctx.idem.entry(&key).await {
        Ok(Some(e)) if e.operation == async_nats::jetstream::kv::Operation::Put && !e.value.is_empty() => {
            let stored_hash = e.value.get(1..33);
            match e.value[0] {
                DONE => {
                    if let Ok(previous) = CommandOutcome::decode(&e.value[1..]) {
                        ctx.metrics.outcome("duplicate");
                        return Some(previous);
                    }
                }
                IN_FLIGHT if stored_hash.is_some_and(|h| h != hash) => {
                    return rejected(reject(
                        RejectReason::DuplicateIdConflict,
                        "command_id",
                        "this command id was already used for a different command",
                    ));
                }
                // A previous owner died with this call in flight: its result is unknown.
                IN_FLIGHT => attempts = 1,
                _ => {}
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "idempotency store unavailable; handing the command back");
            return None;
        }
    }

    let now_ms = now_ms();
    let accepted_ms = cmd.accepted().map(timestamp_to_ms).or(published_ms).unwrap_or(now_ms);
    let deadline_ms =
        cmd.deadline().map(timestamp_to_ms).unwrap_or(accepted_ms + ctx.cfg.default_deadline.as_millis() as i64);
    let deadline = Instant::now() + Duration::from_millis((deadline_ms - now_ms).max(0) as u64);
    if deadline_ms <= now_ms {
        return done(
            attempts,
            OutcomeResult::Expired(v1::Expired {
                last_error: "the deadline passed before the command was taken up".into(),
            }),
        );
    }

    // Plan and validate.
    let (plan, upload) = match cmd {
        Command::Send(c) => match validate::plan(c) {
            Ok(p) => (Some(p), None),
            Err(r) => return rejected(r),
        },
        Command::Upload(u) => {
            if !(u.url.starts_with("https://") || u.url.starts_with("http://")) {
                return rejected(reject(RejectReason::Invalid, "url", "must be an http(s) URL"));
            }
            let kind = match v1::MediaKind::try_from(u.kind) {
                Ok(v1::MediaKind::Image) => igrelay_graph::messaging::AttachmentKind::Image,
                Ok(v1::MediaKind::Audio) => igrelay_graph::messaging::AttachmentKind::Audio,
                Ok(v1::MediaKind::Video) => igrelay_graph::messaging::AttachmentKind::Video,
                Ok(v1::MediaKind::File) => igrelay_graph::messaging::AttachmentKind::File,
                _ => {
                    return rejected(reject(
                        RejectReason::Invalid,
                        "kind",
                        "must be MEDIA_KIND_IMAGE, _AUDIO, _VIDEO or _FILE",
                    ));
                }
            };
            (None, Some((kind, u.url.clone())))
        }
    };

    // The account must exist.
    match ctx.accounts.get(acct).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return rejected(reject(
                RejectReason::UnknownAccount,
                "account_id",
                format!("account {acct} is not registered with igrelay"),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "account store unavailable; handing the command back");
            return None;
        }
    }

    // Windows and private-reply rules, learned from ingested events.
    let mut class = Class::Send;
    if let Some(plan) = &plan {
        class = plan.class;
        match &plan.target {
            PlanTarget::User(user) => {
                let window = if plan.human_agent { ctx.cfg.human_agent_window } else { ctx.cfg.window };
                match user_window(ctx, acct, user).await {
                    Some(last) if now_ms - last <= window.as_millis() as i64 => {}
                    Some(last) => {
                        let hours = (now_ms - last) / 3_600_000;
                        return rejected(reject(
                            RejectReason::WindowClosed,
                            "recipient.igsid",
                            format!(
                                "the user last wrote {hours} h ago; the window is {} h{}",
                                window.as_secs() / 3600,
                                if plan.human_agent {
                                    " (HUMAN_AGENT)"
                                } else {
                                    "; a human agent may answer within 7 days with tag HUMAN_AGENT"
                                }
                            ),
                        ));
                    }
                    None => {
                        return rejected(reject(
                            RejectReason::WindowClosed,
                            "recipient.igsid",
                            "the user has not written to this account (no message, postback or ig.me referral seen): Meta allows messages only in reply",
                        ));
                    }
                }
            }
            PlanTarget::Comment(comment) => {
                match ctx.windows.replied(acct, comment).await {
                    Ok(true) => {
                        return rejected(reject(
                            RejectReason::PrivateReplyNotAllowed,
                            "recipient.comment_id",
                            "a private reply was already sent for this comment (Meta allows one)",
                        ));
                    }
                    Ok(false) => {}
                    Err(_) => return None,
                }
                if let Ok(Some((at, live))) = ctx.windows.comment(acct, comment).await {
                    if now_ms - at > ctx.cfg.private_reply_window.as_millis() as i64 {
                        return rejected(reject(
                            RejectReason::PrivateReplyNotAllowed,
                            "recipient.comment_id",
                            format!(
                                "the comment is older than {} days",
                                ctx.cfg.private_reply_window.as_secs() / 86_400
                            ),
                        ));
                    }
                    if live {
                        class = Class::LivePrivateReply;
                    }
                }
            }
        }
    }

    // Mark in flight, then call until an answer that ends the command.
    let mut record = vec![IN_FLIGHT];
    record.extend_from_slice(&hash);
    if ctx.idem.put(&key, Bytes::from(record)).await.is_err() {
        return None;
    }
    let mut backoff = ctx.cfg.retry_initial;
    let mut last_error = String::new();
    loop {
        // Wait while the account needs re-authorisation or is paused: commands wait, in order.
        let (account_rec, token) = loop {
            match ctx.accounts.credentials(acct).await {
                Ok(Some((a, t))) if a.status == AccountStatus::Active as i32 => break (a, t),
                Ok(Some(a)) => {
                    last_error = format!(
                        "account is {:?}: {}",
                        AccountStatus::try_from(a.0.status).unwrap_or_default(),
                        a.0.status_reason
                    );
                }
                Ok(None) => {
                    return done(
                        attempts,
                        OutcomeResult::Rejected(reject(
                            RejectReason::UnknownAccount,
                            "account_id",
                            "the account was removed",
                        )),
                    );
                }
                Err(e) => last_error = e.to_string(),
            }
            if !wait(msg, deadline, Duration::from_millis(500), ctx).await {
                return done(attempts, OutcomeResult::Expired(v1::Expired { last_error }));
            }
        };
        let auth = AccountAuth {
            host: if account_rec.login_type == v1::LoginType::Facebook as i32 {
                Host::Facebook
            } else {
                Host::Instagram
            },
            token: igrelay_graph::AccessToken::new(token.expose()),
        };

        // Rate limit, then make sure this process still owns the partition.
        let Some(permit) = acquire(ctx, msg, acct, class, deadline).await else {
            return done(
                attempts,
                OutcomeResult::Expired(v1::Expired {
                    last_error: format!("rate limit: no free slot before the deadline {last_error}"),
                }),
            );
        };
        if !lease.valid() {
            return None;
        }
        attempts += 1;
        ctx.metrics.calls.inc();
        let call = async {
            match (&plan, &upload) {
                (Some(plan), _) => ctx.graph.send_message(&auth, acct, &plan.request).await.map(|r| {
                    (
                        r.usage,
                        v1::Sent {
                            message_id: r.value.message_id.unwrap_or_default(),
                            recipient_id: r.value.recipient_id.unwrap_or_default(),
                            attachment_id: String::new(),
                        },
                    )
                }),
                (None, Some((kind, url))) => ctx
                    .graph
                    .upload_attachment(&auth, acct, *kind, url, true)
                    .await
                    .map(|r| (r.usage, v1::Sent { attachment_id: r.value.attachment_id, ..Default::default() })),
                (None, None) => Err(GraphError::InvalidArgument("nothing to call".into())),
            }
        };
        // Keep the delivery alive during the call: a redelivery while the call is in flight
        // would be taken for a dead owner's call and sent again.
        let result = with_progress(msg, ctx.cfg.ack_wait / 3, call).await;
        permit.finish();
        match result {
            Ok((usage, sent)) => {
                slow_down(ctx, acct, &usage);
                if let Some(PlanTarget::Comment(c)) = plan.as_ref().map(|p| &p.target) {
                    let _ = ctx.windows.mark_replied(acct, c, now_ms).await;
                }
                if !sent.message_id.is_empty() {
                    let _ = ctx
                        .idem
                        .put(igrelay_bus::topology::sent_message_key(&sent.message_id), Bytes::from(id.clone()))
                        .await;
                }
                return done(attempts, OutcomeResult::Sent(sent));
            }
            Err(e) => {
                if let Some(u) = e.usage() {
                    slow_down(ctx, acct, u);
                }
                last_error = e.to_string();
                match e.class() {
                    ErrorClass::Throttled { retry_after } => {
                        ctx.metrics.throttled.inc();
                        let wait_for = retry_after.min(ctx.cfg.throttle_wait).max(Duration::from_millis(200));
                        ctx.limiter.pause(acct, wait_for);
                        tracing::warn!(account = acct, ?wait_for, error = %e, "throttled by Meta; waiting");
                    }
                    ErrorClass::Transient => {
                        ctx.metrics.retries.inc();
                        let jitter = Duration::from_millis(now_ms.rem_euclid(97) as u64);
                        if !wait(msg, deadline, backoff + jitter, ctx).await {
                            return done(attempts, OutcomeResult::Expired(v1::Expired { last_error }));
                        }
                        backoff = (backoff * 2).min(ctx.cfg.retry_max);
                    }
                    ErrorClass::Auth => {
                        pause_account(ctx, account, &e).await;
                    }
                    ErrorClass::Permanent => return done(attempts, OutcomeResult::Failed(failed(&e))),
                }
            }
        }
    }
}

async fn user_window(ctx: &Ctx, account: &str, user: &str) -> Option<i64> {
    // The events consumer may trail a reply sent right after the user's message: look again
    // for a little while before deciding there is no window.
    let give_up = Instant::now() + ctx.cfg.window_grace;
    loop {
        if let Ok(Some(t)) = ctx.windows.last_user_message(account, user).await {
            return Some(t);
        }
        if Instant::now() >= give_up {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn acquire(
    ctx: &Ctx,
    msg: &jetstream::Message,
    account: &str,
    class: Class,
    deadline: Instant,
) -> Option<crate::limiter::Permit> {
    // Keep the command's delivery alive while it waits for a slot.
    let step = ctx.cfg.ack_wait / 3;
    loop {
        let until = (Instant::now() + step).min(deadline);
        if let Some(p) = ctx.limiter.acquire(account, class, until).await {
            return Some(p);
        }
        if Instant::now() >= deadline {
            return None;
        }
        let _ = msg.ack_with(AckKind::Progress).await;
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

/// Sleeps `for_` (keeping the delivery alive); false if the deadline comes first.
async fn wait(msg: &jetstream::Message, deadline: Instant, for_: Duration, ctx: &Ctx) -> bool {
    let until = Instant::now() + for_;
    if until >= deadline {
        return false;
    }
    let step = ctx.cfg.ack_wait / 3;
    let mut t = Instant::now();
    while t < until {
        let next = (t + step).min(until);
        tokio::time::sleep_until(next).await;
        let _ = msg.ack_with(AckKind::Progress).await;
        t = Instant::now();
    }
    true
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
            tracing::warn!(account = %account, %reason, "account needs re-authorisation; its commands wait");
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

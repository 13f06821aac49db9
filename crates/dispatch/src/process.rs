//! One command, from delivery to outcome, in stages: subject and payload checks, idempotency,
//! deadline, validation, account, windows, then the call loop (crate::call) and the outcome.
//!
//! Exactly one outcome per command: the outcome is published with `Nats-Msg-Id =
//! out:<account>:<command id>` and recorded in KV bucket `igrelay_idempotency` (with a digest of
//! the command's content) before the command is acknowledged. A command delivered again
//! (redelivery, or the same id submitted again with the same content) finds the record and never
//! causes a second Graph call once one succeeded; the same id with different content is a
//! conflict and is rejected. The one gap: a process killed while a call was in flight leaves an
//! "in flight" record and no answer; the next owner sends that call again (at-least-once for that
//! call alone) and says so in the outcome's attempt count.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use igrelay_bus::OutgoingMessage;
use igrelay_bus::subjects::{self, OutcomeKind};
use igrelay_core::AccountId;
use igrelay_core::time::{now, now_ms, timestamp_to_ms};
use igrelay_core::v1::{
    self, AccountStatus, CommandOutcome, RejectReason, SendCommand, UploadAttachmentCommand,
    command_outcome::Result as OutcomeResult,
};
use prost::Message as _;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::lease::Lease;
use crate::limiter::Class;
use crate::validate::{self, PlanTarget, reject};

/// A decoded command.
pub(crate) enum Command {
    Send(SendCommand),
    Upload(UploadAttachmentCommand),
}

impl Command {
    fn decode(kind: &str, payload: &[u8]) -> Result<Self, String> {
        match kind {
            "send" => {
                SendCommand::decode(payload).map(Self::Send).map_err(|e| format!("payload is not a send command: {e}"))
            }
            "upload" => UploadAttachmentCommand::decode(payload)
                .map(Self::Upload)
                .map_err(|e| format!("payload is not an upload command: {e}")),
            other => Err(format!("unknown command kind {other:?}: dispatch carries out send and upload")),
        }
    }

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

/// The lane a command is served in: commands of one lane go out one at a time, in order. Sends
/// have a lane per (account, recipient), uploads one per account; the account is the subject's.
pub fn lane_of(subject: &str, payload: &[u8]) -> String {
    let Some((kind, _, account)) = subjects::parse_stored_command(subject) else {
        return "_unparsable".into();
    };
    match kind {
        "send" => match SendCommand::decode(payload) {
            Ok(c) => {
                let to = match c.recipient.and_then(|r| r.target) {
                    Some(v1::recipient::Target::Igsid(u)) => u,
                    Some(v1::recipient::Target::CommentId(c)) => format!("c:{c}"),
                    None => String::new(),
                };
                format!("{account}/{to}")
            }
            Err(_) => format!("{account}/_undecodable"),
        },
        other => format!("{account}/_{other}"),
    }
}

/// The account a stored command belongs to: its subject's (the subject is the authority).
pub fn account_of(subject: &str) -> &str {
    subjects::parse_stored_command(subject).map(|(_, _, a)| a).unwrap_or_default()
}

fn idem_key(account: &str, command_id: &str) -> String {
    let h = Sha256::digest(format!("{account}\n{command_id}"));
    format!("cmd.{}", hex::encode(&h[..16]))
}

/// `Nats-Msg-Id` of an outcome: scoped by account, so two tenants using the same command id
/// never deduplicate each other's outcomes.
pub fn outcome_msg_id(account: &str, command_id: &str) -> String {
    format!("out:{account}:{command_id}")
}

/// Idempotency record tags: `I` + content digest (in flight), `d` + digest + outcome (done),
/// `D` + outcome (done, written before digests were kept; taken as matching).
const IN_FLIGHT: u8 = b'I';
const DONE_LEGACY: u8 = b'D';
const DONE: u8 = b'd';

/// The longest wait a deadline can ask for (`Instant` cannot hold far-future times).
const MAX_WAIT: Duration = Duration::from_secs(366 * 86_400);

/// Delay of a handed-back command's redelivery. Longer than a fetch's expiry, so a pull request
/// of the stopping owner that is still open on the server cannot take the command (it would go
/// nowhere until `ack_wait`, and come after newer commands of its recipient); commands handed
/// back together come again together, in stream order.
pub const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// What became of a delivered command.
pub enum Handled {
    /// Settled: outcome published and acknowledged, or dead-lettered.
    Done,
    /// Handed back (NAK): lease lost or shutting down.
    HandedBack,
    /// The account cannot call Meta now (needs re-authorisation, paused): the message is returned
    /// unsettled, to be parked until the account is active again.
    Parked(Box<jetstream::Message>),
}

/// Why processing stopped before a fresh outcome.
pub(crate) enum Early {
    /// Finished: publish and record this outcome.
    Outcome(Box<CommandOutcome>),
    /// A finished or in-flight command id was reused for different content: publish this
    /// Rejected outcome, keep the existing record.
    Conflict(Box<CommandOutcome>),
    /// Lease lost or shutting down: hand the command back.
    HandBack,
    /// The account is not active: park the command.
    Park,
}

/// One command being processed, with everything its stages need.
pub(crate) struct Job<'a> {
    pub ctx: &'a Ctx,
    pub msg: &'a jetstream::Message,
    pub account: &'a AccountId,
    pub id: &'a str,
    pub lease: &'a Lease,
    pub stop: &'a CancellationToken,
}

impl Job<'_> {
    pub fn acct(&self) -> &str {
        self.account.as_str()
    }

    pub fn outcome(&self, attempts: u32, result: OutcomeResult) -> CommandOutcome {
        CommandOutcome {
            command_id: self.id.to_owned(),
            account_id: self.acct().to_owned(),
            completed_time: Some(now()),
            attempts,
            result: Some(result),
        }
    }

    pub fn done(&self, attempts: u32, result: OutcomeResult) -> Early {
        Early::Outcome(Box::new(self.outcome(attempts, result)))
    }

    fn rejected(&self, r: v1::Rejected) -> Early {
        self.done(0, OutcomeResult::Rejected(r))
    }

    /// Err(HandBack) once shutting down or the partition's lease is no longer safe to use.
    pub fn still_owned(&self) -> Result<(), Early> {
        if self.stop.is_cancelled() || !self.lease.valid() { Err(Early::HandBack) } else { Ok(()) }
    }
}

/// Handles one delivered command completely, including its acknowledgement (unless parked).
pub async fn handle(ctx: &Ctx, msg: jetstream::Message, lease: &Lease, stop: &CancellationToken) -> Handled {
    let Some((kind, _, subject_account)) = subjects::parse_stored_command(&msg.subject) else {
        let reason = format!("subject {} is not ig.v1.cmd.<kind>.<partition>.<account>", msg.subject);
        dead_letter(ctx, &msg, &reason).await;
        return Handled::Done;
    };
    let account = match AccountId::parse(subject_account) {
        Ok(a) => a,
        Err(e) => {
            dead_letter(ctx, &msg, &format!("account {subject_account:?} in subject {}: {e}", msg.subject)).await;
            return Handled::Done;
        }
    };
    let cmd = match Command::decode(kind, &msg.payload) {
        Ok(c) => c,
        Err(reason) => {
            dead_letter(ctx, &msg, &reason).await;
            return Handled::Done;
        }
    };
    // The subject is the authority: a payload naming another account is never carried out.
    if cmd.account() != account.as_str() {
        reject_foreign(ctx, &msg, &account, &cmd).await;
        return Handled::Done;
    }
    // A command that went through the park keeps the time it was first stored.
    let published_ms = crate::park::stored_ms(&msg)
        .or_else(|| msg.info().ok().map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64));
    let job = Job { ctx, msg: &msg, account: &account, id: cmd.id(), lease, stop };
    let result = match job.process(&cmd, published_ms).await {
        Ok(o) => Some((o, true)),
        Err(Early::Outcome(o)) => Some((*o, true)),
        Err(Early::Conflict(o)) => Some((*o, false)),
        Err(Early::HandBack) => None,
        Err(Early::Park) => return Handled::Parked(Box::new(msg)),
    };
    match result {
        Some((outcome, record)) => {
            finish(ctx, &msg, &account, outcome, record, &cmd.content_hash()).await;
            Handled::Done
        }
        None => {
            let _ = msg.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await;
            Handled::HandedBack
        }
    }
}

/// A payload whose account differs from its subject's: a Rejected outcome (on the subject's
/// account) and a dead letter, so the mistake is visible to the caller and to operators.
async fn reject_foreign(ctx: &Ctx, msg: &jetstream::Message, account: &AccountId, cmd: &Command) {
    let reason = format!(
        "payload account_id {:?} differs from the subject's account {account} ({}): the subject decides whose command it is",
        cmd.account(),
        msg.subject
    );
    let outcome = CommandOutcome {
        command_id: cmd.id().to_owned(),
        account_id: account.to_string(),
        completed_time: Some(now()),
        attempts: 0,
        result: Some(OutcomeResult::Rejected(reject(RejectReason::Invalid, "account_id", reason.clone()))),
    };
    let msg_id = format!("{}:foreign:{}", outcome_msg_id(account.as_str(), cmd.id()), hex_digest(cmd));
    if publish_outcome(ctx, msg, account, &outcome, msg_id).await {
        dead_letter(ctx, msg, &reason).await;
    } else {
        let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
    }
}

fn hex_digest(cmd: &Command) -> String {
    hex::encode(&cmd.content_hash()[..8])
}

async fn dead_letter(ctx: &Ctx, msg: &jetstream::Message, reason: &str) {
    ctx.metrics.outcome("dead_letter");
    let subject = subjects::dead_letter(igrelay_bus::StreamDef::Commands.name(), "dispatch");
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    igrelay_bus::consume::dead_letter(&ctx.js, &subject, msg, reason, delivered).await;
}

fn outcome_kind(outcome: &CommandOutcome) -> OutcomeKind {
    match &outcome.result {
        Some(OutcomeResult::Sent(_)) => OutcomeKind::Sent,
        Some(OutcomeResult::Rejected(_)) => OutcomeKind::Rejected,
        Some(OutcomeResult::Failed(_)) => OutcomeKind::Failed,
        _ => OutcomeKind::Expired,
    }
}

/// Publishes an outcome; false if it was not stored.
async fn publish_outcome(
    ctx: &Ctx,
    msg: &jetstream::Message,
    account: &AccountId,
    outcome: &CommandOutcome,
    msg_id: String,
) -> bool {
    let kind = outcome_kind(outcome);
    ctx.metrics.outcome(kind.token());
    let out = OutgoingMessage::proto(subjects::outcome(account, kind), msg_id, outcome).with_kind(kind.token());
    let cx = msg.headers.as_ref().and_then(igrelay_bus::trace::extract).unwrap_or_else(igrelay_bus::trace::current);
    match ctx.publisher.publish(out, &cx, Duration::from_secs(5)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, command = %outcome.command_id, "outcome not stored; command will be redelivered");
            false
        }
    }
}

/// Publishes the outcome, records it (unless it is a conflict, which must not replace the
/// record of the command that owns the id), acknowledges the command.
async fn finish(
    ctx: &Ctx,
    msg: &jetstream::Message,
    account: &AccountId,
    outcome: CommandOutcome,
    record: bool,
    hash: &[u8; 32],
) {
    let mut msg_id = outcome_msg_id(account.as_str(), &outcome.command_id);
    if !record {
        // A conflict has its own id, or the stream would drop it as a duplicate of the outcome
        // of the command that first used the id.
        msg_id = format!("{msg_id}:conflict:{}", hex::encode(&hash[..8]));
    }
    if !publish_outcome(ctx, msg, account, &outcome, msg_id).await {
        let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        return;
    }
    if record {
        let mut value = vec![DONE];
        value.extend_from_slice(hash);
        value.extend_from_slice(&outcome.encode_to_vec());
        if let Err(e) = ctx.idem.put(idem_key(account.as_str(), &outcome.command_id), Bytes::from(value)).await {
            tracing::warn!(error = %e, "idempotency record not written; the outcome is deduplicated on redelivery");
        }
    }
    // A parked command read (not consumed) to expire it has nothing to acknowledge: the park
    // deletes it once its outcome is recorded.
    if msg.reply.is_none() {
        return;
    }
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(error = %e, "ack not confirmed; a redelivery finds the outcome record");
    }
}

/// What a validated command calls.
pub(crate) enum Call {
    Send(Box<validate::Plan>),
    Upload(igrelay_graph::messaging::AttachmentKind, String),
}

/// The instant `deadline_ms` is reached, for waits: saturating, far futures capped.
fn instant_at(deadline_ms: i64, now_ms: i64) -> Instant {
    let left = u64::try_from(deadline_ms.saturating_sub(now_ms)).unwrap_or(0);
    Instant::now() + Duration::from_millis(left).min(MAX_WAIT)
}

/// The command's deadline in ms since the epoch: its own, or accepted time + the default.
/// Caller-supplied times may be anything: all arithmetic saturates.
fn deadline_ms(cfg: &crate::DispatchConfig, cmd: &Command, published_ms: Option<i64>, now_ms: i64) -> i64 {
    let accepted_ms = cmd.accepted().map(timestamp_to_ms).or(published_ms).unwrap_or(now_ms);
    let default = i64::try_from(cfg.default_deadline.as_millis()).unwrap_or(i64::MAX);
    cmd.deadline().map(timestamp_to_ms).unwrap_or_else(|| accepted_ms.saturating_add(default))
}

/// Whether a (parked) command's deadline has passed; an undecodable one counts as passed, so it
/// is taken up and dead-lettered.
pub fn deadline_passed(cfg: &crate::DispatchConfig, msg: &jetstream::Message) -> bool {
    deadline_of(cfg, msg).is_none_or(|d| d <= now_ms())
}

/// A stored command's deadline (ms since the epoch); None if it cannot be decoded.
pub fn deadline_of(cfg: &crate::DispatchConfig, msg: &jetstream::Message) -> Option<i64> {
    let (kind, _, _) = subjects::parse_stored_command(&msg.subject)?;
    let cmd = Command::decode(kind, &msg.payload).ok()?;
    // A command that went through the park keeps the time it was first stored.
    let published_ms = crate::park::stored_ms(msg)
        .or_else(|| msg.info().ok().map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64));
    let now = now_ms();
    Some(deadline_ms(cfg, &cmd, published_ms, now))
}

/// Whether the command has a recorded outcome (the idempotency record says done).
pub async fn recorded(ctx: &Ctx, msg: &jetstream::Message) -> bool {
    let Some((kind, _, account)) = subjects::parse_stored_command(&msg.subject) else { return false };
    let Ok(cmd) = Command::decode(kind, &msg.payload) else { return false };
    match ctx.idem.entry(idem_key(account, cmd.id())).await {
        Ok(Some(e)) => {
            e.operation == async_nats::jetstream::kv::Operation::Put
                && matches!(e.value.first(), Some(&DONE) | Some(&DONE_LEGACY))
        }
        _ => false,
    }
}

impl Job<'_> {
    /// Carries the command out; every early end is an `Err`.
    async fn process(&self, cmd: &Command, published_ms: Option<i64>) -> Result<CommandOutcome, Early> {
        if self.id.is_empty() {
            return Err(self.rejected(reject(RejectReason::Invalid, "command_id", "every command needs an id")));
        }
        let hash = cmd.content_hash();
        let attempts = self.idempotency(&hash).await?;
        let now_ms = now_ms();
        let deadline_ms = deadline_ms(&self.ctx.cfg, cmd, published_ms, now_ms);
        if deadline_ms <= now_ms {
            let last_error = "the deadline passed before the command was taken up".into();
            return Err(self.done(attempts, OutcomeResult::Expired(v1::Expired { last_error })));
        }
        let deadline = instant_at(deadline_ms, now_ms);
        let call = self.plan(cmd)?;
        self.account_ready().await?;
        let class = self.windows(&call, now_ms).await?;
        self.mark_in_flight(&hash).await?;
        self.call_until_done(&call, class, deadline, attempts).await
    }

    /// Idempotency: a finished command is never carried out again; an id reused for different
    /// content is a conflict. Returns the calls already made (1 if a previous owner died with
    /// the call in flight).
    async fn idempotency(&self, hash: &[u8; 32]) -> Result<u32, Early> {
        let entry = match self.ctx.idem.entry(idem_key(self.acct(), self.id)).await {
            Ok(Some(e)) if e.operation == async_nats::jetstream::kv::Operation::Put && !e.value.is_empty() => e,
            Ok(_) => return Ok(0),
            Err(e) => {
                tracing::warn!(error = %e, "idempotency store unavailable; handing the command back");
                return Err(Early::HandBack);
            }
        };
        let v = &entry.value;
        let (stored_hash, previous) = match v[0] {
            DONE_LEGACY => (None, v.get(1..)),
            DONE => (v.get(1..33), v.get(33..)),
            IN_FLIGHT => (v.get(1..33), None),
            _ => return Ok(0),
        };
        if stored_hash.is_some_and(|h| h != hash) {
            tracing::warn!(account = self.acct(), command = self.id, "command id reused for different content");
            let detail = format!(
                "conflict: command id {:?} was already used by account {} for a different command (its content differs); resubmit the same content to get the first outcome, or use a new id",
                self.id,
                self.acct()
            );
            let r = reject(RejectReason::DuplicateIdConflict, "command_id", detail);
            return Err(Early::Conflict(Box::new(self.outcome(0, OutcomeResult::Rejected(r)))));
        }
        match previous.map(CommandOutcome::decode) {
            Some(Ok(previous)) => {
                self.ctx.metrics.outcome("duplicate");
                Err(Early::Outcome(Box::new(previous)))
            }
            // In flight: a previous owner died with the call out; its result is unknown.
            None if v[0] == IN_FLIGHT => Ok(1),
            _ => Ok(0),
        }
    }

    /// Validates the command and plans its call.
    fn plan(&self, cmd: &Command) -> Result<Call, Early> {
        match cmd {
            Command::Send(c) => validate::plan(c).map(|p| Call::Send(Box::new(p))).map_err(|r| self.rejected(r)),
            Command::Upload(u) => {
                if !(u.url.starts_with("https://") || u.url.starts_with("http://")) {
                    return Err(self.rejected(reject(RejectReason::Invalid, "url", "must be an http(s) URL")));
                }
                use igrelay_graph::messaging::AttachmentKind as K;
                let kind = match v1::MediaKind::try_from(u.kind) {
                    Ok(v1::MediaKind::Image) => K::Image,
                    Ok(v1::MediaKind::Audio) => K::Audio,
                    Ok(v1::MediaKind::Video) => K::Video,
                    Ok(v1::MediaKind::File) => K::File,
                    _ => {
                        let detail = "must be MEDIA_KIND_IMAGE, _AUDIO, _VIDEO or _FILE";
                        return Err(self.rejected(reject(RejectReason::Invalid, "kind", detail)));
                    }
                };
                Ok(Call::Upload(kind, u.url.clone()))
            }
        }
    }

    /// The account must exist; one that is not active parks the command (before any record).
    async fn account_ready(&self) -> Result<(), Early> {
        match self.ctx.accounts.get(self.acct()).await {
            Ok(Some(a)) if a.status == AccountStatus::Active as i32 => Ok(()),
            Ok(Some(_)) => Err(Early::Park),
            Ok(None) => Err(self.rejected(reject(
                RejectReason::UnknownAccount,
                "account_id",
                format!("account {} is not registered with igrelay", self.acct()),
            ))),
            Err(e) => {
                tracing::warn!(error = %e, "account store unavailable; handing the command back");
                Err(Early::HandBack)
            }
        }
    }

    /// Windows and private-reply rules, learned from ingested events. Returns the rate-limit
    /// class the call counts against.
    async fn windows(&self, call: &Call, now_ms: i64) -> Result<Class, Early> {
        let Call::Send(plan) = call else { return Ok(Class::Send) };
        match &plan.target {
            PlanTarget::User(user) => self.user_window(plan, user, now_ms).await.map(|()| plan.class),
            PlanTarget::Comment(comment) => self.comment_rules(comment, now_ms).await,
        }
    }

    async fn user_window(&self, plan: &validate::Plan, user: &str, now_ms: i64) -> Result<(), Early> {
        let window = if plan.human_agent { self.ctx.cfg.human_agent_window } else { self.ctx.cfg.window };
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let detail = match self.last_user_message(user).await? {
            Some(last) if now_ms.saturating_sub(last) <= window_ms => return Ok(()),
            Some(last) => format!(
                "the user last wrote {} h ago; the window is {} h{}",
                now_ms.saturating_sub(last) / 3_600_000,
                window.as_secs() / 3600,
                if plan.human_agent {
                    " (HUMAN_AGENT)"
                } else {
                    "; a human agent may answer within 7 days with tag HUMAN_AGENT"
                }
            ),
            None => "the user has not written to this account (no message, postback or ig.me referral seen): Meta allows messages only in reply".into(),
        };
        Err(self.rejected(reject(RejectReason::WindowClosed, "recipient.igsid", detail)))
    }

    async fn comment_rules(&self, comment: &str, now_ms: i64) -> Result<Class, Early> {
        let windows = &self.ctx.windows;
        match windows.replied(self.acct(), comment).await {
            Ok(true) => {
                let detail = "a private reply was already sent for this comment (Meta allows one)";
                return Err(self.rejected(reject(
                    RejectReason::PrivateReplyNotAllowed,
                    "recipient.comment_id",
                    detail,
                )));
            }
            Ok(false) => {}
            Err(_) => return Err(Early::HandBack),
        }
        let mut class = Class::PrivateReply;
        if let Ok(Some((at, live))) = windows.comment(self.acct(), comment).await {
            let window = self.ctx.cfg.private_reply_window;
            if now_ms.saturating_sub(at) > i64::try_from(window.as_millis()).unwrap_or(i64::MAX) {
                let detail = format!("the comment is older than {} days", window.as_secs() / 86_400);
                return Err(self.rejected(reject(
                    RejectReason::PrivateReplyNotAllowed,
                    "recipient.comment_id",
                    detail,
                )));
            }
            if live {
                class = Class::LivePrivateReply;
            }
        }
        Ok(class)
    }

    /// Records "in flight" with the content digest before the first call.
    async fn mark_in_flight(&self, hash: &[u8; 32]) -> Result<(), Early> {
        let mut record = vec![IN_FLIGHT];
        record.extend_from_slice(hash);
        match self.ctx.idem.put(idem_key(self.acct(), self.id), Bytes::from(record)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Early::HandBack),
        }
    }
}

impl Job<'_> {
    async fn last_user_message(&self, user: &str) -> Result<Option<i64>, Early> {
        // The events consumer may trail a reply sent right after the user's message: look again
        // for a little while before deciding there is no window.
        let give_up = Instant::now() + self.ctx.cfg.window_grace;
        loop {
            if let Ok(Some(t)) = self.ctx.windows.last_user_message(self.acct(), user).await {
                return Ok(Some(t));
            }
            if Instant::now() >= give_up {
                return Ok(None);
            }
            self.still_owned()?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = self.stop.cancelled() => return Err(Early::HandBack),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn uploads_have_a_lane_per_account_and_the_subject_names_it() {
        let upload = UploadAttachmentCommand { account_id: "1".into(), ..Default::default() }.encode_to_vec();
        assert_eq!(lane_of("ig.v1.cmd.upload.0.1", &upload), "1/_upload");
        assert_eq!(lane_of("ig.v1.cmd.upload.0.2", &upload), "2/_upload", "the subject's account, not the payload's");
        let send = SendCommand {
            account_id: "1".into(),
            recipient: Some(v1::Recipient { target: Some(v1::recipient::Target::Igsid("55".into())) }),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(lane_of("ig.v1.cmd.send.0.1", &send), "1/55");
        assert_eq!(account_of("ig.v1.cmd.send.3.17841400000000001"), "17841400000000001");
    }

    #[test]
    fn extreme_caller_times_saturate() {
        let cfg = crate::DispatchConfig::default();
        let now = now_ms();
        let send =
            |deadline, accepted_time| Command::Send(SendCommand { deadline, accepted_time, ..Default::default() });
        assert_eq!(deadline_ms(&cfg, &send(at(i64::MAX), None), None, now), i64::MAX);
        assert_eq!(deadline_ms(&cfg, &send(at(i64::MIN), None), None, now), i64::MIN);
        assert_eq!(deadline_ms(&cfg, &send(None, at(i64::MAX)), None, now), i64::MAX);
        assert!(deadline_ms(&cfg, &send(None, at(i64::MIN)), None, now) < now);
        assert!(deadline_ms(&cfg, &send(None, None), Some(i64::MAX), now) == i64::MAX);
        // Waits: far futures capped, far pasts are now.
        let start = Instant::now();
        assert!(instant_at(i64::MAX, now) <= Instant::now() + MAX_WAIT);
        assert!(instant_at(i64::MAX, i64::MIN) > start);
        assert!(instant_at(i64::MIN, i64::MAX) <= Instant::now());
    }
}

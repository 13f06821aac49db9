//! Every subject igrelay uses. Account before type, so one account's traffic can be partitioned
//! and `*`/`>` wildcards serve analytics:
//!
//! | subject | payload | stream |
//! |---|---|---|
//! | `ig.v1.evt.<account>.<kind>` | `igrelay.v1.Event` | IGRELAY_EVENTS |
//! | `ig.v1.cmd.send.<account>` | `igrelay.v1.SendCommand` | IGRELAY_COMMANDS |
//! | `ig.v1.cmd.upload.<account>` | `igrelay.v1.UploadAttachmentCommand` | IGRELAY_COMMANDS |
//! | `ig.v1.out.<account>.<outcome>` | `igrelay.v1.CommandOutcome` | IGRELAY_OUTCOMES |
//! | `ig.v1.dlq.<stream>.<consumer>` | the original message, reason in headers | IGRELAY_DLQ |
//! | `ig.v1.audit.<account>.<action>` | `igrelay.v1.AuditRecord` | IGRELAY_AUDIT |
//! | `ig.v1.enr.<account>.<kind>` | `igrelay.v1.EnrichedEvent` | IGRELAY_ENRICHED |
//! | `ig.v1.park.<partition>.<account>` | a parked command, unchanged (dispatch internal) | IGRELAY_PARKED |
//! | `ig.v1.req.profile` | request/reply `igrelay.v1.GetUserProfileRequest` → `…Response` | none (core NATS) |
//! | `ig.v1.req.forget_user` | request/reply `igrelay.v1.ForgetUserRequest` → `…Response` | none (core NATS) |
//!
//! docs/subjects.md is the user-facing copy of this table; a test keeps the two in step.

use igrelay_core::AccountId;
use igrelay_core::v1::{Event, event::Payload};

pub const EVENTS_ALL: &str = "ig.v1.evt.>";
pub const COMMANDS_ALL: &str = "ig.v1.cmd.>";
/// The command kinds dispatch carries out (`ig.v1.cmd.<kind>.<account>`). The commands stream
/// stores only these subjects, so a command of any other shape is refused at publish time
/// instead of sitting in the stream unprocessed.
pub const COMMAND_KINDS: [&str; 2] = ["send", "upload"];
pub const OUTCOMES_ALL: &str = "ig.v1.out.>";
pub const DLQ_ALL: &str = "ig.v1.dlq.>";
pub const AUDIT_ALL: &str = "ig.v1.audit.>";
pub const ENRICHED_ALL: &str = "ig.v1.enr.>";
/// Commands of accounts that cannot call Meta now, moved out of the commands stream by dispatch.
pub const PARKED_ALL: &str = "ig.v1.park.>";
/// Request/reply (core NATS, served by enrich): a user's profile on demand.
pub const PROFILE_REQUEST: &str = "ig.v1.req.profile";
/// Request/reply (core NATS, served by enrich): forget a user (data deletion).
pub const FORGET_USER_REQUEST: &str = "ig.v1.req.forget_user";

/// The last token of an event subject: what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Message,
    MessageEcho,
    Reaction,
    Postback,
    Seen,
    MessageEdit,
    Referral,
    Optin,
    Handover,
    Comment,
    LiveComment,
    Mention,
    StoryInsights,
    Unknown,
    AccountStatus,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        Self::Message,
        Self::MessageEcho,
        Self::Reaction,
        Self::Postback,
        Self::Seen,
        Self::MessageEdit,
        Self::Referral,
        Self::Optin,
        Self::Handover,
        Self::Comment,
        Self::LiveComment,
        Self::Mention,
        Self::StoryInsights,
        Self::Unknown,
        Self::AccountStatus,
    ];

    pub fn token(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::MessageEcho => "message_echo",
            Self::Reaction => "reaction",
            Self::Postback => "postback",
            Self::Seen => "seen",
            Self::MessageEdit => "message_edit",
            Self::Referral => "referral",
            Self::Optin => "optin",
            Self::Handover => "handover",
            Self::Comment => "comment",
            Self::LiveComment => "live_comment",
            Self::Mention => "mention",
            Self::StoryInsights => "story_insights",
            Self::Unknown => "unknown",
            Self::AccountStatus => "account_status",
        }
    }

    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.token() == token)
    }

    /// The kind of an event, from its payload (an event without payload counts as unknown).
    pub fn of(event: &Event) -> Self {
        match &event.payload {
            Some(Payload::Message(m)) if m.is_echo => Self::MessageEcho,
            Some(Payload::Message(_)) => Self::Message,
            Some(Payload::Reaction(_)) => Self::Reaction,
            Some(Payload::Postback(_)) => Self::Postback,
            Some(Payload::Seen(_)) => Self::Seen,
            Some(Payload::MessageEdit(_)) => Self::MessageEdit,
            Some(Payload::Referral(_)) => Self::Referral,
            Some(Payload::Optin(_)) => Self::Optin,
            Some(Payload::Handover(_)) => Self::Handover,
            Some(Payload::Comment(c)) if c.live => Self::LiveComment,
            Some(Payload::Comment(_)) => Self::Comment,
            Some(Payload::Mention(_)) => Self::Mention,
            Some(Payload::StoryInsights(_)) => Self::StoryInsights,
            Some(Payload::AccountStatus(_)) => Self::AccountStatus,
            Some(Payload::Unknown(_)) | None => Self::Unknown,
        }
    }
}

/// `ig.v1.evt.<account>.<kind>`
pub fn event(account: &AccountId, kind: EventKind) -> String {
    format!("ig.v1.evt.{account}.{}", kind.token())
}

/// `ig.v1.evt.<account>.>`: everything that happened to one account.
pub fn events_of_account(account: &AccountId) -> String {
    format!("ig.v1.evt.{account}.>")
}

/// `ig.v1.evt.*.<kind>`: one kind of event, every account.
pub fn events_of_kind(kind: EventKind) -> String {
    format!("ig.v1.evt.*.{}", kind.token())
}

/// Splits an event subject into account and kind.
pub fn parse_event(subject: &str) -> Option<(&str, EventKind)> {
    let rest = subject.strip_prefix("ig.v1.evt.")?;
    let (account, kind) = rest.split_once('.')?;
    Some((account, EventKind::from_token(kind)?))
}

/// `ig.v1.cmd.send.<account>`
pub fn send_command(account: &AccountId) -> String {
    format!("ig.v1.cmd.send.{account}")
}

/// The filter of one partition of the commands stream, every command kind:
/// `ig.v1.cmd.*.<partition>.*` (commands are stored with their partition, see topology).
pub fn command_partition_filter(partition: u32) -> String {
    format!("ig.v1.cmd.*.{partition}.*")
}

/// Splits a stored command subject `ig.v1.cmd.<kind>.<partition>.<account>`.
pub fn parse_stored_command(subject: &str) -> Option<(&str, u32, &str)> {
    let rest = subject.strip_prefix("ig.v1.cmd.")?;
    let mut parts = rest.splitn(3, '.');
    let kind = parts.next()?;
    let partition = parts.next()?.parse().ok()?;
    let account = parts.next()?;
    Some((kind, partition, account))
}

/// The subjects the commands stream accepts: `ig.v1.cmd.<kind>.<account>` for each kind in
/// [`COMMAND_KINDS`].
pub fn command_stream_subjects() -> Vec<String> {
    COMMAND_KINDS.iter().map(|k| format!("ig.v1.cmd.{k}.*")).collect()
}

/// `ig.v1.cmd.upload.<account>`
pub fn upload_command(account: &AccountId) -> String {
    format!("ig.v1.cmd.upload.{account}")
}

/// The outcome of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Sent,
    Rejected,
    Failed,
    Expired,
}

impl OutcomeKind {
    pub fn token(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

/// `ig.v1.out.<account>.<outcome>`
pub fn outcome(account: &AccountId, kind: OutcomeKind) -> String {
    format!("ig.v1.out.{account}.{}", kind.token())
}

/// `ig.v1.out.<account>.*`: every outcome of one account's commands.
pub fn outcomes_of_account(account: &AccountId) -> String {
    format!("ig.v1.out.{account}.*")
}

/// What an audit record is about (the last token of `ig.v1.audit.<account>.<action>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A SendCommand was accepted.
    Send,
    /// An UploadAttachmentCommand was accepted.
    Upload,
    /// An account was registered or its token replaced.
    AccountRegister,
    /// An account was removed.
    AccountRemove,
}

impl AuditAction {
    pub const ALL: [AuditAction; 4] = [Self::Send, Self::Upload, Self::AccountRegister, Self::AccountRemove];

    pub fn token(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Upload => "upload",
            Self::AccountRegister => "account_register",
            Self::AccountRemove => "account_remove",
        }
    }
}

/// `ig.v1.audit.<account>.<action>`: who asked igrelay to do what.
pub fn audit(account: &AccountId, action: AuditAction) -> String {
    format!("ig.v1.audit.{account}.{}", action.token())
}

/// `ig.v1.enr.<account>.<kind>`: an inbound user event with the sender's profile (enrich).
pub fn enriched(account: &AccountId, kind: EventKind) -> String {
    format!("ig.v1.enr.{account}.{}", kind.token())
}

/// Splits an enriched-event subject into account and kind.
pub fn parse_enriched(subject: &str) -> Option<(&str, EventKind)> {
    let rest = subject.strip_prefix("ig.v1.enr.")?;
    let (account, kind) = rest.split_once('.')?;
    Some((account, EventKind::from_token(kind)?))
}

/// `ig.v1.park.<partition>.<account>`: where dispatch parks the commands of an account that cannot
/// call Meta now (partition = the commands partition the account is stored in).
pub fn parked(partition: u32, account: &str) -> String {
    format!("ig.v1.park.{partition}.{account}")
}

/// Every parked subject of one commands partition.
pub fn parked_partition_filter(partition: u32) -> String {
    format!("ig.v1.park.{partition}.*")
}

/// The account of a parked subject.
pub fn parse_parked(subject: &str) -> Option<(u32, &str)> {
    let rest = subject.strip_prefix("ig.v1.park.")?;
    let (partition, account) = rest.split_once('.')?;
    if account.is_empty() || account.contains('.') {
        return None;
    }
    Some((partition.parse().ok()?, account))
}

/// `ig.v1.dlq.<stream>.<consumer>`: where a consumer's poison messages go.
pub fn dead_letter(stream: &str, consumer: &str) -> String {
    format!("ig.v1.dlq.{stream}.{consumer}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subjects_round_trip() {
        let a = AccountId::parse("17841400000000001").unwrap();
        for k in EventKind::ALL {
            let s = event(&a, k);
            assert_eq!(parse_event(&s), Some(("17841400000000001", k)));
        }
        assert_eq!(events_of_account(&a), "ig.v1.evt.17841400000000001.>");
        assert_eq!(events_of_kind(EventKind::Comment), "ig.v1.evt.*.comment");
        assert_eq!(outcome(&a, OutcomeKind::Sent), "ig.v1.out.17841400000000001.sent");
        assert_eq!(send_command(&a), "ig.v1.cmd.send.17841400000000001");
        assert_eq!(outcomes_of_account(&a), "ig.v1.out.17841400000000001.*");
        let e = enriched(&a, EventKind::Postback);
        assert_eq!(e, "ig.v1.enr.17841400000000001.postback");
        assert_eq!(parse_enriched(&e), Some(("17841400000000001", EventKind::Postback)));
        assert_eq!(audit(&a, AuditAction::Send), "ig.v1.audit.17841400000000001.send");
        let p = parked(3, "17841400000000001");
        assert_eq!(p, "ig.v1.park.3.17841400000000001");
        assert_eq!(parse_parked(&p), Some((3, "17841400000000001")));
        assert_eq!(parse_parked("ig.v1.park.x.1"), None);
        assert_eq!(parse_parked("ig.v1.park.3.1.2"), None);
    }

    #[test]
    fn docs_list_every_subject_and_kind() {
        let doc = include_str!("../../../docs/subjects.md");
        for k in EventKind::ALL {
            assert!(
                doc.contains(&format!("`{}`", k.token())),
                "docs/subjects.md does not list event kind {}",
                k.token()
            );
        }
        for s in [
            "ig.v1.evt.<account>.<kind>",
            "ig.v1.cmd.send.<account>",
            "ig.v1.cmd.upload.<account>",
            "ig.v1.out.<account>.<outcome>",
            "ig.v1.dlq.<stream>.<consumer>",
            "ig.v1.audit.<account>.<action>",
            "ig.v1.enr.<account>.<kind>",
            "ig.v1.park.<partition>.<account>",
            PROFILE_REQUEST,
            FORGET_USER_REQUEST,
        ] {
            assert!(doc.contains(s), "docs/subjects.md does not list {s}");
        }
    }
}

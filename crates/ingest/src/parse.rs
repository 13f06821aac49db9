//! Turns one webhook body into typed events. Never fails and never panics: whatever cannot be
//! understood becomes an `Unknown` event that keeps the raw JSON, because Meta cannot send a
//! webhook twice on request and disables webhooks that keep failing.
//!
//! Shapes handled (platform facts §1): `entry[].messaging[]`, `entry[].standby[]`,
//! `entry[].changes[{field,value}]` (Facebook Login) and `entry.field`/`entry.value`
//! (Instagram Login), in any combination within one entry. Timestamps may be numbers or numeric
//! strings, in seconds or milliseconds, or text in the Graph API's form
//! (`2021-09-08T06:34:04+0000`). A time that cannot be read leaves `event_time` unset and is named
//! in `meta.time_problem`.
//!
//! Event ids (docs/subjects.md) name the account and the happening: the same mid seen by two
//! managed accounts, a message and its deletion, each edit, are distinct events; only a
//! re-delivery of the same happening repeats an id.

use bumpalo::Bump;
use igrelay_bus::subjects::EventKind;
use igrelay_core::AccountId;
use igrelay_core::time::{normalise_to_ms, parse_meta_time, timestamp_from_ms};
use igrelay_core::v1::{self, Channel, EventMeta, event::Payload};

use crate::json::{Json, NULL};
use prost::Message as _;
use sha2::{Digest, Sha256};

/// What is known about a delivery before its body is read.
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    /// When the POST arrived, ms since the epoch.
    pub received_ms: i64,
    /// Hex SHA-256 of the raw body.
    pub delivery_id: String,
    /// Largest encoded event that can be stored (NATS max_payload less room for headers). A
    /// larger one is replaced by an `Unknown` event with reason `oversized: ...` carrying the
    /// start of its JSON.
    pub max_event_bytes: usize,
    /// Whether events need their size checked: an event is at most about its item's JSON plus
    /// the envelope, so only bodies near the limit can yield one that is too large.
    check_sizes: bool,
}

impl DeliveryContext {
    pub fn new(body: &[u8], received_ms: i64) -> Self {
        Self::with_max_event_bytes(body, received_ms, usize::MAX)
    }

    pub fn with_max_event_bytes(body: &[u8], received_ms: i64, max_event_bytes: usize) -> Self {
        Self {
            received_ms,
            delivery_id: igrelay_core::ids::hex_lower(&Sha256::digest(body)),
            max_event_bytes,
            // Re-serialised numbers can grow (`1e5` becomes `100000.0`): half the limit is a
            // safe threshold below which no event can exceed it.
            check_sizes: body.len() > max_event_bytes / 2,
        }
    }
}

/// One event ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent {
    pub account: AccountId,
    pub kind: EventKind,
    pub event: v1::Event,
    /// The item was too large to store and this is its `oversized` stand-in.
    pub oversized: bool,
}

impl ParsedEvent {
    pub fn event_id(&self) -> &str {
        self.event.meta.as_ref().map(|m| m.event_id.as_str()).unwrap_or_default()
    }
}

/// Parses a whole delivery. Always returns at least one event for a non-empty body.
pub fn parse_delivery(body: &[u8], ctx: &DeliveryContext) -> Vec<ParsedEvent> {
    // The tree lives in one arena: about twice the body covers a webhook's tree, and it grows
    // when a body needs more.
    let arena = Bump::with_capacity(body.len() * 2);
    let root = match Json::parse(body, &arena) {
        Ok(v) => v,
        Err(e) => return vec![raw_unknown(body, ctx, format!("invalid JSON: {e}"))],
    };
    let object = root.get("object").map(text).unwrap_or_default();
    let Some(entries) = root.get("entry").and_then(Json::as_array) else {
        return vec![raw_unknown(body, ctx, "the body has no `entry` array".into())];
    };
    if entries.is_empty() {
        return vec![raw_unknown(body, ctx, "the `entry` array is empty".into())];
    }
    let mut out = Vec::new();
    for entry in entries {
        parse_entry(entry, &object, ctx, &mut out);
    }
    if out.is_empty() {
        // e.g. entries whose messaging arrays are empty: keep the signed body rather than store nothing.
        out.push(raw_unknown(body, ctx, "the delivery contains no items".into()));
    }
    out
}

/// A time as Meta gave it.
#[derive(Debug, Clone, PartialEq)]
enum MetaTime {
    Absent,
    At(i64),
    /// Present but not a time; says which key and quotes the value.
    Unreadable(String),
}

/// Reads the time at `key` of `v`: a number or numeric string in seconds or milliseconds, or the
/// Graph API's text form. `null` counts as absent.
fn read_time(v: &Json<'_>, key: &str) -> MetaTime {
    let unreadable = |shown: String| {
        // Quote at most 64 characters of whatever was sent.
        let shown: String = shown.chars().take(64).collect();
        MetaTime::Unreadable(format!("{key} {shown} is not a time"))
    };
    match v.get(key) {
        None | Some(Json::Null) => MetaTime::Absent,
        Some(Json::Number(n)) => match n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).filter(|t| *t > 0) {
            Some(t) => MetaTime::At(normalise_to_ms(t)),
            None => unreadable(n.to_string()),
        },
        Some(Json::Str(s)) => parse_meta_time(s).map_or_else(|| unreadable(format!("{s:?}")), MetaTime::At),
        Some(other) => unreadable(other.to_string()),
    }
}

/// Where an item sits; fills the envelope.
struct ItemContext<'a> {
    ctx: &'a DeliveryContext,
    object: &'a str,
    account: AccountId,
    /// entry.time.
    sent: MetaTime,
    channel: Channel,
}

impl ItemContext<'_> {
    /// The event with its envelope. Its time is the item's own when given, else entry.time, else
    /// the receipt time; a given time that cannot be read leaves it unset and names the problem.
    fn event(
        &self,
        event_id: String,
        field: &str,
        item_time: &MetaTime,
        kind: EventKind,
        payload: Payload,
    ) -> ParsedEvent {
        let mut problems: Vec<&str> = Vec::new();
        if let MetaTime::Unreadable(p) = &self.sent {
            problems.push(p);
        }
        let event_ms = match item_time {
            MetaTime::At(t) => Some(*t),
            MetaTime::Unreadable(p) => {
                problems.insert(0, p);
                None
            }
            MetaTime::Absent => match self.sent {
                MetaTime::At(t) => Some(t),
                MetaTime::Unreadable(_) => None,
                MetaTime::Absent => Some(self.ctx.received_ms),
            },
        };
        let sent_ms = match self.sent {
            MetaTime::At(t) => Some(t),
            _ => None,
        };
        let meta = EventMeta {
            event_id,
            account_id: self.account.to_string(),
            event_time: event_ms.map(timestamp_from_ms),
            received_time: Some(timestamp_from_ms(self.ctx.received_ms)),
            webhook_field: field.to_owned(),
            delivery_id: self.ctx.delivery_id.clone(),
            channel: self.channel as i32,
            sent_time: sent_ms.map(timestamp_from_ms),
            object: self.object.to_owned(),
            time_problem: problems.join("; "),
        };
        ParsedEvent {
            account: self.account.clone(),
            kind,
            event: v1::Event { meta: Some(meta), payload: Some(payload) },
            oversized: false,
        }
    }

    /// An item this parser does not understand, kept as JSON.
    fn unknown(&self, field: &str, item: &Json<'_>, reason: String) -> ParsedEvent {
        let raw = serde_json::to_vec(item).unwrap_or_default();
        let id = self.id("unknown", &hash_parts(&[self.account.as_str(), field, &String::from_utf8_lossy(&raw)]));
        let payload = Payload::Unknown(v1::Unknown { reason, raw_json: raw });
        self.event(id, field, &MetaTime::Absent, EventKind::Unknown, payload)
    }

    /// An event id: `[standby:]<prefix>:<account>:<rest>`. The account is part of every id, so
    /// one mid seen by two managed accounts (one messaging the other) is an event for each.
    fn id(&self, prefix: &str, rest: &str) -> String {
        let standby = if self.channel == Channel::Standby { "standby:" } else { "" };
        format!("{standby}{prefix}:{}:{rest}", self.account)
    }

    /// `event`, or its `oversized` stand-in when it is too large to store. `item` is its JSON.
    fn fit(&self, event: ParsedEvent, item: &Json<'_>) -> ParsedEvent {
        if !self.ctx.check_sizes {
            return event;
        }
        let size = event.event.encoded_len();
        if size <= self.ctx.max_event_bytes {
            return event;
        }
        oversized(event, size, serde_json::to_vec(item).unwrap_or_default(), self.ctx.max_event_bytes)
    }
}

/// Stands in for an event too large for one NATS message: an `Unknown` event with the same id and
/// envelope, reason `oversized: ...`, and as much of the item's JSON as fits (cut, so not valid
/// JSON). Nothing larger can be stored, and answering 503 would have Meta send it again forever.
fn oversized(event: ParsedEvent, size: usize, mut raw: Vec<u8>, max: usize) -> ParsedEvent {
    let meta = event.event.meta.unwrap_or_default();
    let total = raw.len();
    // Room left for the JSON after the envelope, the reason and protobuf's tags and lengths.
    let room = max.saturating_sub(meta.encoded_len() + 256 + 64);
    let mut cut = total.min(room);
    // End on a character boundary (a UTF-8 continuation byte is 0b10xxxxxx).
    while cut > 0 && cut < total && raw[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    raw.truncate(cut);
    let reason = format!(
        "oversized: the {} event is {size} bytes, more than the {max} bytes one NATS message can hold \
         (max_payload); raw_json holds the first {cut} of its {total} bytes of JSON",
        event.kind.token()
    );
    ParsedEvent {
        account: event.account,
        kind: EventKind::Unknown,
        event: v1::Event { meta: Some(meta), payload: Some(Payload::Unknown(v1::Unknown { reason, raw_json: raw })) },
        oversized: true,
    }
}

fn parse_entry(entry: &Json<'_>, object: &str, ctx: &DeliveryContext, out: &mut Vec<ParsedEvent>) {
    let account = entry.get("id").map(text).and_then(|s| AccountId::parse(s).ok()).unwrap_or_else(AccountId::unknown);
    let sent = read_time(entry, "time");
    let mut ic = ItemContext { ctx, object, account, sent, channel: Channel::Raw };
    if !entry.is_object() {
        out.push(ic.unknown("unknown", entry, "an entry is not a JSON object".into()));
        return;
    }
    let mut understood = false;
    for (key, channel) in [("messaging", Channel::Messaging), ("standby", Channel::Standby)] {
        if let Some(items) = entry.get(key) {
            understood = true;
            ic.channel = channel;
            match items.as_array() {
                Some(items) => out.extend(items.iter().map(|item| ic.fit(parse_messaging(&ic, item), item))),
                None => out.push(ic.unknown("unknown", items, format!("entry.{key} is not an array"))),
            }
        }
    }
    if let Some(changes) = entry.get("changes") {
        understood = true;
        ic.channel = Channel::Changes;
        match changes.as_array() {
            Some(changes) => {
                for change in changes {
                    match (change.get("field").and_then(Json::as_str), change.get("value")) {
                        (Some(field), Some(value)) => out.push(ic.fit(parse_change(&ic, field, value), change)),
                        _ => out.push(ic.unknown(
                            "unknown",
                            change,
                            "a change has no `field` string or no `value`".into(),
                        )),
                    }
                }
            }
            None => out.push(ic.unknown("unknown", changes, "entry.changes is not an array".into())),
        }
    }
    if let (Some(field), Some(value)) = (entry.get("field").and_then(Json::as_str), entry.get("value")) {
        understood = true;
        ic.channel = Channel::Field;
        out.push(ic.fit(parse_change(&ic, field, value), entry));
    }
    if !understood {
        ic.channel = Channel::Raw;
        out.push(ic.unknown(
            "unknown",
            entry,
            "the entry has none of messaging, standby, changes, or field/value".into(),
        ));
    }
}

/// Keys of a messaging item that name its event, with the webhook field they belong to.
const MESSAGING_KEYS: [(&str, &str); 10] = [
    ("message", "messages"),
    ("reaction", "message_reactions"),
    ("postback", "messaging_postbacks"),
    ("read", "messaging_seen"),
    ("message_edit", "message_edit"),
    ("referral", "messaging_referral"),
    ("optin", "messaging_optins"),
    ("pass_thread_control", "messaging_handover"),
    ("take_thread_control", "messaging_handover"),
    ("request_thread_control", "messaging_handover"),
];

fn parse_messaging(ic: &ItemContext<'_>, item: &Json<'_>) -> ParsedEvent {
    if !item.is_object() {
        return ic.unknown("unknown", item, "a messaging item is not a JSON object".into());
    }
    let Some((key, field, body)) =
        MESSAGING_KEYS.iter().find_map(|(k, f)| item.get(k).filter(|v| v.is_object()).map(|v| (k, f, v)))
    else {
        let keys: Vec<&str> = item.keys().collect();
        return ic.unknown(
            "unknown",
            item,
            format!("a messaging item with no known event (keys: {})", keys.join(", ")),
        );
    };
    let sender = item.get("sender").and_then(|s| s.get("id")).map(text).unwrap_or_default();
    let recipient = item.get("recipient").and_then(|s| s.get("id")).map(text).unwrap_or_default();
    let time = read_time(item, "timestamp");
    let ts = match time {
        MetaTime::At(t) => Some(t),
        _ => None,
    };
    let mid = body.get("mid").map(text).unwrap_or_default();
    let id_or_hash = |prefix: &str, natural: Option<&str>| -> String {
        match natural.filter(|n| !n.is_empty()) {
            Some(id) => ic.id(prefix, id),
            None => ic.id(prefix, &hash_parts(&[ic.account.as_str(), field, &item.to_string()])),
        }
    };
    // A composite natural id, only when the item has a mid.
    let with_mid = |rest: std::fmt::Arguments<'_>| (!mid.is_empty()).then(|| format!("{mid}:{rest}"));

    let (kind, id, payload) = match *key {
        "message" => {
            let m = message(sender, recipient, mid, body);
            // A deletion (unsend) carries the mid of the message it deletes: its own happening.
            let prefix = match (m.is_echo, m.is_deleted) {
                (false, false) => "msg",
                (false, true) => "msg_deleted",
                (true, false) => "echo",
                (true, true) => "echo_deleted",
            };
            let id = id_or_hash(prefix, Some(&m.mid));
            let kind = if m.is_echo { EventKind::MessageEcho } else { EventKind::Message };
            (kind, id, Payload::Message(m))
        }
        "reaction" => {
            let action = match body.get("action").and_then(Json::as_str) {
                Some("react") => v1::ReactionAction::React,
                Some("unreact") => v1::ReactionAction::Unreact,
                _ => v1::ReactionAction::Unspecified,
            };
            let ts_token = ts.map(|t| t.to_string()).unwrap_or_default();
            let natural = with_mid(format_args!("{}:{sender}:{ts_token}", str_at(body, "action")));
            let r = v1::Reaction {
                sender_id: sender,
                recipient_id: recipient,
                mid,
                action: action as i32,
                reaction: str_at(body, "reaction"),
                emoji: str_at(body, "emoji"),
            };
            (EventKind::Reaction, id_or_hash("reaction", natural.as_deref()), Payload::Reaction(r))
        }
        "postback" => {
            let p = v1::Postback {
                sender_id: sender,
                recipient_id: recipient,
                mid: mid.clone(),
                title: str_at(body, "title"),
                payload: str_at(body, "payload"),
                is_self: bool_at(item, "is_self") || bool_at(body, "is_self"),
                referral: body.get("referral").map(ad_referral),
            };
            (EventKind::Postback, id_or_hash("postback", Some(&mid)), Payload::Postback(p))
        }
        "read" => {
            let natural = with_mid(format_args!("{sender}"));
            let s = v1::Seen {
                sender_id: sender,
                recipient_id: recipient,
                mid,
                watermark: body.get("watermark").and_then(int).unwrap_or(0),
            };
            (EventKind::Seen, id_or_hash("seen", natural.as_deref()), Payload::Seen(s))
        }
        "message_edit" => {
            let num_edit = body.get("num_edit").and_then(int).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
            let natural = with_mid(format_args!("{num_edit}"));
            let e = v1::MessageEdit {
                sender_id: sender,
                recipient_id: recipient,
                mid,
                text: str_at(body, "text"),
                num_edit,
            };
            (EventKind::MessageEdit, id_or_hash("edit", natural.as_deref()), Payload::MessageEdit(e))
        }
        "referral" => {
            let r = v1::Referral { sender_id: sender, recipient_id: recipient, referral: Some(ad_referral(body)) };
            (EventKind::Referral, id_or_hash("referral", None), Payload::Referral(r))
        }
        "optin" => {
            let o = v1::Optin {
                sender_id: sender,
                recipient_id: recipient,
                r#type: str_at(body, "type"),
                payload: str_at(body, "payload"),
                notification_messages_token: str_at(body, "notification_messages_token"),
                notification_messages_frequency: str_at(body, "notification_messages_frequency"),
                notification_messages_timezone: str_at(body, "notification_messages_timezone"),
                token_expiry_timestamp: body.get("token_expiry_timestamp").and_then(int).unwrap_or(0),
                user_token_status: str_at(body, "user_token_status"),
                notification_messages_status: str_at(body, "notification_messages_status"),
                title: str_at(body, "title"),
            };
            (EventKind::Optin, id_or_hash("optin", None), Payload::Optin(o))
        }
        handover => {
            let kind = match handover {
                "pass_thread_control" => v1::HandoverKind::PassThreadControl,
                "take_thread_control" => v1::HandoverKind::TakeThreadControl,
                _ => v1::HandoverKind::RequestThreadControl,
            };
            let h = v1::Handover {
                sender_id: sender,
                recipient_id: recipient,
                kind: kind as i32,
                previous_owner_app_id: str_at(body, "previous_owner_app_id"),
                new_owner_app_id: str_at(body, "new_owner_app_id"),
                requested_owner_app_id: str_at(body, "requested_owner_app_id"),
                metadata: str_at(body, "metadata"),
            };
            (EventKind::Handover, id_or_hash("handover", None), Payload::Handover(h))
        }
    };
    ic.event(id, field, &time, kind, payload)
}

fn message(sender_id: String, recipient_id: String, mid: String, m: &Json<'_>) -> v1::Message {
    let attachments =
        m.get("attachments").and_then(Json::as_array).map(|a| a.iter().map(attachment).collect()).unwrap_or_default();
    let reply_to = m.get("reply_to").and_then(|r| {
        if let Some(story) = r.get("story") {
            Some(v1::ReplyTo {
                target: Some(v1::reply_to::Target::Story(v1::StoryRef {
                    id: str_at(story, "id"),
                    url: str_at(story, "url"),
                })),
            })
        } else {
            r.get("mid").map(|mid| v1::ReplyTo { target: Some(v1::reply_to::Target::Mid(text(mid))) })
        }
    });
    v1::Message {
        sender_id,
        recipient_id,
        mid,
        text: str_at(m, "text"),
        attachments,
        quick_reply_payload: m.get("quick_reply").map(|q| str_at(q, "payload")).unwrap_or_default(),
        reply_to,
        referral: m.get("referral").map(ad_referral),
        is_deleted: bool_at(m, "is_deleted"),
        is_echo: bool_at(m, "is_echo"),
        is_self: bool_at(m, "is_self"),
        is_unsupported: bool_at(m, "is_unsupported"),
        sent_by_command_id: String::new(),
    }
}

fn attachment(a: &Json<'_>) -> v1::Attachment {
    use v1::AttachmentType as T;
    let raw_type = str_at(a, "type");
    let ty = match raw_type.as_str() {
        "audio" => T::Audio,
        "file" => T::File,
        "image" => T::Image,
        "share" => T::Share,
        "story_mention" => T::StoryMention,
        "video" => T::Video,
        "ig_reel" => T::IgReel,
        "reel" => T::Reel,
        "ig_post" => T::IgPost,
        "template" => T::Template,
        "fallback" => T::Fallback,
        _ => T::Other,
    };
    let payload = a.get("payload").unwrap_or(&NULL);
    v1::Attachment {
        r#type: ty as i32,
        raw_type,
        url: str_at(payload, "url"),
        title: str_at(payload, "title"),
        ig_post_media_id: str_at(payload, "ig_post_media_id"),
        reel_video_id: str_at(payload, "reel_video_id"),
        payload_json: if payload.is_null() { String::new() } else { payload.to_string() },
    }
}

fn ad_referral(r: &Json<'_>) -> v1::AdReferral {
    v1::AdReferral {
        r#ref: str_at(r, "ref"),
        ad_id: str_at(r, "ad_id"),
        source: str_at(r, "source"),
        r#type: str_at(r, "type"),
        ads_context_data: r.get("ads_context_data").map(|c| v1::AdsContext {
            ad_title: str_at(c, "ad_title"),
            photo_url: str_at(c, "photo_url"),
            video_url: str_at(c, "video_url"),
        }),
    }
}

fn parse_change(ic: &ItemContext<'_>, field: &str, value: &Json<'_>) -> ParsedEvent {
    // Some Instagram Login deliveries put a messaging item in field/value form.
    if MESSAGING_KEYS.iter().any(|(_, f)| *f == field) && value.get("sender").is_some() {
        return parse_messaging(ic, value);
    }
    let time = match read_time(value, "timestamp") {
        MetaTime::Absent => read_time(value, "time"),
        t => t,
    };
    match field {
        "comments" | "live_comments" => {
            let comment_id = value.get("comment_id").or_else(|| value.get("id")).map(text).unwrap_or_default();
            let from = value.get("from").map(|f| v1::CommentAuthor {
                id: str_at(f, "id"),
                username: str_at(f, "username"),
                self_ig_scoped_id: str_at(f, "self_ig_scoped_id"),
            });
            let media = value.get("media").map(|m| v1::MediaRef {
                id: str_at(m, "id"),
                ad_id: str_at(m, "ad_id"),
                original_media_id: str_at(m, "original_media_id"),
                media_product_type: str_at(m, "media_product_type"),
                ad_title: str_at(m, "ad_title"),
            });
            let live = field == "live_comments";
            let id = if comment_id.is_empty() {
                ic.id("comment", &hash_parts(&[ic.account.as_str(), field, &value.to_string()]))
            } else {
                ic.id("comment", &comment_id)
            };
            let c = v1::Comment {
                comment_id,
                parent_id: str_at(value, "parent_id"),
                text: str_at(value, "text"),
                from,
                media,
                live,
            };
            let kind = if live { EventKind::LiveComment } else { EventKind::Comment };
            ic.event(id, field, &time, kind, Payload::Comment(c))
        }
        "mentions" => {
            let m = v1::Mention { media_id: str_at(value, "media_id"), comment_id: str_at(value, "comment_id") };
            let id = ic.id("mention", &hash_parts(&[ic.account.as_str(), &m.media_id, &m.comment_id]));
            ic.event(id, field, &time, EventKind::Mention, Payload::Mention(m))
        }
        "story_insights" => {
            let n = |k: &str| value.get(k).and_then(int).unwrap_or(0);
            let s = v1::StoryInsights {
                media_id: str_at(value, "media_id"),
                exits: n("exits"),
                replies: n("replies"),
                reach: n("reach"),
                taps_forward: n("taps_forward"),
                taps_back: n("taps_back"),
                impressions: n("impressions"),
            };
            let id = ic.id("story_insights", &hash_parts(&[ic.account.as_str(), field, &value.to_string()]));
            ic.event(id, field, &time, EventKind::StoryInsights, Payload::StoryInsights(s))
        }
        other => {
            let pairs = [("field", Json::Str(other)), ("value", value.clone())];
            ic.unknown(other, &Json::Object(&pairs), format!("unknown webhook field {other:?}"))
        }
    }
}

/// The whole body as one Unknown event (it could not be split into items).
fn raw_unknown(body: &[u8], ctx: &DeliveryContext, reason: String) -> ParsedEvent {
    let ic =
        ItemContext { ctx, object: "", account: AccountId::unknown(), sent: MetaTime::Absent, channel: Channel::Raw };
    let payload = Payload::Unknown(v1::Unknown { reason, raw_json: body.to_vec() });
    let event = ic.event(ic.id("unknown", &ctx.delivery_id), "unknown", &MetaTime::Absent, EventKind::Unknown, payload);
    if !ctx.check_sizes {
        return event;
    }
    let size = event.event.encoded_len();
    if size <= ctx.max_event_bytes { event } else { oversized(event, size, body.to_vec(), ctx.max_event_bytes) }
}

/// A JSON value as text: strings as they are, numbers and booleans written out, else empty.
/// Meta documents ids as strings but some payloads carry numbers.
fn text(v: &Json<'_>) -> String {
    match v {
        Json::Str(s) => (*s).to_owned(),
        Json::Number(n) => n.to_string(),
        Json::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn str_at(v: &Json<'_>, key: &str) -> String {
    v.get(key).map(text).unwrap_or_default()
}

fn bool_at(v: &Json<'_>, key: &str) -> bool {
    match v.get(key) {
        Some(Json::Bool(b)) => *b,
        Some(Json::Str(s)) => *s == "true",
        _ => false,
    }
}

/// An integer from a number or a numeric string.
fn int(v: &Json<'_>) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn hash_parts(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    igrelay_core::ids::hex_lower(&h.finalize()[..16])
}

//! The emulator's world: accounts and tokens, users, conversations, media, containers, limits,
//! counters. Plain data behind one mutex; every rule of Meta's lives in `graph/` (one file per
//! API family) and `admin.rs`.

use crate::config::{AccountSeed, EmulatorConfig};
use crate::meta::{MetaError, format_time};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Wall clock plus an offset, or a frozen instant: tests move time explicitly instead of sleeping.
#[derive(Debug, Clone)]
pub struct Clock {
    pub frozen_at: Option<i64>,
    pub offset_ms: i64,
}

impl Clock {
    pub fn now(&self) -> i64 {
        self.frozen_at.unwrap_or_else(igrelay_core::time::now_ms) + self.offset_ms
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Instagram User token (Instagram Login); subject is the IG account id.
    Instagram,
    /// Page token (Facebook Login); subject is the Page id.
    Page,
    /// Facebook User token; subject is the Facebook user id.
    FacebookUser,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Valid,
    Expired,
    Revoked,
}

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub kind: TokenKind,
    pub subject: String,
    pub state: TokenState,
    pub issued_ms: i64,
    pub expires_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Flow {
    pub id: String,
    pub name: String,
    pub platforms: Vec<String>,
    pub flow: Value,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub ig_id: String,
    pub username: String,
    pub name: String,
    pub page_id: String,
    pub followers: u64,
    pub subscribed_fields: BTreeSet<String>,
    pub ice_breakers: Vec<Value>,
    pub persistent_menu: Vec<Value>,
    pub flows: BTreeMap<String, Flow>,
    pub blocked: BTreeSet<String>,
    pub spam: BTreeSet<String>,
    /// Users who gave consent to profile look-ups (messaged, tapped an ice breaker or menu).
    pub consent: BTreeSet<String>,
    pub publishes: Vec<i64>,
    pub containers_created: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PageInfo {
    pub id: String,
    pub name: String,
    pub ig_id: String,
    pub fb_user: String,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct IgUser {
    pub id: String,
    pub name: Option<String>,
    pub username: String,
    pub profile_pic: Option<String>,
    pub follower_count: u64,
    pub is_verified_user: bool,
    pub is_user_follow_business: bool,
    pub is_business_follow_user: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conversation {
    pub id: String,
    pub account: String,
    pub user: String,
    /// Message ids, oldest first.
    pub messages: Vec<String>,
    pub updated_ms: i64,
    /// Last message, postback or referral from the user: opens the 24 h / 7-day window.
    pub last_inbound_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub mid: String,
    pub conversation: String,
    pub from: String,
    pub to: String,
    /// From the Instagram user to the business.
    pub inbound: bool,
    pub created_ms: i64,
    pub text: Option<String>,
    pub attachments: Vec<Value>,
    /// The `message` object as the app sent it (outbound) or the emulator built it (inbound).
    pub body: Value,
    pub tag: Option<String>,
    pub private_reply_to: Option<String>,
    pub reactions: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Media {
    pub id: String,
    pub account: String,
    pub media_type: String,
    pub media_product_type: String,
    pub caption: Option<String>,
    pub comment_enabled: bool,
    pub created_ms: i64,
    pub comments: Vec<String>,
    pub carousel_child: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    pub id: String,
    pub media: String,
    pub account: String,
    pub parent: Option<String>,
    pub from_id: String,
    pub from_username: String,
    pub text: String,
    pub hidden: bool,
    pub deleted: bool,
    pub live: bool,
    pub created_ms: i64,
    pub replies: Vec<String>,
    pub private_replied: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Container {
    pub id: String,
    pub account: String,
    pub media_type: String,
    pub created_ms: i64,
    /// Status set through the admin API (ERROR, EXPIRED, FINISHED, IN_PROGRESS).
    pub forced: Option<String>,
    pub published: Option<String>,
    pub children: Vec<String>,
    pub is_carousel_item: bool,
    pub caption: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadedAttachment {
    pub id: String,
    pub account: String,
    pub kind: String,
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitClass {
    Send,
    SendMedia,
    Conversations,
    PrivateReplies,
    Buc,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CallStat {
    pub calls: u64,
    pub errors: u64,
    pub throttled: u64,
}

/// A webhook update on its way to the sender task.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub account: String,
    /// `messaging` item, or a `changes` item `{field, value}`.
    pub item: Value,
    pub is_change: bool,
    pub time_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub batch: u64,
    pub attempt: u32,
    pub at_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub ok: bool,
    pub items: usize,
    pub signature: String,
    pub body: String,
}

/// How a fault shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A Meta error body (`error`, or code 2 "Service temporarily unavailable").
    #[default]
    Error,
    /// HTTP 500/502/503 with an HTML body, as a load balancer would answer.
    Http5xx,
    /// The connection is closed without an answer, before the call is carried out.
    Drop,
    /// The call is carried out (message stored, echo sent, quota used), then the connection is
    /// closed without an answer: "Meta did it but the answer was lost". With `answer_delay_ms`
    /// the connection is closed that long after the call.
    DropAnswer,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    #[serde(skip_deserializing)]
    pub id: u64,
    /// Endpoint name (see the README), or None for every endpoint.
    pub endpoint: Option<String>,
    pub account: Option<String>,
    pub kind: FaultKind,
    /// The error to answer (kind `error`); default code 2, transient.
    pub error: Option<MetaError>,
    /// HTTP status for kind `http5xx`.
    pub status: Option<u16>,
    /// Probability of failing each matching call (deterministic generator).
    pub error_rate: Option<f64>,
    /// Fail exactly the next N matching calls, then the fault is spent.
    pub times: Option<u32>,
    /// Added latency for each matching call, failing or not, before the call is handled.
    pub latency_ms: Option<u64>,
    /// Delay of the answer of each matching call after the call was carried out (kind
    /// `drop_answer`: delay before the connection is closed). The call counts as made the moment
    /// it is carried out, so a client that gives up meanwhile has still sent it.
    pub answer_delay_ms: Option<u64>,
}

/// What the faults decide for one call.
#[derive(Debug, Default)]
pub struct FaultPick {
    /// The fault that fires (at most one).
    pub fired: Option<Fault>,
    /// Delay before the call is handled (largest of the matching faults).
    pub latency_ms: u64,
    /// Delay of the answer after the call was carried out (largest of the matching faults).
    pub answer_delay_ms: u64,
}

pub struct State {
    pub cfg: Arc<EmulatorConfig>,
    pub clock: Clock,
    seq: u64,
    rng: u64,
    trace_seq: u64,
    pub callback_url: Option<String>,
    pub tokens: HashMap<String, Token>,
    pub accounts: BTreeMap<String, Account>,
    pub pages: HashMap<String, PageInfo>,
    pub fb_users: HashMap<String, Vec<String>>,
    pub users: HashMap<String, IgUser>,
    pub conversations: HashMap<String, Conversation>,
    pub conv_index: HashMap<(String, String), String>,
    pub messages: HashMap<String, Message>,
    pub media: HashMap<String, Media>,
    pub comments: HashMap<String, Comment>,
    pub containers: HashMap<String, Container>,
    pub attachments: HashMap<String, UploadedAttachment>,
    /// (account, class) → (window start, calls in window).
    pub windows: HashMap<(String, LimitClass), (i64, u32)>,
    pub app_window: (i64, u32),
    pub stats: BTreeMap<(String, String), CallStat>,
    pub faults: Vec<Fault>,
    fault_seq: u64,
    pub outbox: Option<UnboundedSender<Outgoing>>,
    pub events: Vec<Value>,
    pub deliveries: Vec<Delivery>,
}

impl State {
    pub fn new(cfg: Arc<EmulatorConfig>) -> Self {
        let mut s = Self {
            clock: Clock { frozen_at: cfg.frozen_clock_ms, offset_ms: 0 },
            seq: 0,
            rng: cfg.seed | 1,
            trace_seq: 0,
            callback_url: cfg.webhooks.callback_url.clone(),
            tokens: HashMap::new(),
            accounts: BTreeMap::new(),
            pages: HashMap::new(),
            fb_users: HashMap::new(),
            users: HashMap::new(),
            conversations: HashMap::new(),
            conv_index: HashMap::new(),
            messages: HashMap::new(),
            media: HashMap::new(),
            comments: HashMap::new(),
            containers: HashMap::new(),
            attachments: HashMap::new(),
            windows: HashMap::new(),
            app_window: (0, 0),
            stats: BTreeMap::new(),
            faults: Vec::new(),
            fault_seq: 0,
            outbox: None,
            events: Vec::new(),
            deliveries: Vec::new(),
            cfg: cfg.clone(),
        };
        for seed in &cfg.accounts {
            s.add_account(seed.clone());
        }
        s
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A fresh id: `prefix` followed by a zero-padded sequence number.
    pub fn new_id(&mut self, prefix: &str) -> String {
        let n = self.next_seq();
        format!("{prefix}{n:012}")
    }

    /// Message ids look like Meta's base64 ids.
    pub fn new_mid(&mut self) -> String {
        let n = self.next_seq();
        format!("aWdfZAG1faXRlbToxOklHTWVzc2FnZAU{n:020}ZDZD")
    }

    /// xorshift64*: deterministic for a given seed, so fault error rates replay exactly.
    pub fn random(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn fbtrace_id(&mut self) -> String {
        self.trace_seq += 1;
        format!("AEmu{:08X}trace", self.trace_seq)
    }

    pub fn add_account(&mut self, seed: AccountSeed) {
        let now = self.now();
        let fb_user = format!("fbuser{}", seed.page_id);
        self.tokens.insert(
            seed.token.clone(),
            Token {
                kind: TokenKind::Instagram,
                subject: seed.ig_id.clone(),
                state: TokenState::Valid,
                issued_ms: now,
                expires_ms: None,
            },
        );
        self.tokens.insert(
            seed.page_token.clone(),
            Token {
                kind: TokenKind::Page,
                subject: seed.page_id.clone(),
                state: TokenState::Valid,
                issued_ms: now,
                expires_ms: None,
            },
        );
        self.tokens.insert(
            seed.user_token.clone(),
            Token {
                kind: TokenKind::FacebookUser,
                subject: fb_user.clone(),
                state: TokenState::Valid,
                issued_ms: now,
                expires_ms: None,
            },
        );
        self.pages.insert(
            seed.page_id.clone(),
            PageInfo {
                id: seed.page_id.clone(),
                name: format!("{} page", seed.username),
                ig_id: seed.ig_id.clone(),
                fb_user: fb_user.clone(),
                token: seed.page_token.clone(),
            },
        );
        self.fb_users.entry(fb_user).or_default().push(seed.page_id.clone());
        self.accounts.insert(
            seed.ig_id.clone(),
            Account {
                name: seed.username.replace('.', " "),
                username: seed.username,
                page_id: seed.page_id,
                followers: seed.followers,
                // Subscribed to everything from the start so webhooks flow without set-up;
                // `DELETE /subscribed_apps` turns them off as at Meta.
                subscribed_fields: crate::graph::WEBHOOK_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
                ice_breakers: Vec::new(),
                persistent_menu: Vec::new(),
                flows: BTreeMap::new(),
                blocked: BTreeSet::new(),
                spam: BTreeSet::new(),
                consent: BTreeSet::new(),
                publishes: Vec::new(),
                containers_created: Vec::new(),
                ig_id: seed.ig_id,
            },
        );
    }

    /// The account an id names (IG account id or its Page id).
    pub fn account_of(&self, id: &str) -> Option<&Account> {
        self.accounts.get(id).or_else(|| self.pages.get(id).and_then(|p| self.accounts.get(&p.ig_id)))
    }

    pub fn default_account(&self) -> Option<String> {
        self.accounts.keys().next().cloned()
    }

    pub fn ensure_user(&mut self, id: Option<&str>, username: Option<&str>) -> String {
        if let Some(id) = id
            && self.users.contains_key(id)
        {
            return id.to_owned();
        }
        if let Some(u) = username
            && let Some(found) = self.users.values().find(|x| x.username == u)
        {
            return found.id.clone();
        }
        let id = id.map(str::to_owned).unwrap_or_else(|| {
            let n = self.next_seq();
            format!("{}", 6_100_000_000_000_000u64 + n)
        });
        let username = username.map(str::to_owned).unwrap_or_else(|| format!("user_{id}"));
        let follower_count = (self.random() * 5000.0) as u64;
        self.users.insert(
            id.clone(),
            IgUser {
                id: id.clone(),
                name: Some(username.replace(['_', '.'], " ")),
                profile_pic: Some(format!(
                    "https://scontent.cdninstagram.example/v/t51.2885-19/{id}_n.jpg?oe=emulated"
                )),
                username,
                follower_count,
                is_verified_user: false,
                is_user_follow_business: false,
                is_business_follow_user: false,
            },
        );
        id
    }

    /// The conversation between an account and a user, created when missing.
    pub fn conversation_for(&mut self, account: &str, user: &str) -> String {
        let key = (account.to_owned(), user.to_owned());
        if let Some(c) = self.conv_index.get(&key) {
            return c.clone();
        }
        let n = self.next_seq();
        let id = format!("aWdfZAG06OjE3ODQxNDAw{n:016}");
        let now = self.now();
        self.conversations.insert(
            id.clone(),
            Conversation {
                id: id.clone(),
                account: account.to_owned(),
                user: user.to_owned(),
                messages: Vec::new(),
                updated_ms: now,
                last_inbound_ms: None,
            },
        );
        self.conv_index.insert(key, id.clone());
        id
    }

    /// Stores a message in its conversation (in order) and returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn store_message(
        &mut self,
        account: &str,
        user: &str,
        inbound: bool,
        body: Value,
        tag: Option<String>,
        private_reply_to: Option<String>,
    ) -> (String, String) {
        let conv = self.conversation_for(account, user);
        let mid = self.new_mid();
        let now = self.now();
        let text = body.get("text").and_then(Value::as_str).map(str::to_owned);
        let attachments = match (body.get("attachments"), body.get("attachment")) {
            (Some(Value::Array(a)), _) => a.clone(),
            (_, Some(a)) => vec![a.clone()],
            _ => Vec::new(),
        };
        let (from, to) = if inbound { (user, account) } else { (account, user) };
        self.messages.insert(
            mid.clone(),
            Message {
                mid: mid.clone(),
                conversation: conv.clone(),
                from: from.to_owned(),
                to: to.to_owned(),
                inbound,
                created_ms: now,
                text,
                attachments,
                body,
                tag,
                private_reply_to,
                reactions: BTreeMap::new(),
            },
        );
        if let Some(c) = self.conversations.get_mut(&conv) {
            c.messages.push(mid.clone());
            c.updated_ms = now;
            if inbound {
                c.last_inbound_ms = Some(now);
            }
        }
        (mid, conv)
    }

    /// Queues a webhook update if the account subscribed to `field`.
    pub fn emit(&mut self, account: &str, field: &str, item: Value, is_change: bool) {
        let subscribed = self.accounts.get(account).is_some_and(|a| a.subscribed_fields.contains(field));
        let now = self.now();
        self.events
            .push(json!({"account": account, "field": field, "item": item, "subscribed": subscribed, "at_ms": now}));
        trim(&mut self.events);
        if !subscribed {
            tracing::debug!(account, field, "webhook not sent: field not subscribed");
            return;
        }
        if let Some(tx) = &self.outbox {
            let _ = tx.send(Outgoing { account: account.to_owned(), item, is_change, time_ms: now });
        }
    }

    pub fn add_fault(&mut self, mut f: Fault) -> u64 {
        self.fault_seq += 1;
        f.id = self.fault_seq;
        self.faults.push(f);
        self.fault_seq
    }

    /// Which fault, if any, fires for this call, and the delays to add before and after it.
    pub fn pick_fault(&mut self, endpoint: &str, account: Option<&str>) -> FaultPick {
        let mut pick = FaultPick::default();
        for i in 0..self.faults.len() {
            let f = &self.faults[i];
            let matches = f.endpoint.as_deref().is_none_or(|e| e == endpoint)
                && f.account.as_deref().is_none_or(|a| Some(a) == account);
            if !matches {
                continue;
            }
            pick.latency_ms = pick.latency_ms.max(f.latency_ms.unwrap_or(0));
            pick.answer_delay_ms = pick.answer_delay_ms.max(f.answer_delay_ms.unwrap_or(0));
            if pick.fired.is_some() {
                continue;
            }
            let fires = match (f.times, f.error_rate) {
                (Some(n), _) => n > 0,
                (None, Some(rate)) => self.random() < rate,
                // Delay-only faults have neither.
                (None, None) => false,
            };
            if fires {
                let f = &mut self.faults[i];
                if let Some(n) = f.times.as_mut() {
                    *n -= 1;
                }
                pick.fired = Some(f.clone());
            }
        }
        self.faults.retain(|f| f.times != Some(0));
        pick
    }

    pub fn record_call(&mut self, endpoint: &str, account: Option<&str>, error: bool, throttled: bool) {
        let s = self.stats.entry((endpoint.to_owned(), account.unwrap_or("-").to_owned())).or_default();
        s.calls += 1;
        if error {
            s.errors += 1;
        }
        if throttled {
            s.throttled += 1;
        }
    }

    pub fn limit_of(&self, class: LimitClass) -> (u32, i64) {
        let l = &self.cfg.rate_limits;
        match class {
            LimitClass::Send => (l.send_per_s, 1000),
            LimitClass::SendMedia => (l.send_media_per_s, 1000),
            LimitClass::Conversations => (l.conversations_per_s, 1000),
            LimitClass::PrivateReplies => (l.private_replies_per_h, HOUR_MS),
            LimitClass::Buc => (l.buc_calls_per_24h, DAY_MS),
        }
    }

    /// Counts one call against the account's window for `class`; false when over the limit.
    /// Fixed windows (not rolling): exact enough for an emulator and O(1) per call.
    pub fn take(&mut self, account: &str, class: LimitClass) -> bool {
        let (limit, period) = self.limit_of(class);
        let now = self.now();
        let start = now - now.rem_euclid(period);
        let w = self.windows.entry((account.to_owned(), class)).or_insert((start, 0));
        if w.0 != start {
            *w = (start, 0);
        }
        if w.1 >= limit {
            return false;
        }
        w.1 += 1;
        true
    }

    pub fn take_app(&mut self) {
        let now = self.now();
        let start = now - now.rem_euclid(HOUR_MS);
        if self.app_window.0 != start {
            self.app_window = (start, 0);
        }
        self.app_window.1 = self.app_window.1.saturating_add(1);
    }

    /// `X-App-Usage` and `X-Business-Use-Case-Usage` for a call on `account`.
    pub fn usage_headers(&self, account: Option<&str>) -> (String, Option<String>) {
        let now = self.now();
        let app_pct = pct(self.app_window.1, self.cfg.rate_limits.app_calls_per_h);
        let app = json!({"call_count": app_pct, "total_time": app_pct / 2, "total_cputime": app_pct / 2}).to_string();
        let buc = account.map(|a| {
            let mut max_pct = 0u64;
            let mut regain_min = 0i64;
            for class in [
                LimitClass::Send,
                LimitClass::SendMedia,
                LimitClass::Conversations,
                LimitClass::PrivateReplies,
                LimitClass::Buc,
            ] {
                let (limit, period) = self.limit_of(class);
                let start = now - now.rem_euclid(period);
                let used = match self.windows.get(&(a.to_owned(), class)) {
                    Some((s, n)) if *s == start => *n,
                    _ => 0,
                };
                max_pct = max_pct.max(pct(used, limit));
                if used >= limit {
                    regain_min = regain_min.max((start + period - now) / 60_000);
                }
            }
            json!({a: [{
                "type": "instagram",
                "call_count": max_pct,
                "total_cputime": max_pct / 2,
                "total_time": max_pct / 2,
                "estimated_time_to_regain_access": regain_min,
            }]})
            .to_string()
        });
        (app, buc)
    }

    pub fn time(&self, ms: i64) -> String {
        format_time(ms)
    }

    /// Token check as Meta does it: unknown → 190, expired → 190/463, revoked → 190/460.
    pub fn check_token(&self, token: &str) -> Result<Token, MetaError> {
        let t = self.tokens.get(token).ok_or_else(MetaError::token_invalid)?;
        let now = self.now();
        match t.state {
            TokenState::Revoked => Err(MetaError::token_revoked()),
            TokenState::Expired => Err(MetaError::token_expired(&format_time(t.expires_ms.unwrap_or(now)))),
            TokenState::Valid => match t.expires_ms {
                Some(at) if now >= at => Err(MetaError::token_expired(&format_time(at))),
                _ => Ok(t.clone()),
            },
        }
    }
}

/// Records are for inspection, not an archive: keep the newest so a long benchmark cannot
/// exhaust memory.
pub const MAX_RECORDS: usize = 20_000;

pub fn trim<T>(v: &mut Vec<T>) {
    if v.len() > MAX_RECORDS {
        v.drain(..v.len() - MAX_RECORDS / 2);
    }
}

fn pct(used: u32, limit: u32) -> u64 {
    if limit == 0 { 100 } else { u64::from(used) * 100 / u64::from(limit) }
}

/// Graph-style `fields` parsing: top-level names, ignoring `{…}` sub-selections.
pub fn field_names(fields: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in fields.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_owned());
                continue;
            }
            _ if depth == 0 => cur.push(c),
            _ => {}
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Keeps the requested fields of `obj` (always `id` when present).
pub fn select(obj: Map<String, Value>, fields: Option<&str>, default: &[&str]) -> Value {
    let wanted: Vec<String> = match fields {
        Some(f) if !f.trim().is_empty() => field_names(f),
        _ => default.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if k == "id" || wanted.contains(&k) {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_fields() {
        assert_eq!(field_names("messages{from,to},id"), vec!["messages", "id"]);
        assert_eq!(field_names(" name , username"), vec!["name", "username"]);
    }

    #[test]
    fn fixed_windows_reset() {
        let mut cfg = EmulatorConfig::for_tests();
        cfg.rate_limits.send_per_s = 2;
        let mut s = State::new(Arc::new(cfg));
        assert!(s.take("a", LimitClass::Send));
        assert!(s.take("a", LimitClass::Send));
        assert!(!s.take("a", LimitClass::Send));
        assert!(s.take("b", LimitClass::Send));
        s.clock.offset_ms += 1000;
        assert!(s.take("a", LimitClass::Send));
    }
}

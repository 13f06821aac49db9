//! The Graph API surface: routing of `/{version}/{node}[/{edge}]`, token and ownership checks,
//! and every endpoint with Meta's rules and error codes.

use crate::meta::MetaError;
use crate::state::{
    Comment, Container, DAY_MS, Flow, LimitClass, Media, State, Token, TokenKind, TokenState, UploadedAttachment,
    select,
};
use http::Method;
use serde_json::{Map, Value, json};

/// Webhook fields an account can subscribe to.
pub const WEBHOOK_FIELDS: &[&str] = &[
    "messages",
    "messaging_postbacks",
    "messaging_seen",
    "messaging_handover",
    "messaging_referral",
    "message_reactions",
    "message_edit",
    "messaging_optins",
    "standby",
    "comments",
    "live_comments",
    "mentions",
    "story_insights",
];

const SUPPORTED_ACCOUNT_METRICS: &[&str] = &[
    "accounts_engaged",
    "comments",
    "engaged_audience_demographics",
    "follows_and_unfollows",
    "follower_demographics",
    "likes",
    "profile_links_taps",
    "reach",
    "replies",
    "reposts",
    "saves",
    "shares",
    "total_interactions",
    "views",
    "follower_count",
    "online_followers",
];
const SUPPORTED_MEDIA_METRICS: &[&str] = &[
    "comments",
    "likes",
    "reach",
    "saved",
    "shares",
    "total_interactions",
    "views",
    "replies",
    "follows",
    "profile_visits",
    "profile_activity",
    "navigation",
    "ig_reels_avg_watch_time",
    "ig_reels_video_view_total_time",
    "reposts",
];
/// Retired in v21/v22: asking for them is an error, as at Meta.
const RETIRED_METRICS: &[&str] = &[
    "impressions",
    "plays",
    "clips_replays_count",
    "ig_reels_aggregated_all_plays_count",
    "video_views",
    "profile_views",
    "website_clicks",
    "email_contacts",
    "phone_call_clicks",
    "text_message_clicks",
    "get_directions_clicks",
];

/// Request parameters merged from the query string and the body (JSON or form).
#[derive(Debug, Clone, Default)]
pub struct Params(pub Map<String, Value>);

impl Params {
    pub fn str(&self, k: &str) -> Option<String> {
        match self.0.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            v => Some(v.to_string()),
        }
    }

    /// A structured parameter: JSON in a JSON body, or JSON text in a form or query value.
    pub fn json(&self, k: &str) -> Option<Value> {
        match self.0.get(k)? {
            Value::String(s) => Some(serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))),
            Value::Null => None,
            v => Some(v.clone()),
        }
    }

    pub fn bool(&self, k: &str) -> Option<bool> {
        match self.0.get(k)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" || s == "1" => Some(true),
            Value::String(s) if s == "false" || s == "0" => Some(false),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GraphRequest {
    pub method: Method,
    pub node: String,
    pub edge: Option<String>,
    pub params: Params,
    pub token: Option<String>,
    /// `http://host/v23.0/node[/edge]`, for `paging.next`.
    pub self_url: String,
    /// The query string pairs, to rebuild `paging.next` (without the token).
    pub query: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Account(String),
    Page(String),
    FbUser(String),
    Conversation(String),
    Message(String),
    User(String),
    Media(String),
    Comment(String),
    Container(String),
    RefreshToken,
}

#[derive(Debug, Clone)]
pub struct Routed {
    pub endpoint: &'static str,
    /// The IG account the call counts against.
    pub account: Option<String>,
    pub caller: Token,
    pub node: Node,
}

#[derive(Debug, Clone)]
pub struct RouteError {
    pub endpoint: &'static str,
    pub account: Option<String>,
    pub error: MetaError,
}

fn fail(endpoint: &'static str, error: MetaError) -> RouteError {
    RouteError { endpoint, account: None, error }
}

/// Rate-limit class of a call (RL-M): sends by kind, the Conversations API, everything else.
pub fn class_of(endpoint: &str, params: &Params) -> LimitClass {
    match endpoint {
        "messages" => {
            let recipient = params.json("recipient");
            if recipient.as_ref().and_then(|r| r.get("comment_id")).is_some() {
                return LimitClass::PrivateReplies;
            }
            let kind = params.json("message").and_then(|m| {
                m.get("attachment").and_then(|a| a.get("type")).and_then(Value::as_str).map(str::to_owned)
            });
            match kind.as_deref() {
                Some("audio" | "video") => LimitClass::SendMedia,
                _ => LimitClass::Send,
            }
        }
        "conversations" | "conversation" | "conversation_messages" | "message" => LimitClass::Conversations,
        _ => LimitClass::Buc,
    }
}

impl State {
    fn allowed_accounts(&self, caller: &Token) -> Vec<String> {
        match caller.kind {
            TokenKind::Instagram => vec![caller.subject.clone()],
            TokenKind::Page => self.pages.get(&caller.subject).map(|p| vec![p.ig_id.clone()]).unwrap_or_default(),
            TokenKind::FacebookUser => self
                .fb_users
                .get(&caller.subject)
                .map(|ps| ps.iter().filter_map(|p| self.pages.get(p).map(|p| p.ig_id.clone())).collect())
                .unwrap_or_default(),
        }
    }

    fn find_node(&self, id: &str, caller: &Token) -> Option<Node> {
        if id == "me" {
            return Some(match caller.kind {
                TokenKind::Instagram => Node::Account(caller.subject.clone()),
                TokenKind::Page => Node::Page(caller.subject.clone()),
                TokenKind::FacebookUser => Node::FbUser(caller.subject.clone()),
            });
        }
        let id_s = id.to_owned();
        if self.accounts.contains_key(id) {
            Some(Node::Account(id_s))
        } else if self.pages.contains_key(id) {
            Some(Node::Page(id_s))
        } else if self.conversations.contains_key(id) {
            Some(Node::Conversation(id_s))
        } else if self.messages.contains_key(id) {
            Some(Node::Message(id_s))
        } else if self.media.contains_key(id) {
            Some(Node::Media(id_s))
        } else if self.comments.get(id).is_some_and(|c| !c.deleted) {
            Some(Node::Comment(id_s))
        } else if self.containers.contains_key(id) {
            Some(Node::Container(id_s))
        } else if self.users.contains_key(id) {
            Some(Node::User(id_s))
        } else if self.fb_users.contains_key(id) {
            Some(Node::FbUser(id_s))
        } else {
            None
        }
    }

    /// The account that owns a node, and whether the caller may touch it.
    fn owner(&self, node: &Node, caller: &Token, allowed: &[String]) -> Option<String> {
        let owned = |a: &str| allowed.iter().any(|x| x == a).then(|| a.to_owned());
        match node {
            Node::Account(a) => owned(a),
            Node::Page(p) => {
                let page = self.pages.get(p)?;
                let ok = (caller.kind == TokenKind::Page && caller.subject == *p)
                    || (caller.kind == TokenKind::FacebookUser && caller.subject == page.fb_user);
                ok.then(|| page.ig_id.clone())
            }
            Node::FbUser(u) => (caller.kind == TokenKind::FacebookUser && caller.subject == *u).then(|| "-".to_owned()),
            Node::Conversation(c) => owned(&self.conversations.get(c)?.account),
            Node::Message(m) => owned(&self.conversations.get(&self.messages.get(m)?.conversation)?.account),
            Node::Media(m) => owned(&self.media.get(m)?.account),
            Node::Comment(c) => owned(&self.comments.get(c)?.account),
            Node::Container(c) => owned(&self.containers.get(c)?.account),
            Node::User(_) => allowed.first().cloned(),
            Node::RefreshToken => allowed.first().cloned(),
        }
    }

    /// Authenticates and routes a call without changing any state.
    pub fn route(&self, req: &GraphRequest) -> Result<Routed, RouteError> {
        let Some(token) = req.token.as_deref() else {
            return Err(fail("unknown", MetaError::token_missing()));
        };
        let caller = self.check_token(token).map_err(|e| fail("unknown", e))?;
        if self.cfg.require_appsecret_proof {
            let expected = igrelay_core::webhook::hmac_sha256_hex(self.cfg.app_secret.as_bytes(), token.as_bytes());
            if req.params.str("appsecret_proof").as_deref() != Some(expected.as_str()) {
                return Err(fail("unknown", MetaError::bad_proof()));
            }
        }
        let method = req.method.as_str();
        let node = if req.node == "refresh_access_token" {
            Node::RefreshToken
        } else {
            self.find_node(&req.node, &caller)
                .ok_or_else(|| fail("unknown", MetaError::no_object(&req.node, method)))?
        };
        let allowed = self.allowed_accounts(&caller);
        let account = self
            .owner(&node, &caller, &allowed)
            .ok_or_else(|| fail("unknown", MetaError::no_object(&req.node, method)))?;
        let account = (account != "-").then_some(account);
        let edge = req.edge.as_deref();
        let m = &req.method;
        let endpoint = match (&node, edge) {
            (Node::RefreshToken, None) if m == Method::GET => "refresh_access_token",
            (Node::Account(_), Some("messages")) if m == Method::POST => "messages",
            (Node::Account(_), Some("message_attachments")) if m == Method::POST => "message_attachments",
            (Node::Account(_), Some("conversations")) if m == Method::GET => "conversations",
            (Node::Account(_), Some("media")) if m == Method::POST => "media",
            (Node::Account(_), Some("media_publish")) if m == Method::POST => "media_publish",
            (Node::Account(_), Some("content_publishing_limit")) if m == Method::GET => "content_publishing_limit",
            (Node::Account(_), Some("insights")) if m == Method::GET => "insights",
            (Node::Account(_), Some("messenger_profile")) => "messenger_profile",
            (Node::Account(_), Some("welcome_message_flows")) => "welcome_message_flows",
            (Node::Account(_) | Node::Page(_), Some("subscribed_apps")) => "subscribed_apps",
            (Node::Account(_), None) if m == Method::GET => "account",
            (Node::Page(_), Some("moderate_conversations")) if m == Method::POST => "moderate_conversations",
            (Node::Page(_), None) if m == Method::GET => "page",
            (Node::FbUser(_), Some("accounts")) if m == Method::GET => "accounts",
            (Node::Conversation(_), None) if m == Method::GET => "conversation",
            (Node::Conversation(_), Some("messages")) if m == Method::GET => "conversation_messages",
            (Node::Message(_), None) if m == Method::GET => "message",
            (Node::User(_), None) if m == Method::GET => "user_profile",
            (Node::Media(_), Some("comments")) if m == Method::GET => "comments",
            (Node::Media(_), Some("insights")) if m == Method::GET => "media_insights",
            (Node::Media(_), None) if m == Method::GET => "media_object",
            (Node::Media(_), None) if m == Method::POST => "media_update",
            (Node::Comment(_), Some("replies")) if m == Method::GET => "replies",
            (Node::Comment(_), Some("replies")) if m == Method::POST => "reply",
            (Node::Comment(_), None) if m == Method::POST => "comment_update",
            (Node::Comment(_), None) if m == Method::DELETE => "comment_delete",
            (Node::Comment(_), None) if m == Method::GET => "comment",
            (Node::Container(_), None) if m == Method::GET => "container",
            (_, Some(e)) if m == Method::GET => {
                return Err(RouteError {
                    endpoint: "unknown",
                    account,
                    error: MetaError::param(format!("Tried accessing nonexisting field ({e}) on node type")),
                });
            }
            _ => {
                return Err(RouteError {
                    endpoint: "unknown",
                    account,
                    error: MetaError::no_object(&req.node, method),
                });
            }
        };
        Ok(Routed { endpoint, account, caller, node })
    }

    /// Runs a routed call. Rate limits were already counted by the caller.
    pub fn execute(&mut self, req: &GraphRequest, r: &Routed) -> Result<Value, MetaError> {
        let p = &req.params;
        let acct = r.account.clone().unwrap_or_default();
        let node_id = match &r.node {
            Node::Account(x)
            | Node::Page(x)
            | Node::FbUser(x)
            | Node::Conversation(x)
            | Node::Message(x)
            | Node::User(x)
            | Node::Media(x)
            | Node::Comment(x)
            | Node::Container(x) => x.clone(),
            Node::RefreshToken => String::new(),
        };
        match r.endpoint {
            "messages" => self.send(&acct, p),
            "message_attachments" => self.upload_attachment(&acct, p),
            "conversations" => self.list_conversations(&acct, req),
            "conversation" => self.get_conversation(&node_id, req),
            "conversation_messages" => Ok(self.conversation_messages_page(&node_id, req)),
            "message" => self.get_message(&node_id, p),
            "user_profile" => self.user_profile(&acct, &node_id, p),
            "moderate_conversations" => self.moderate(&acct, p),
            "comments" => self.list_comments(&node_id, req, false),
            "replies" => self.list_comments(&node_id, req, true),
            "reply" => self.reply(&node_id, p),
            "comment" => self.get_comment(&node_id, p),
            "comment_update" => self.hide_comment(&acct, &node_id, p),
            "comment_delete" => {
                if let Some(c) = self.comments.get_mut(&node_id) {
                    c.deleted = true;
                }
                Ok(json!({"success": true}))
            }
            "media_update" => {
                let enabled = p
                    .bool("comment_enabled")
                    .ok_or_else(|| MetaError::param("The parameter comment_enabled is required"))?;
                if let Some(m) = self.media.get_mut(&node_id) {
                    m.comment_enabled = enabled;
                }
                Ok(json!({"success": true}))
            }
            "media_object" => Ok(self.media_object(&node_id, p)),
            "media" => self.create_container(&acct, p),
            "container" => self.container_status(&node_id, p),
            "media_publish" => self.publish(&acct, p),
            "content_publishing_limit" => Ok(self.publishing_limit(&acct, p)),
            "insights" => self.account_insights(&acct, p),
            "media_insights" => self.media_insights(&node_id, p),
            "messenger_profile" => self.messenger_profile(&acct, &req.method, p),
            "welcome_message_flows" => self.welcome_flows(&acct, &req.method, p),
            "subscribed_apps" => self.subscribed_apps(&acct, &req.method, p),
            "account" => Ok(self.account_object(&acct, p)),
            "page" => Ok(self.page_object(&node_id, p)),
            "accounts" => Ok(self.me_accounts(&node_id, req)),
            "refresh_access_token" => self.refresh_token(req),
            _ => Err(MetaError::unknown_path()),
        }
    }

    // ---------- paging ----------

    fn paginate(&self, items: Vec<Value>, req: &GraphRequest) -> Value {
        let limit = req.params.str("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(25).clamp(1, 100);
        let offset = req
            .params
            .str("after")
            .and_then(|c| c.strip_prefix("QVFIUz").and_then(|n| n.parse::<usize>().ok()))
            .unwrap_or(0);
        let start = offset.min(items.len());
        let end = (start + limit).min(items.len());
        let data: Vec<Value> = items[start..end].to_vec();
        let mut paging = json!({"cursors": {"before": format!("QVFIUz{start}"), "after": format!("QVFIUz{end}")}});
        if end < items.len() {
            let mut q: Vec<(String, String)> = req
                .query
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "access_token" | "appsecret_proof" | "after"))
                .cloned()
                .collect();
            q.push(("after".into(), format!("QVFIUz{end}")));
            if !q.iter().any(|(k, _)| k == "limit") {
                q.push(("limit".into(), limit.to_string()));
            }
            let qs = form_urlencoded::Serializer::new(String::new()).extend_pairs(q).finish();
            paging["next"] = json!(format!("{}?{}", req.self_url, qs));
        }
        json!({"data": data, "paging": paging})
    }

    // ---------- Send API ----------

    fn validate_buttons(buttons: &[Value], max: usize) -> Result<(), MetaError> {
        if buttons.len() > max {
            return Err(MetaError::param(format!("param buttons must have a maximum of {max} elements")));
        }
        for b in buttons {
            let title = b.get("title").and_then(Value::as_str).unwrap_or("");
            if title.is_empty() {
                return Err(MetaError::param("param buttons[title] must be non-empty"));
            }
            match b.get("type").and_then(Value::as_str) {
                Some("web_url") if b.get("url").and_then(Value::as_str).is_some_and(|u| u.starts_with("http")) => {}
                Some("postback") if b.get("payload").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) => {}
                _ => {
                    return Err(MetaError::param(
                        "Invalid button: type must be web_url (with url) or postback (with payload)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Meta's limits on a message: text ≤ 1000 bytes, ≤ 13 quick replies, attachment and
    /// template rules.
    pub fn validate_message(&self, account: &str, msg: &Value) -> Result<(), MetaError> {
        let text = msg.get("text");
        let attachment = msg.get("attachment");
        if let Some(list) = msg.get("attachments") {
            // Several images in one message: up to 10, images only.
            let list =
                list.as_array().ok_or_else(|| MetaError::param("param message[attachments] must be an array"))?;
            if list.is_empty() || list.len() > 10 {
                return Err(MetaError::param("param message[attachments] must have between 1 and 10 elements"));
            }
            for a in list {
                if a.get("type").and_then(Value::as_str) != Some("image") {
                    return Err(MetaError::param("Only images can be sent several in one message"));
                }
                self.validate_message(account, &json!({"attachment": a}))?;
            }
            return Ok(());
        }
        if text.is_none() && attachment.is_none() {
            return Err(MetaError::param("param message must contain text or attachment"));
        }
        if let Some(t) = text {
            let t = t.as_str().ok_or_else(|| MetaError::param("param message[text] must be a string"))?;
            if t.len() > 1000 {
                return Err(MetaError::param("Length of param message[text] must be less than or equal to 1000"));
            }
            if t.is_empty() {
                return Err(MetaError::param("param message[text] must be non-empty"));
            }
        }
        if let Some(qr) = msg.get("quick_replies") {
            let qr = qr.as_array().ok_or_else(|| MetaError::param("param message[quick_replies] must be an array"))?;
            if qr.len() > 13 {
                return Err(MetaError::param("param message[quick_replies] must have a maximum of 13 elements"));
            }
            for q in qr {
                if q.get("content_type").and_then(Value::as_str) != Some("text") {
                    return Err(MetaError::param("Only text quick replies are supported"));
                }
                if q.get("title").and_then(Value::as_str).is_none_or(str::is_empty) || q.get("payload").is_none() {
                    return Err(MetaError::param("Quick replies need a title and a payload"));
                }
            }
        }
        let Some(a) = attachment else { return Ok(()) };
        let payload = a.get("payload");
        match a.get("type").and_then(Value::as_str) {
            Some("image" | "audio" | "video" | "file") => {
                let url = payload.and_then(|p| p.get("url")).and_then(Value::as_str);
                let att = payload.and_then(|p| p.get("attachment_id")).and_then(Value::as_str);
                match (url, att) {
                    (Some(u), _) if u.starts_with("http://") || u.starts_with("https://") => Ok(()),
                    (_, Some(id)) if self.attachments.get(id).is_some_and(|x| x.account == account) => Ok(()),
                    (_, Some(_)) => Err(MetaError::param("Invalid attachment_id")),
                    _ => Err(MetaError::param(
                        "param message[attachment][payload] must contain a url or an attachment_id",
                    )),
                }
            }
            Some("like_heart") => Ok(()),
            Some("MEDIA_SHARE") => {
                let id = payload.and_then(|p| p.get("id")).and_then(Value::as_str).unwrap_or("");
                if self.media.get(id).is_some_and(|m| m.account == account) {
                    Ok(())
                } else {
                    Err(MetaError::param("The media to share must be a post published by this account"))
                }
            }
            Some("template") => {
                let p = payload.ok_or_else(|| MetaError::param("param message[attachment][payload] is required"))?;
                match p.get("template_type").and_then(Value::as_str) {
                    Some("generic") => {
                        let els = p
                            .get("elements")
                            .and_then(Value::as_array)
                            .ok_or_else(|| MetaError::param("param elements is required"))?;
                        if els.is_empty() || els.len() > 10 {
                            return Err(MetaError::param("param elements must have between 1 and 10 elements"));
                        }
                        for e in els {
                            let title = e.get("title").and_then(Value::as_str).unwrap_or("");
                            if title.is_empty() || title.chars().count() > 80 {
                                return Err(MetaError::param("param elements[title] must be 1 to 80 characters"));
                            }
                            if e.get("subtitle").and_then(Value::as_str).is_some_and(|s| s.chars().count() > 80) {
                                return Err(MetaError::param("param elements[subtitle] must be at most 80 characters"));
                            }
                            let buttons = e.get("buttons").and_then(Value::as_array).cloned().unwrap_or_default();
                            Self::validate_buttons(&buttons, 3)?;
                        }
                        Ok(())
                    }
                    Some("button") => {
                        let text = p.get("text").and_then(Value::as_str).unwrap_or("");
                        if text.is_empty() || text.chars().count() > 640 {
                            return Err(MetaError::param("param text must be 1 to 640 characters"));
                        }
                        let buttons = p.get("buttons").and_then(Value::as_array).cloned().unwrap_or_default();
                        if buttons.is_empty() {
                            return Err(MetaError::param("param buttons must have between 1 and 3 elements"));
                        }
                        Self::validate_buttons(&buttons, 3)
                    }
                    _ => Err(MetaError::param("Unsupported template_type")),
                }
            }
            _ => Err(MetaError::param("Invalid attachment type")),
        }
    }

    fn window_open(&self, account: &str, user: &str, tag: Option<&str>) -> Result<(), MetaError> {
        let last = self
            .conv_index
            .get(&(account.to_owned(), user.to_owned()))
            .and_then(|c| self.conversations.get(c))
            .and_then(|c| c.last_inbound_ms);
        let Some(last) = last else {
            return Err(MetaError::outside_window());
        };
        let age = self.now() - last;
        match tag {
            _ if age <= DAY_MS => Ok(()),
            Some("HUMAN_AGENT") if age <= 7 * DAY_MS => Ok(()),
            _ => Err(MetaError::outside_window()),
        }
    }

    /// The echo Meta sends for a message the app sent.
    fn echo(&mut self, account: &str, user: &str, mid: &str, msg: &Value) {
        let mut m = json!({"mid": mid, "is_echo": true});
        if let Some(t) = msg.get("text") {
            m["text"] = t.clone();
        }
        if let Some(list) = msg.get("attachments") {
            m["attachments"] = list.clone();
        }
        if let Some(a) = msg.get("attachment") {
            let mut a = a.clone();
            if let Some(id) = a.pointer("/payload/attachment_id").and_then(Value::as_str).map(str::to_owned)
                && let Some(up) = self.attachments.get(&id)
            {
                a["payload"] = json!({"url": up.url});
            }
            m["attachments"] = json!([a]);
        }
        let now = self.now();
        let item = json!({"sender": {"id": account}, "recipient": {"id": user}, "timestamp": now, "message": m});
        self.emit(account, "messages", item, false);
    }

    fn send(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let recipient = p.json("recipient").ok_or_else(|| MetaError::param("param recipient must be non-empty."))?;
        let tag = p.str("tag");
        if let Some(t) = tag.as_deref()
            && t != "HUMAN_AGENT"
        {
            return Err(MetaError::param("Param tag must be HUMAN_AGENT on Instagram"));
        }
        if let Some(cid) = recipient.get("comment_id").and_then(Value::as_str) {
            return self.private_reply(account, cid, p);
        }
        let user = recipient
            .get("id")
            .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())))
            .ok_or_else(|| MetaError::param("param recipient[id] must be non-empty."))?;
        if !self.users.contains_key(&user) {
            return Err(MetaError::no_user());
        }
        if self.accounts.get(account).is_some_and(|a| a.blocked.contains(&user)) {
            return Err(MetaError::user_unavailable());
        }
        if let Some(action) = p.str("sender_action") {
            self.window_open(account, &user, tag.as_deref())?;
            match action.as_str() {
                "typing_on" | "typing_off" | "mark_seen" => {}
                "react" | "unreact" => {
                    let payload = p.json("payload").unwrap_or(Value::Null);
                    let mid = payload.get("message_id").and_then(Value::as_str).unwrap_or("");
                    let conv = self.conv_index.get(&(account.to_owned(), user.clone())).cloned();
                    let msg = self.messages.get_mut(mid).filter(|m| Some(&m.conversation) == conv.as_ref());
                    let Some(msg) = msg else {
                        return Err(MetaError::param(
                            "param payload[message_id] is not a message of this conversation",
                        ));
                    };
                    if action == "react" {
                        let reaction = payload.get("reaction").and_then(Value::as_str).unwrap_or("love");
                        msg.reactions.insert(account.to_owned(), reaction.to_owned());
                    } else {
                        msg.reactions.remove(account);
                    }
                }
                _ => {
                    return Err(MetaError::param(
                        "param sender_action must be one of typing_on, typing_off, mark_seen, react, unreact",
                    ));
                }
            }
            return Ok(json!({"recipient_id": user}));
        }
        let msg = p.json("message").ok_or_else(|| MetaError::param("param message must be non-empty."))?;
        self.validate_message(account, &msg)?;
        self.window_open(account, &user, tag.as_deref())?;
        let (mid, _) = self.store_message(account, &user, false, msg.clone(), tag, None);
        self.echo(account, &user, &mid, &msg);
        Ok(json!({"recipient_id": user, "message_id": mid}))
    }

    fn private_reply(&mut self, account: &str, comment_id: &str, p: &Params) -> Result<Value, MetaError> {
        let msg = p.json("message").ok_or_else(|| MetaError::param("param message must be non-empty."))?;
        let Some(c) = self.comments.get(comment_id).filter(|c| c.account == account && !c.deleted) else {
            return Err(MetaError::param_sub(
                2534014,
                "Invalid comment_id: the comment does not exist on this account's media",
            ));
        };
        if c.from_id == account {
            return Err(MetaError::param_sub(2534014, "Cannot send a private reply to the account's own comment"));
        }
        if c.private_replied {
            return Err(MetaError::param_sub(2534025, "Only one private reply can be sent per comment"));
        }
        if self.now() - c.created_ms > 7 * DAY_MS {
            return Err(MetaError::outside_window());
        }
        let user = c.from_id.clone();
        self.validate_message(account, &msg)?;
        if self.accounts.get(account).is_some_and(|a| a.blocked.contains(&user)) {
            return Err(MetaError::user_unavailable());
        }
        if let Some(c) = self.comments.get_mut(comment_id) {
            c.private_replied = true;
        }
        let (mid, _) = self.store_message(account, &user, false, msg.clone(), None, Some(comment_id.to_owned()));
        self.echo(account, &user, &mid, &msg);
        Ok(json!({"recipient_id": user, "message_id": mid}))
    }

    fn upload_attachment(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let msg = p.json("message").ok_or_else(|| MetaError::param("param message must be non-empty."))?;
        let kind = msg.pointer("/attachment/type").and_then(Value::as_str).unwrap_or("");
        if !matches!(kind, "image" | "audio" | "video" | "file") {
            return Err(MetaError::param("param message[attachment][type] must be image, audio, video or file"));
        }
        let url = msg.pointer("/attachment/payload/url").and_then(Value::as_str).unwrap_or("");
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(MetaError::param("param message[attachment][payload][url] must be a URL"));
        }
        let id = self.new_id("182");
        self.attachments.insert(
            id.clone(),
            UploadedAttachment {
                id: id.clone(),
                account: account.to_owned(),
                kind: kind.to_owned(),
                url: url.to_owned(),
            },
        );
        Ok(json!({"attachment_id": id}))
    }

    // ---------- Conversations API ----------

    /// A thread the business never answered stays in the Requests folder; Meta stops returning
    /// it after 30 idle days.
    fn idle_request(&self, c: &crate::state::Conversation, now: i64) -> bool {
        let answered = c.messages.iter().any(|m| self.messages.get(m).is_some_and(|m| !m.inbound));
        !answered && now - c.updated_ms > 30 * DAY_MS
    }

    fn list_conversations(&self, account: &str, req: &GraphRequest) -> Result<Value, MetaError> {
        let now = self.now();
        let user = req.params.str("user_id");
        if let Some(u) = &user
            && !self.users.contains_key(u)
        {
            return Err(MetaError::no_user());
        }
        let mut convs: Vec<_> = self
            .conversations
            .values()
            .filter(|c| {
                c.account == account
                    && user.as_ref().is_none_or(|u| *u == c.user)
                    && !c.messages.is_empty()
                    && !self.idle_request(c, now)
            })
            .collect();
        convs.sort_by(|a, b| b.updated_ms.cmp(&a.updated_ms).then(b.id.cmp(&a.id)));
        let fields = req.params.str("fields");
        let items = convs
            .into_iter()
            .map(|c| {
                let mut o = Map::new();
                o.insert("id".into(), json!(c.id));
                o.insert("updated_time".into(), json!(self.time(c.updated_ms)));
                select(o, fields.as_deref(), &["id", "updated_time"])
            })
            .collect();
        Ok(self.paginate(items, req))
    }

    fn message_refs(&self, conv: &str) -> Vec<Value> {
        let Some(c) = self.conversations.get(conv) else {
            return Vec::new();
        };
        c.messages
            .iter()
            .rev()
            .filter_map(|m| self.messages.get(m))
            .map(|m| json!({"id": m.mid, "created_time": self.time(m.created_ms), "is_unsupported": false}))
            .collect()
    }

    fn conversation_messages_page(&self, conv: &str, req: &GraphRequest) -> Value {
        self.paginate(self.message_refs(conv), req)
    }

    fn get_conversation(&self, conv: &str, req: &GraphRequest) -> Result<Value, MetaError> {
        let c = self.conversations.get(conv).ok_or_else(|| MetaError::no_object(conv, "get"))?;
        let fields = req.params.str("fields");
        let mut o = Map::new();
        o.insert("id".into(), json!(c.id));
        o.insert("updated_time".into(), json!(self.time(c.updated_ms)));
        let wanted = fields.as_deref().map(crate::state::field_names).unwrap_or_default();
        if wanted.iter().any(|f| f == "messages") {
            let mut sub = req.clone();
            sub.self_url = format!("{}/messages", req.self_url);
            sub.query.retain(|(k, _)| k != "fields");
            o.insert("messages".into(), self.paginate(self.message_refs(conv), &sub));
        }
        if wanted.iter().any(|f| f == "participants") {
            o.insert("participants".into(), json!({"data": [self.participant(&c.account), self.participant(&c.user)]}));
        }
        Ok(select(o, fields.as_deref(), &["id", "updated_time"]))
    }

    fn participant(&self, id: &str) -> Value {
        let username = self
            .accounts
            .get(id)
            .map(|a| a.username.clone())
            .or_else(|| self.users.get(id).map(|u| u.username.clone()))
            .unwrap_or_default();
        json!({"username": username, "id": id})
    }

    fn get_message(&self, mid: &str, p: &Params) -> Result<Value, MetaError> {
        let m = self.messages.get(mid).ok_or_else(|| MetaError::no_object(mid, "get"))?;
        let conv = self.conversations.get(&m.conversation).ok_or_else(|| MetaError::no_object(mid, "get"))?;
        let pos_from_end = conv.messages.iter().rev().position(|x| x == mid).unwrap_or(usize::MAX);
        // Meta keeps details for the 20 most recent messages only.
        if pos_from_end >= 20 {
            return Err(MetaError::message_deleted());
        }
        let mut o = Map::new();
        o.insert("id".into(), json!(m.mid));
        o.insert("created_time".into(), json!(self.time(m.created_ms)));
        o.insert("from".into(), self.participant(&m.from));
        o.insert("to".into(), json!({"data": [self.participant(&m.to)]}));
        o.insert("message".into(), json!(m.text.clone().unwrap_or_default()));
        o.insert("is_unsupported".into(), json!(false));
        if !m.attachments.is_empty() {
            let data: Vec<Value> = m
                .attachments
                .iter()
                .map(|a| {
                    let url = a.pointer("/payload/url").cloned().unwrap_or(Value::Null);
                    match a.get("type").and_then(Value::as_str) {
                        Some("image") => json!({"image_data": {"url": url, "preview_url": url}}),
                        Some("video") => json!({"video_data": {"url": url, "preview_url": url}}),
                        _ => json!({"file_url": url}),
                    }
                })
                .collect();
            o.insert("attachments".into(), json!({"data": data}));
        }
        Ok(select(o, p.str("fields").as_deref(), &["id", "created_time"]))
    }

    // ---------- User Profile ----------

    fn user_profile(&self, account: &str, user: &str, p: &Params) -> Result<Value, MetaError> {
        let a = self.accounts.get(account).ok_or_else(|| MetaError::no_object(user, "get"))?;
        if a.blocked.contains(user) {
            return Err(MetaError::no_object(user, "get"));
        }
        if !a.consent.contains(user) {
            return Err(MetaError::consent_required());
        }
        let u = self.users.get(user).ok_or_else(|| MetaError::no_object(user, "get"))?;
        let mut o = Map::new();
        o.insert("id".into(), json!(u.id));
        o.insert("name".into(), json!(u.name));
        o.insert("username".into(), json!(u.username));
        o.insert("profile_pic".into(), json!(u.profile_pic));
        o.insert("follower_count".into(), json!(u.follower_count));
        o.insert("is_user_follow_business".into(), json!(u.is_user_follow_business));
        o.insert("is_business_follow_user".into(), json!(u.is_business_follow_user));
        o.insert("is_verified_user".into(), json!(u.is_verified_user));
        Ok(select(
            o,
            p.str("fields").as_deref(),
            &[
                "name",
                "username",
                "profile_pic",
                "follower_count",
                "is_user_follow_business",
                "is_business_follow_user",
            ],
        ))
    }

    // ---------- Moderation ----------

    fn moderate(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let ids = p
            .json("user_ids")
            .and_then(|v| v.as_array().cloned())
            .ok_or_else(|| MetaError::param("Invalid parameter: user_ids is required"))?;
        let actions = p
            .json("actions")
            .and_then(|v| v.as_array().cloned())
            .ok_or_else(|| MetaError::param("Invalid parameter: actions is required"))?;
        if ids.is_empty() || ids.len() > 10 {
            return Err(MetaError::param("Invalid parameter: up to 10 user ids can be provided in each request"));
        }
        if actions.is_empty() || actions.len() > 2 {
            return Err(MetaError::param("Invalid parameter: up to 2 actions can be specified in each request"));
        }
        let actions: Vec<String> = actions.iter().map(|a| a.as_str().unwrap_or("").to_owned()).collect();
        if actions.iter().any(|a| !matches!(a.as_str(), "block_user" | "unblock_user" | "move_to_spam")) {
            return Err(MetaError::param("Invalid parameter: Invalid actions"));
        }
        if actions.iter().any(|a| a == "block_user") && actions.iter().any(|a| a == "unblock_user") {
            return Err(MetaError::param(
                "Invalid parameter: unblock_user cannot be included in the same request as block_user",
            ));
        }
        let mut users = Vec::new();
        for id in &ids {
            let id =
                id.get("id").and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())));
            match id {
                Some(u) if self.users.contains_key(&u) => users.push(u),
                _ => {
                    return Err(MetaError::param("Invalid parameter: The user ID is not a valid PSID or IGSID"));
                }
            }
        }
        for u in &users {
            if !self.conv_index.contains_key(&(account.to_owned(), u.clone())) {
                return Err(MetaError::new(1, None, "Instagram Direct thread not found between business and consumer"));
            }
        }
        let Some(a) = self.accounts.get_mut(account) else {
            return Err(MetaError::new(1, None, "Failed to block Instagram user"));
        };
        for u in users {
            for action in &actions {
                match action.as_str() {
                    "block_user" => {
                        a.blocked.insert(u.clone());
                    }
                    "unblock_user" => {
                        a.blocked.remove(&u);
                    }
                    _ => {
                        a.spam.insert(u.clone());
                    }
                }
            }
        }
        Ok(json!({"success": "true"}))
    }

    // ---------- Comments ----------

    fn comment_json(&self, c: &Comment) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("id".into(), json!(c.id));
        o.insert("text".into(), json!(c.text));
        o.insert("timestamp".into(), json!(self.time(c.created_ms)));
        o.insert("from".into(), json!({"id": c.from_id, "username": c.from_username}));
        o.insert("username".into(), json!(c.from_username));
        o.insert("hidden".into(), json!(c.hidden));
        o.insert("like_count".into(), json!(0));
        o.insert("media".into(), json!({"id": c.media}));
        if let Some(p) = &c.parent {
            o.insert("parent_id".into(), json!(p));
        }
        o
    }

    fn list_comments(&self, node: &str, req: &GraphRequest, replies: bool) -> Result<Value, MetaError> {
        let ids: Vec<String> = if replies {
            self.comments.get(node).map(|c| c.replies.clone()).unwrap_or_default()
        } else {
            self.media.get(node).map(|m| m.comments.clone()).unwrap_or_default()
        };
        let fields = req.params.str("fields");
        let items = ids
            .iter()
            .filter_map(|id| self.comments.get(id))
            .filter(|c| !c.deleted)
            .map(|c| select(self.comment_json(c), fields.as_deref(), &["id", "text", "timestamp"]))
            .collect();
        Ok(self.paginate(items, req))
    }

    fn get_comment(&self, id: &str, p: &Params) -> Result<Value, MetaError> {
        let c = self.comments.get(id).ok_or_else(|| MetaError::no_object(id, "get"))?;
        Ok(select(self.comment_json(c), p.str("fields").as_deref(), &["id", "text", "timestamp"]))
    }

    fn reply(&mut self, comment_id: &str, p: &Params) -> Result<Value, MetaError> {
        let text = p
            .str("message")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| MetaError::param("The parameter message is required"))?;
        let c = self.comments.get(comment_id).ok_or_else(|| MetaError::no_object(comment_id, "post"))?.clone();
        if c.parent.is_some() {
            return Err(MetaError::param("Replies can only be made to top-level comments"));
        }
        if c.hidden {
            return Err(MetaError::param("Cannot reply to a hidden comment"));
        }
        if c.live {
            return Err(MetaError::param("Cannot reply to a live comment"));
        }
        if self.media.get(&c.media).is_some_and(|m| !m.comment_enabled) {
            return Err(MetaError::param("Comments are disabled on this media"));
        }
        let username = self.accounts.get(&c.account).map(|a| a.username.clone()).unwrap_or_default();
        let id = self.new_id("180");
        let now = self.now();
        self.comments.insert(
            id.clone(),
            Comment {
                id: id.clone(),
                media: c.media.clone(),
                account: c.account.clone(),
                parent: Some(comment_id.to_owned()),
                from_id: c.account.clone(),
                from_username: username,
                text,
                hidden: false,
                deleted: false,
                live: false,
                created_ms: now,
                replies: Vec::new(),
                private_replied: false,
            },
        );
        if let Some(parent) = self.comments.get_mut(comment_id) {
            parent.replies.push(id.clone());
        }
        Ok(json!({"id": id}))
    }

    fn hide_comment(&mut self, account: &str, id: &str, p: &Params) -> Result<Value, MetaError> {
        let hide = p.bool("hide").ok_or_else(|| MetaError::param("The parameter hide is required"))?;
        let c = self.comments.get_mut(id).ok_or_else(|| MetaError::no_object(id, "post"))?;
        if c.from_id == account {
            return Err(MetaError::param("Comments made by the media owner cannot be hidden"));
        }
        c.hidden = hide;
        Ok(json!({"success": true}))
    }

    fn media_object(&self, id: &str, p: &Params) -> Value {
        let Some(m) = self.media.get(id) else {
            return json!({"id": id});
        };
        let mut o = Map::new();
        o.insert("id".into(), json!(m.id));
        o.insert("caption".into(), json!(m.caption));
        o.insert("media_type".into(), json!(m.media_type));
        o.insert("media_product_type".into(), json!(m.media_product_type));
        o.insert("timestamp".into(), json!(self.time(m.created_ms)));
        o.insert(
            "comments_count".into(),
            json!(m.comments.iter().filter(|c| self.comments.get(*c).is_some_and(|c| !c.deleted)).count()),
        );
        o.insert("like_count".into(), json!(0));
        o.insert("comment_enabled".into(), json!(m.comment_enabled));
        o.insert("permalink".into(), json!(format!("https://www.instagram.com/p/emu{}/", m.id)));
        select(o, p.str("fields").as_deref(), &["id", "media_type", "caption", "timestamp"])
    }

    // ---------- Content publishing ----------

    fn create_container(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let now = self.now();
        let limit = self.cfg.rate_limits.containers_per_24h as usize;
        if let Some(a) = self.accounts.get_mut(account) {
            a.containers_created.retain(|t| now - *t < DAY_MS);
            if a.containers_created.len() >= limit {
                return Err(MetaError::new(
                    4,
                    None,
                    "(#4) Application request limit reached: too many media containers created in 24 hours",
                ));
            }
        }
        let media_type = p.str("media_type").unwrap_or_else(|| "IMAGE".into()).to_uppercase();
        let caption = p.str("caption");
        if let Some(c) = &caption {
            if c.chars().count() > 2200 {
                return Err(MetaError::new(36004, Some(2207010), "The caption is too long: at most 2200 characters"));
            }
            if c.split_whitespace().filter(|w| w.starts_with('@')).count() > 20 {
                return Err(MetaError::new(100, Some(2207040), "(#100) Too many tags: at most 20 @mentions"));
            }
        }
        let is_url =
            |u: &Option<String>| u.as_deref().is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"));
        let image_url = p.str("image_url");
        let video_url = p.str("video_url");
        let carousel_item = p.bool("is_carousel_item").unwrap_or(false);
        let mut children = Vec::new();
        match media_type.as_str() {
            "IMAGE" => {
                if !is_url(&image_url) {
                    return Err(MetaError::new(
                        9004,
                        Some(2207052),
                        "The media could not be fetched from this URI: image_url is missing or invalid",
                    ));
                }
            }
            "REELS" | "STORIES" => {
                let resumable = p.str("upload_type").as_deref() == Some("resumable");
                if !(is_url(&video_url) || resumable || (media_type == "STORIES" && is_url(&image_url))) {
                    return Err(MetaError::new(
                        9004,
                        Some(2207052),
                        "The media could not be fetched from this URI: video_url is missing or invalid",
                    ));
                }
            }
            "VIDEO" => {
                if !carousel_item {
                    return Err(MetaError::param(
                        "The VIDEO media type is no longer supported for feed posts; use REELS",
                    ));
                }
                if !is_url(&video_url) {
                    return Err(MetaError::new(9004, Some(2207052), "The media could not be fetched from this URI"));
                }
            }
            "CAROUSEL" => {
                let raw = p.json("children").unwrap_or(Value::Null);
                children = match raw {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())))
                        .collect(),
                    Value::String(s) => s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect(),
                    Value::Number(n) => vec![n.to_string()],
                    _ => Vec::new(),
                };
                if children.len() < 2 || children.len() > 10 {
                    return Err(MetaError::new(100, Some(2207028), "(#100) Carousels need between 2 and 10 children"));
                }
                for ch in &children {
                    let ok = self.containers.get(ch).is_some_and(|c| c.account == account && c.is_carousel_item);
                    if !ok {
                        return Err(MetaError::param(format!(
                            "The carousel child {ch} is not a carousel item container of this account"
                        )));
                    }
                }
            }
            other => {
                return Err(MetaError::param(format!("media_type {other} is not supported")));
            }
        }
        let id = self.new_id("181");
        self.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                account: account.to_owned(),
                media_type,
                created_ms: now,
                forced: None,
                published: None,
                children,
                is_carousel_item: carousel_item,
                caption,
            },
        );
        if let Some(a) = self.accounts.get_mut(account) {
            a.containers_created.push(now);
        }
        Ok(json!({"id": id}))
    }

    /// IN_PROGRESS for the configured delay, then FINISHED; EXPIRED after 24 h unpublished;
    /// a carousel is as far as its least advanced child.
    pub fn status_of(&self, id: &str) -> &'static str {
        let Some(c) = self.containers.get(id) else {
            return "ERROR";
        };
        if c.published.is_some() {
            return "PUBLISHED";
        }
        if let Some(f) = c.forced.as_deref() {
            return match f {
                "ERROR" => "ERROR",
                "EXPIRED" => "EXPIRED",
                "FINISHED" => "FINISHED",
                _ => "IN_PROGRESS",
            };
        }
        let age = self.now() - c.created_ms;
        if age >= DAY_MS {
            return "EXPIRED";
        }
        if !c.children.is_empty() {
            let kids: Vec<&str> = c.children.iter().map(|ch| self.status_of(ch)).collect();
            if kids.contains(&"ERROR") {
                return "ERROR";
            }
            if kids.contains(&"EXPIRED") {
                return "EXPIRED";
            }
            if kids.contains(&"IN_PROGRESS") {
                return "IN_PROGRESS";
            }
        }
        if age < self.cfg.container_delay_ms as i64 { "IN_PROGRESS" } else { "FINISHED" }
    }

    fn container_status(&self, id: &str, p: &Params) -> Result<Value, MetaError> {
        let code = self.status_of(id);
        let status = match code {
            "FINISHED" => "Finished: Media has been uploaded and it is ready to be published.",
            "IN_PROGRESS" => "In Progress: Media is still being processed.",
            "PUBLISHED" => "Published: Media has been published.",
            "EXPIRED" => "Expired: The container was not published within 24 hours and has expired.",
            _ => "Error: Media upload has failed with error code 2207052.",
        };
        let mut o = Map::new();
        o.insert("id".into(), json!(id));
        o.insert("status_code".into(), json!(code));
        o.insert("status".into(), json!(status));
        Ok(select(o, p.str("fields").as_deref(), &["id"]))
    }

    fn publish(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let cid = p.str("creation_id").ok_or_else(|| MetaError::param("The parameter creation_id is required"))?;
        let Some(c) = self.containers.get(&cid).filter(|c| c.account == account).cloned() else {
            return Err(MetaError::new(
                24,
                Some(2207008),
                "The media container does not exist or is not available yet",
            ));
        };
        if c.is_carousel_item {
            return Err(MetaError::param("A carousel item cannot be published on its own"));
        }
        match self.status_of(&cid) {
            "FINISHED" => {}
            "IN_PROGRESS" => {
                return Err(MetaError::new(
                    9007,
                    Some(2207027),
                    "Media ID is not available: the media is not ready for publishing, please wait",
                ));
            }
            "EXPIRED" => {
                return Err(MetaError::new(-2, Some(2207020), "The media container has expired; create a new one"));
            }
            "PUBLISHED" => {
                return Err(MetaError::param("The media container has already been published"));
            }
            _ => {
                return Err(MetaError::new(9004, Some(2207052), "The media could not be fetched from this URI"));
            }
        }
        let now = self.now();
        let quota = self.cfg.rate_limits.publishes_per_24h as usize;
        let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "post"))?;
        a.publishes.retain(|t| now - *t < DAY_MS);
        if a.publishes.len() >= quota {
            return Err(MetaError::publish_limit());
        }
        a.publishes.push(now);
        let id = self.new_id("179");
        let product = match c.media_type.as_str() {
            "REELS" => "REELS",
            "STORIES" => "STORY",
            _ => "FEED",
        };
        let media_type = match c.media_type.as_str() {
            "REELS" => "VIDEO",
            "CAROUSEL" => "CAROUSEL_ALBUM",
            "STORIES" if c.caption.is_none() => "IMAGE",
            other => other,
        }
        .to_owned();
        self.media.insert(
            id.clone(),
            Media {
                id: id.clone(),
                account: account.to_owned(),
                media_type,
                media_product_type: product.into(),
                caption: c.caption.clone(),
                comment_enabled: true,
                created_ms: now,
                comments: Vec::new(),
                carousel_child: false,
            },
        );
        if let Some(c) = self.containers.get_mut(&cid) {
            c.published = Some(id.clone());
        }
        Ok(json!({"id": id}))
    }

    fn publishing_limit(&self, account: &str, p: &Params) -> Value {
        let now = self.now();
        let used =
            self.accounts.get(account).map(|a| a.publishes.iter().filter(|t| now - **t < DAY_MS).count()).unwrap_or(0);
        let mut o = Map::new();
        o.insert("quota_usage".into(), json!(used));
        o.insert(
            "config".into(),
            json!({"quota_total": self.cfg.rate_limits.publishes_per_24h, "quota_duration": 86400}),
        );
        let fields = p.str("fields");
        let item = match fields.as_deref() {
            Some(f) if !f.is_empty() => {
                let names = crate::state::field_names(f);
                Value::Object(o.into_iter().filter(|(k, _)| names.contains(k)).collect())
            }
            _ => json!({"quota_usage": used}),
        };
        json!({"data": [item]})
    }

    // ---------- Insights ----------

    fn series_value(account: &str, metric: &str, day: i64) -> u64 {
        // FNV-1a: the same account, metric and day always give the same number.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in account.bytes().chain(metric.bytes()).chain(day.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h % 1000
    }

    fn title(metric: &str) -> String {
        let mut t = metric.replace('_', " ");
        if let Some(f) = t.get_mut(0..1) {
            f.make_ascii_uppercase();
        }
        t
    }

    fn account_insights(&self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let metrics: Vec<String> = p
            .str("metric")
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        if metrics.is_empty() {
            return Err(MetaError::param("The parameter metric is required"));
        }
        for m in &metrics {
            if RETIRED_METRICS.contains(&m.as_str()) {
                return Err(MetaError::param(format!(
                    "metric[{m}] is no longer supported in this API version; use views"
                )));
            }
            if !SUPPORTED_ACCOUNT_METRICS.contains(&m.as_str()) {
                return Err(MetaError::param(format!(
                    "metric[0] must be one of the following values: {}",
                    SUPPORTED_ACCOUNT_METRICS.join(", ")
                )));
            }
        }
        let period = p.str("period").ok_or_else(|| MetaError::param("The parameter period is required"))?;
        if !matches!(period.as_str(), "day" | "week" | "days_28" | "month" | "lifetime" | "total_over_range") {
            return Err(MetaError::param(
                "period must be one of day, week, days_28, month, lifetime, total_over_range",
            ));
        }
        let metric_type = p.str("metric_type").unwrap_or_else(|| "time_series".into());
        if metric_type == "total_value" && metrics.iter().any(|m| m == "follower_count") {
            return Err(MetaError::param("follower_count does not support the total_value metric_type"));
        }
        let now_s = self.now() / 1000;
        let until = p.str("until").and_then(|s| s.parse::<i64>().ok()).unwrap_or(now_s);
        let since = p.str("since").and_then(|s| s.parse::<i64>().ok()).unwrap_or(until - 2 * 86_400);
        if until < since || until - since > 30 * 86_400 {
            return Err(MetaError::param("There cannot be more than 30 days (2592000 s) between since and until"));
        }
        let followers = self.accounts.get(account).map(|a| a.followers).unwrap_or(0);
        let mut data = Vec::new();
        for m in &metrics {
            if followers < 100 && matches!(m.as_str(), "follower_count" | "online_followers") {
                continue;
            }
            let first_day = since.div_euclid(86_400) + 1;
            let last_day = until.div_euclid(86_400);
            let days: Vec<i64> = (first_day..=last_day.max(first_day)).collect();
            let id = format!("{account}/insights/{m}/{period}");
            if metric_type == "total_value" {
                let total: u64 = days.iter().map(|d| Self::series_value(account, m, *d)).sum();
                data.push(json!({"name": m, "period": period, "title": Self::title(m), "description": format!("{} of the account", Self::title(m)), "total_value": {"value": total}, "id": id}));
            } else {
                let values: Vec<Value> = days
                    .iter()
                    .map(|d| json!({"value": Self::series_value(account, m, *d), "end_time": self.time((d * 86_400 + 8 * 3600) * 1000)}))
                    .collect();
                data.push(json!({"name": m, "period": period, "values": values, "title": Self::title(m), "description": format!("{} of the account", Self::title(m)), "id": id}));
            }
        }
        Ok(json!({"data": data}))
    }

    fn media_insights(&self, media: &str, p: &Params) -> Result<Value, MetaError> {
        let metrics: Vec<String> = p
            .str("metric")
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        if metrics.is_empty() {
            return Err(MetaError::param("The parameter metric is required"));
        }
        let m = self.media.get(media).ok_or_else(|| MetaError::no_object(media, "get"))?;
        if m.carousel_child {
            return Err(MetaError::param("Insights are not available for carousel children"));
        }
        if m.media_product_type == "STORY" && self.now() - m.created_ms > DAY_MS {
            return Err(MetaError::new(10, None, "(#10) Not enough viewers for the media to show insights"));
        }
        let mut data = Vec::new();
        for metric in &metrics {
            if RETIRED_METRICS.contains(&metric.as_str()) || !SUPPORTED_MEDIA_METRICS.contains(&metric.as_str()) {
                return Err(MetaError::param(format!(
                    "The Media Insights API does not support the {metric} metric for this media product type"
                )));
            }
            data.push(json!({
                "name": metric, "period": "lifetime",
                "values": [{"value": Self::series_value(media, metric, 0)}],
                "title": Self::title(metric),
                "description": format!("The number of {} on your media.", metric.replace('_', " ")),
                "id": format!("{media}/insights/{metric}/lifetime"),
            }));
        }
        Ok(json!({"data": data}))
    }

    // ---------- Messenger profile, welcome flows, subscriptions ----------

    fn profile_fields(p: &Params) -> Vec<String> {
        let raw = p.json("fields").unwrap_or(Value::Null);
        match raw {
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            Value::String(s) => s
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|x| x.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
                .filter(|x| !x.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn messenger_profile(&mut self, account: &str, method: &Method, p: &Params) -> Result<Value, MetaError> {
        let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "get"))?;
        if method == Method::GET {
            let fields = Self::profile_fields(p);
            if fields.is_empty() {
                return Err(MetaError::param("The parameter fields is required"));
            }
            if fields.len() == 1 && fields[0] == "ice_breakers" {
                return Ok(json!({"data": a.ice_breakers}));
            }
            let mut o = Map::new();
            for f in &fields {
                match f.as_str() {
                    "ice_breakers" if !a.ice_breakers.is_empty() => {
                        o.insert(f.clone(), json!(a.ice_breakers));
                    }
                    "persistent_menu" if !a.persistent_menu.is_empty() => {
                        o.insert(f.clone(), json!(a.persistent_menu));
                    }
                    "ice_breakers" | "persistent_menu" => {}
                    other => {
                        return Err(MetaError::param(format!("Unsupported messenger_profile field {other}")));
                    }
                }
            }
            return Ok(if o.is_empty() { json!({"data": []}) } else { json!({"data": [o]}) });
        }
        if method == Method::DELETE {
            let fields = Self::profile_fields(p);
            if fields.is_empty() {
                return Err(MetaError::param("The parameter fields is required"));
            }
            for f in fields {
                match f.as_str() {
                    "ice_breakers" => a.ice_breakers.clear(),
                    "persistent_menu" => a.persistent_menu.clear(),
                    other => {
                        return Err(MetaError::param(format!("Unsupported messenger_profile field {other}")));
                    }
                }
            }
            return Ok(json!({"result": "success"}));
        }
        let ib = p.json("ice_breakers");
        let pm = p.json("persistent_menu");
        if ib.is_none() && pm.is_none() {
            return Err(MetaError::param("Requires one of the params: ice_breakers, persistent_menu"));
        }
        if let Some(ib) = ib {
            let items =
                ib.as_array().cloned().ok_or_else(|| MetaError::param("param ice_breakers must be an array"))?;
            // The seed's short form (a list of questions) is the default locale.
            let locales: Vec<Value> = if items.iter().all(|i| i.get("question").is_some()) {
                vec![json!({"call_to_actions": items, "locale": "default"})]
            } else {
                items
            };
            for l in &locales {
                let qs = l
                    .get("call_to_actions")
                    .and_then(Value::as_array)
                    .ok_or_else(|| MetaError::param("ice_breakers need call_to_actions"))?;
                if qs.is_empty() || qs.len() > 4 {
                    return Err(MetaError::param("Ice breakers: between 1 and 4 questions per locale"));
                }
                for q in qs {
                    if q.get("question").and_then(Value::as_str).is_none_or(str::is_empty)
                        || q.get("payload").and_then(Value::as_str).is_none()
                    {
                        return Err(MetaError::param("Each ice breaker needs a question and a payload"));
                    }
                }
            }
            a.ice_breakers = locales;
        }
        if let Some(pm) = pm {
            let locales =
                pm.as_array().cloned().ok_or_else(|| MetaError::param("param persistent_menu must be an array"))?;
            for l in &locales {
                let buttons = l.get("call_to_actions").and_then(Value::as_array).cloned().unwrap_or_default();
                if buttons.is_empty() {
                    return Err(MetaError::param("persistent_menu needs call_to_actions"));
                }
                Self::validate_buttons(&buttons, 20)?;
            }
            a.persistent_menu = locales;
        }
        Ok(json!({"result": "success"}))
    }

    fn flow_json(&self, f: &Flow) -> Value {
        json!({
            "name": f.name,
            "eligible_platforms": f.platforms,
            "welcome_message_flow": f.flow.to_string(),
            "last_update_time": self.time(f.updated_ms),
            "is_used_in_ad": false,
            "id": f.id,
        })
    }

    fn validate_flow(&self, account: &str, flow: &Value) -> Result<(), MetaError> {
        let steps = flow
            .as_array()
            .ok_or_else(|| MetaError::param("param welcome_message_flow must be an array of messages"))?;
        if steps.is_empty() {
            return Err(MetaError::param("param welcome_message_flow must not be empty"));
        }
        for s in steps {
            let m =
                s.get("message").ok_or_else(|| MetaError::param("Each welcome_message_flow step needs a message"))?;
            self.validate_message(account, m)?;
        }
        Ok(())
    }

    fn welcome_flows(&mut self, account: &str, method: &Method, p: &Params) -> Result<Value, MetaError> {
        let flow_id = p.str("flow_id");
        let cursors = json!({"cursors": {"before": "QVFIUz0", "after": "QVFIUz0"}});
        let now = self.now();
        if method == Method::GET {
            let a = self.accounts.get(account).ok_or_else(|| MetaError::no_object(account, "get"))?;
            let data: Vec<Value> = match &flow_id {
                Some(id) => vec![
                    self.flow_json(a.flows.get(id).ok_or_else(|| MetaError::param(format!("Invalid flow_id {id}")))?),
                ],
                None => a.flows.values().map(|f| self.flow_json(f)).collect(),
            };
            return Ok(json!({"data": data, "paging": cursors}));
        }
        if method == Method::DELETE {
            let id = flow_id.ok_or_else(|| MetaError::param("The parameter flow_id is required"))?;
            let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "delete"))?;
            a.flows.remove(&id).ok_or_else(|| MetaError::param(format!("Invalid flow_id {id}")))?;
            return Ok(json!({"success": true}));
        }
        let flow = p.json("welcome_message_flow");
        if let Some(f) = &flow {
            self.validate_flow(account, f)?;
        }
        let name = p.str("name");
        let platforms: Vec<String> = p
            .json("eligible_platforms")
            .and_then(|v| v.as_array().cloned())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_uppercase)).collect())
            .unwrap_or_else(|| vec!["INSTAGRAM".into()]);
        if let Some(id) = flow_id {
            let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "post"))?;
            let f = a.flows.get_mut(&id).ok_or_else(|| MetaError::param(format!("Invalid flow_id {id}")))?;
            if let Some(n) = name {
                f.name = n;
            }
            if let Some(fl) = flow {
                f.flow = fl;
            }
            f.updated_ms = now;
            return Ok(json!({"success": true}));
        }
        let name = name.filter(|n| !n.is_empty()).ok_or_else(|| MetaError::param("The parameter name is required"))?;
        let flow = flow.ok_or_else(|| MetaError::param("The parameter welcome_message_flow is required"))?;
        let id = self.new_id("183");
        let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "post"))?;
        a.flows.insert(id.clone(), Flow { id: id.clone(), name, platforms, flow, updated_ms: now });
        Ok(json!({"flow_id": id}))
    }

    fn subscribed_apps(&mut self, account: &str, method: &Method, p: &Params) -> Result<Value, MetaError> {
        let (app_id, app_name) = (self.cfg.app_id.clone(), self.cfg.app_name.clone());
        let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "get"))?;
        if method == Method::GET {
            return Ok(if a.subscribed_fields.is_empty() {
                json!({"data": []})
            } else {
                json!({"data": [{"subscribed_fields": a.subscribed_fields, "id": app_id, "name": app_name}]})
            });
        }
        if method == Method::DELETE {
            a.subscribed_fields.clear();
            return Ok(json!({"success": true}));
        }
        let fields: Vec<String> = match p.json("subscribed_fields") {
            Some(Value::Array(v)) => v.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            Some(Value::String(s)) => s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect(),
            _ => {
                return Err(MetaError::param("The parameter subscribed_fields is required"));
            }
        };
        if fields.is_empty() {
            return Err(MetaError::param("The parameter subscribed_fields is required"));
        }
        if let Some(bad) = fields.iter().find(|f| !WEBHOOK_FIELDS.contains(&f.as_str())) {
            return Err(MetaError::param(format!(
                "Param subscribed_fields[{bad}] must be one of {{{}}}",
                WEBHOOK_FIELDS.join(", ")
            )));
        }
        a.subscribed_fields = fields.into_iter().collect();
        Ok(json!({"success": true}))
    }

    // ---------- Accounts, Pages, tokens ----------

    fn account_object(&self, account: &str, p: &Params) -> Value {
        let Some(a) = self.accounts.get(account) else {
            return json!({"id": account});
        };
        let mut o = Map::new();
        o.insert("id".into(), json!(a.ig_id));
        o.insert("user_id".into(), json!(a.ig_id));
        o.insert("username".into(), json!(a.username));
        o.insert("name".into(), json!(a.name));
        o.insert("account_type".into(), json!("BUSINESS"));
        o.insert("followers_count".into(), json!(a.followers));
        o.insert("media_count".into(), json!(self.media.values().filter(|m| m.account == a.ig_id).count()));
        select(o, p.str("fields").as_deref(), &["id", "username"])
    }

    fn page_json(&self, page: &str) -> Map<String, Value> {
        let mut o = Map::new();
        if let Some(pg) = self.pages.get(page) {
            o.insert("name".into(), json!(pg.name));
            o.insert("access_token".into(), json!(pg.token));
            o.insert("instagram_business_account".into(), json!({"id": pg.ig_id}));
            o.insert("id".into(), json!(pg.id));
            o.insert(
                "tasks".into(),
                json!(["ANALYZE", "ADVERTISE", "MESSAGING", "MODERATE", "CREATE_CONTENT", "MANAGE"]),
            );
        }
        o
    }

    fn page_object(&self, page: &str, p: &Params) -> Value {
        select(self.page_json(page), p.str("fields").as_deref(), &["name", "id"])
    }

    fn me_accounts(&self, user: &str, req: &GraphRequest) -> Value {
        let fields = req.params.str("fields");
        let mut pages = self.fb_users.get(user).cloned().unwrap_or_default();
        pages.sort();
        let items = pages
            .iter()
            .map(|p| select(self.page_json(p), fields.as_deref(), &["name", "access_token", "id", "tasks"]))
            .collect();
        self.paginate(items, req)
    }

    fn refresh_token(&mut self, req: &GraphRequest) -> Result<Value, MetaError> {
        if req.params.str("grant_type").as_deref() != Some("ig_refresh_token") {
            return Err(MetaError::param("grant_type must be ig_refresh_token"));
        }
        let token = req.token.clone().unwrap_or_default();
        let t = self.check_token(&token)?;
        if t.kind != TokenKind::Instagram {
            return Err(MetaError::param("Only long-lived Instagram User tokens can be refreshed"));
        }
        let now = self.now();
        if now - t.issued_ms < DAY_MS {
            return Err(MetaError::param("The access token must be at least 24 hours old to be refreshed"));
        }
        let n = self.next_seq();
        let new = format!("IGAArefreshed{n:010}");
        let expires_in: i64 = 60 * 24 * 3600;
        self.tokens.insert(
            new.clone(),
            Token {
                kind: TokenKind::Instagram,
                subject: t.subject,
                state: TokenState::Valid,
                issued_ms: now,
                expires_ms: Some(now + expires_in * 1000),
            },
        );
        Ok(json!({"access_token": new, "token_type": "bearer", "expires_in": expires_in}))
    }
}

//! The Graph API surface: routing of `/{version}/{node}[/{edge}]`, token and ownership checks,
//! and every endpoint with Meta's rules and error codes. This module routes and dispatches;
//! the endpoints live in one file per API family, mirroring `crates/graph/src/`.

use crate::meta::MetaError;
use crate::state::{
    Comment, Container, DAY_MS, Flow, LimitClass, Media, State, Token, TokenKind, TokenState, UploadedAttachment,
    select,
};
use http::Method;
use serde_json::{Map, Value, json};

mod accounts;
mod comments;
mod conversations;
mod insights;
mod messaging;
mod moderation;
mod profile;
mod publishing;

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
    pub(crate) fn allowed_accounts(&self, caller: &Token) -> Vec<String> {
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

    pub(crate) fn find_node(&self, id: &str, caller: &Token) -> Option<Node> {
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
    pub(crate) fn owner(&self, node: &Node, caller: &Token, allowed: &[String]) -> Option<String> {
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

    pub(crate) fn paginate(&self, items: Vec<Value>, req: &GraphRequest) -> Value {
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
}

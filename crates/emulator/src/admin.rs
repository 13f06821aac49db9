//! The admin API (`/_admin/...`): set-up, simulated Instagram users, fault injection, clock,
//! inspection. Documented in the crate README.

use crate::config::AccountSeed;
use crate::server::App;
use crate::state::{Comment, Fault, IgUser, Media, State, TokenState};
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// An admin call that cannot be done (unknown id, blocked user, bad body).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        (status, axum::Json(json!({"error": self.to_string()}))).into_response()
    }
}

type AdminResult = Result<axum::Json<Value>, AdminError>;

/// A JSON body whatever its `Content-Type`: the admin API is driven by people with
/// `curl -d '{…}'`, which sends a form content type, and axum's `Json` answers that with 415.
/// An empty body is `{}` (every field is optional somewhere); anything else must be JSON.
struct JsonBody(Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = AdminError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AdminError::BadRequest(format!("cannot read the body: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(json!({})));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AdminError::BadRequest(format!("the body is not JSON: {e}")))
    }
}

fn body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, AdminError> {
    serde_json::from_value(v).map_err(|e| AdminError::BadRequest(e.to_string()))
}

pub fn routes() -> Router<App> {
    Router::new()
        .route("/_admin/health", get(|| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/_admin/accounts", post(add_account))
        .route("/_admin/accounts/{id}", get(get_account))
        .route("/_admin/users", post(add_user))
        .route("/_admin/media", post(add_media))
        .route("/_admin/tokens", post(set_token))
        .route("/_admin/clock", get(get_clock).post(set_clock))
        .route("/_admin/containers/{id}", post(set_container))
        .route("/_admin/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/_admin/webhook", post(set_webhook))
        .route("/_admin/webhook/verify", post(verify_webhook))
        .route("/_admin/simulate/{kind}", post(simulate))
        .route("/_admin/conversations", get(list_conversations))
        .route("/_admin/messages", get(list_messages))
        .route("/_admin/calls", get(calls))
        .route("/_admin/webhooks/events", get(events))
        .route("/_admin/webhooks/deliveries", get(deliveries))
        .layer(axum::middleware::from_fn(refuse_cross_site))
}

/// The admin API has no authentication (development only, on loopback), so a web page the
/// developer opens must not be able to drive it: browsers say where a request comes from, tools
/// like curl say nothing.
async fn refuse_cross_site(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match cross_site(req.headers()) {
        Some(why) if req.uri().path().starts_with("/_admin") => AdminError::Forbidden(why).into_response(),
        _ => next.run(req).await,
    }
}

/// Why a request comes from another site, if it does: `Sec-Fetch-Site: cross-site`, or an
/// `Origin` that is not the emulator's own (`http://` + the `Host` it was called as, a loopback
/// name or an IP address, so a DNS-rebinding name does not count as own).
pub fn cross_site(headers: &http::HeaderMap) -> Option<String> {
    let fetch_site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    if fetch_site.is_some_and(|v| v.eq_ignore_ascii_case(b"cross-site")) {
        return Some("the admin API refuses cross-site browser requests (Sec-Fetch-Site: cross-site)".into());
    }
    let origin = headers.get(http::header::ORIGIN)?;
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let own = is_local_host(host) && origin.eq_ignore_ascii_case(&format!("http://{host}"));
    (!own).then(|| format!("the admin API refuses requests from origin {origin} (only http://{host} is its own)"))
}

fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewAccount {
    ig_id: Option<String>,
    username: Option<String>,
    page_id: Option<String>,
    token: Option<String>,
    page_token: Option<String>,
    user_token: Option<String>,
    followers: Option<u64>,
}

async fn add_account(AxState(app): AxState<App>, JsonBody(v): JsonBody) -> AdminResult {
    let b: NewAccount = body(v)?;
    let mut st = app.lock();
    let n = st.next_seq();
    let seed = AccountSeed {
        ig_id: b.ig_id.unwrap_or_else(|| format!("178414{n:011}")),
        username: b.username.unwrap_or_else(|| format!("business_{n}")),
        page_id: b.page_id.unwrap_or_else(|| format!("10{n:013}")),
        token: b.token.unwrap_or_else(|| format!("IGAAemulator{n:08}")),
        page_token: b.page_token.unwrap_or_else(|| format!("EAApage{n:08}")),
        user_token: b.user_token.unwrap_or_else(|| format!("EAAuser{n:08}")),
        followers: b.followers.unwrap_or(1_000),
    };
    if st.accounts.contains_key(&seed.ig_id) {
        return Err(AdminError::Conflict(format!("account {} exists", seed.ig_id)));
    }
    st.add_account(seed.clone());
    // Spelled out: the seed's serialization redacts its tokens (for `igrelay config`), and the
    // developer who created the account needs them.
    Ok(axum::Json(serde_json::json!({
        "ig_id": seed.ig_id,
        "username": seed.username,
        "page_id": seed.page_id,
        "token": seed.token,
        "page_token": seed.page_token,
        "user_token": seed.user_token,
        "followers": seed.followers,
    })))
}

async fn get_account(AxState(app): AxState<App>, Path(id): Path<String>) -> AdminResult {
    let st = app.lock();
    let a = st.account_of(&id).ok_or_else(|| AdminError::NotFound(id.clone()))?;
    Ok(axum::Json(serde_json::to_value(a).unwrap_or(Value::Null)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewUser {
    id: Option<String>,
    username: Option<String>,
    name: Option<String>,
    follower_count: Option<u64>,
    is_verified_user: Option<bool>,
    is_user_follow_business: Option<bool>,
    is_business_follow_user: Option<bool>,
    profile_pic: Option<String>,
}

async fn add_user(AxState(app): AxState<App>, JsonBody(v): JsonBody) -> AdminResult {
    let b: NewUser = body(v)?;
    let mut st = app.lock();
    let id = st.ensure_user(b.id.as_deref(), b.username.as_deref());
    let u: &mut IgUser = st.users.get_mut(&id).ok_or_else(|| AdminError::NotFound(id.clone()))?;
    if let Some(x) = b.name {
        u.name = Some(x);
    }
    if let Some(x) = b.follower_count {
        u.follower_count = x;
    }
    if let Some(x) = b.is_verified_user {
        u.is_verified_user = x;
    }
    if let Some(x) = b.is_user_follow_business {
        u.is_user_follow_business = x;
    }
    if let Some(x) = b.is_business_follow_user {
        u.is_business_follow_user = x;
    }
    if let Some(x) = b.profile_pic {
        u.profile_pic = Some(x);
    }
    Ok(axum::Json(serde_json::to_value(&*u).unwrap_or(Value::Null)))
}

fn account_or_default(st: &State, account: Option<String>) -> Result<String, AdminError> {
    match account {
        Some(a) => st.account_of(&a).map(|a| a.ig_id.clone()).ok_or(AdminError::NotFound(a)),
        None => st.default_account().ok_or_else(|| AdminError::NotFound("no account".into())),
    }
}

/// Creates a published media object directly (without the container life-cycle).
pub fn create_media(
    st: &mut State,
    account: &str,
    media_type: Option<String>,
    product: Option<String>,
    caption: Option<String>,
) -> String {
    let id = st.new_id("179");
    let now = st.now();
    st.media.insert(
        id.clone(),
        Media {
            id: id.clone(),
            account: account.to_owned(),
            media_type: media_type.unwrap_or_else(|| "IMAGE".into()),
            media_product_type: product.unwrap_or_else(|| "FEED".into()),
            caption,
            comment_enabled: true,
            created_ms: now,
            comments: Vec::new(),
            carousel_child: false,
        },
    );
    id
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewMedia {
    account: Option<String>,
    media_type: Option<String>,
    media_product_type: Option<String>,
    caption: Option<String>,
}

async fn add_media(AxState(app): AxState<App>, JsonBody(v): JsonBody) -> AdminResult {
    let b: NewMedia = body(v)?;
    let mut st = app.lock();
    let account = account_or_default(&st, b.account)?;
    let id = create_media(&mut st, &account, b.media_type, b.media_product_type, b.caption);
    Ok(axum::Json(json!({"id": id})))
}

#[derive(Deserialize)]
struct TokenChange {
    token: String,
    state: Option<TokenState>,
    /// Expire at this instant (ms since the epoch, emulator clock).
    expires_at_ms: Option<i64>,
    /// Move the issue time, e.g. to make a token old enough to refresh.
    issued_ms: Option<i64>,
}

async fn set_token(AxState(app): AxState<App>, JsonBody(v): JsonBody) -> AdminResult {
    let b: TokenChange = body(v)?;
    let mut st = app.lock();
    let t = st.tokens.get_mut(&b.token).ok_or_else(|| AdminError::NotFound("token".into()))?;
    if let Some(s) = b.state {
        t.state = s;
    }
    if let Some(e) = b.expires_at_ms {
        t.expires_ms = Some(e);
    }
    if let Some(i) = b.issued_ms {
        t.issued_ms = i;
    }
    Ok(axum::Json(json!({"kind": t.kind, "subject": t.subject, "state": t.state, "expires_ms": t.expires_ms})))
}

async fn get_clock(AxState(app): AxState<App>) -> AdminResult {
    let st = app.lock();
    Ok(axum::Json(json!({"now_ms": st.now(), "frozen": st.clock.frozen_at.is_some()})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ClockChange {
    advance_ms: Option<i64>,
    set_ms: Option<i64>,
    freeze: Option<bool>,
}

async fn set_clock(AxState(app): AxState<App>, JsonBody(v): JsonBody) -> AdminResult {
    let b: ClockChange = body(v)?;
    let mut st = app.lock();
    if let Some(f) = b.freeze {
        let now = st.now();
        st.clock = if f {
            crate::state::Clock { frozen_at: Some(now), offset_ms: 0 }
        } else {
            crate::state::Clock { frozen_at: None, offset_ms: now - igrelay_core::time::now_ms() }
        };
    }
    if let Some(set) = b.set_ms {
        let now = st.now();
        st.clock.offset_ms += set - now;
    }
    if let Some(a) = b.advance_ms {
        st.clock.offset_ms += a;
    }
    Ok(axum::Json(json!({"now_ms": st.now(), "frozen": st.clock.frozen_at.is_some()})))
}

#[derive(Deserialize)]
struct ContainerChange {
    status: String,
}

async fn set_container(AxState(app): AxState<App>, Path(id): Path<String>, JsonBody(v): JsonBody) -> AdminResult {
    let b: ContainerChange = body(v)?;
    let mut st = app.lock();
    let c = st.containers.get_mut(&id).ok_or_else(|| AdminError::NotFound(id.clone()))?;
    if !matches!(b.status.as_str(), "ERROR" | "EXPIRED" | "FINISHED" | "IN_PROGRESS") {
        return Err(AdminError::BadRequest("status must be ERROR, EXPIRED, FINISHED or IN_PROGRESS".into()));
    }
    c.forced = Some(b.status);
    let status = st.status_of(&id);
    Ok(axum::Json(json!({"id": id, "status_code": status})))
}

async fn list_faults(AxState(app): AxState<App>) -> AdminResult {
    let st = app.lock();
    Ok(axum::Json(json!({"faults": st.faults})))
}

async fn add_fault(AxState(app): AxState<App>, JsonBody(v): JsonBody) -> AdminResult {
    let kind_given = v.get("kind").is_some();
    let f: Fault = body(v)?;
    // A fault of an explicit kind that can never fire is a mistake, not a delay-only fault.
    if kind_given && f.times.is_none() && f.error_rate.is_none() {
        return Err(AdminError::BadRequest(
            "a fault with a kind needs times or error_rate (which calls it hits)".into(),
        ));
    }
    let mut st = app.lock();
    let id = st.add_fault(f);
    Ok(axum::Json(json!({"id": id})))
}

async fn clear_faults(AxState(app): AxState<App>) -> AdminResult {
    let mut st = app.lock();
    st.faults.clear();
    Ok(axum::Json(json!({"cleared": true})))
}

#[derive(Deserialize)]
struct WebhookChange {
    callback_url: Option<String>,
}

async fn set_webhook(AxState(app): AxState<App>, JsonBody(v): JsonBody) -> AdminResult {
    let b: WebhookChange = body(v)?;
    let mut st = app.lock();
    st.callback_url = b.callback_url;
    Ok(axum::Json(json!({"callback_url": st.callback_url})))
}

async fn verify_webhook(AxState(app): AxState<App>) -> AdminResult {
    Ok(axum::Json(crate::webhooks::verify_callback(&app).await))
}

async fn simulate(AxState(app): AxState<App>, Path(kind): Path<String>, JsonBody(v): JsonBody) -> AdminResult {
    let mut st = app.lock();
    simulate_event(&mut st, &kind, &v).map(axum::Json)
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str().map(str::to_owned).or_else(|| x.as_u64().map(|n| n.to_string())))
}

/// Something an Instagram user does, with its state changes and the webhook Meta would send.
pub fn simulate_event(st: &mut State, kind: &str, v: &Value) -> Result<Value, AdminError> {
    let account = account_or_default(st, s(v, "account"))?;
    let user = st.ensure_user(s(v, "from").as_deref(), s(v, "username").as_deref());
    let blocked = st.accounts.get(&account).is_some_and(|a| a.blocked.contains(&user));
    let now = st.now();
    let envelope = |st: &State, event: (&str, Value)| {
        let mut item = json!({"sender": {"id": user}, "recipient": {"id": account}, "timestamp": st.now()});
        item[event.0] = event.1;
        item
    };
    match kind {
        "message" => {
            if blocked {
                return Err(AdminError::Conflict("the account blocked this user".into()));
            }
            let mut msg = json!({});
            if let Some(t) = s(v, "text") {
                msg["text"] = json!(t);
            }
            if let Some(atts) = v.get("attachments").and_then(Value::as_array) {
                let list: Vec<Value> = atts
                    .iter()
                    .map(|a| json!({"type": s(a, "type").unwrap_or_else(|| "image".into()), "payload": {"url": s(a, "url").unwrap_or_default()}}))
                    .collect();
                msg["attachments"] = json!(list);
            }
            if msg.get("text").is_none() && msg.get("attachments").is_none() {
                return Err(AdminError::BadRequest("a message needs text or attachments".into()));
            }
            if let Some(p) = s(v, "quick_reply_payload") {
                msg["quick_reply"] = json!({"payload": p});
            }
            if let Some(r) = s(v, "reply_to_mid") {
                msg["reply_to"] = json!({"mid": r});
            }
            if let Some(story) = v.get("reply_to_story") {
                msg["reply_to"] = json!({"story": story});
            }
            if let Some(r) = v.get("referral") {
                msg["referral"] = r.clone();
            }
            let (mid, conv) = st.store_message(&account, &user, true, msg.clone(), None, None);
            if let Some(a) = st.accounts.get_mut(&account) {
                a.consent.insert(user.clone());
            }
            let mut wire = json!({"mid": mid});
            if let Value::Object(o) = msg {
                for (k, val) in o {
                    wire[k] = val;
                }
            }
            let item = envelope(st, ("message", wire));
            st.emit(&account, "messages", item, false);
            Ok(json!({"mid": mid, "conversation_id": conv, "user_id": user, "account": account}))
        }
        "postback" | "referral" => {
            if blocked {
                return Err(AdminError::Conflict("the account blocked this user".into()));
            }
            let conv = st.conversation_for(&account, &user);
            // Both open the standard messaging window; a postback (ice breaker, menu) also
            // gives consent to profile look-ups.
            if let Some(c) = st.conversations.get_mut(&conv) {
                c.last_inbound_ms = Some(now);
                c.updated_ms = now;
            }
            if kind == "postback" {
                if let Some(a) = st.accounts.get_mut(&account) {
                    a.consent.insert(user.clone());
                }
                let mid = st.new_mid();
                let pb = json!({"mid": mid, "title": s(v, "title").unwrap_or_else(|| "Get Started".into()), "payload": s(v, "payload").unwrap_or_default()});
                let item = envelope(st, ("postback", pb));
                st.emit(&account, "messaging_postbacks", item, false);
                Ok(json!({"mid": mid, "conversation_id": conv, "user_id": user, "account": account}))
            } else {
                let r = json!({"ref": s(v, "ref").unwrap_or_default(), "source": s(v, "source").unwrap_or_else(|| "IGME".into()), "type": "OPEN_THREAD"});
                let item = envelope(st, ("referral", r));
                st.emit(&account, "messaging_referral", item, false);
                Ok(json!({"conversation_id": conv, "user_id": user, "account": account}))
            }
        }
        "reaction" => {
            let mid = s(v, "mid").ok_or_else(|| AdminError::BadRequest("mid is required".into()))?;
            let action = s(v, "action").unwrap_or_else(|| "react".into());
            let msg = st.messages.get_mut(&mid).ok_or_else(|| AdminError::NotFound(mid.clone()))?;
            let mut r = json!({"mid": mid, "action": action});
            if action == "react" {
                let reaction = s(v, "reaction").unwrap_or_else(|| "love".into());
                msg.reactions.insert(user.clone(), reaction.clone());
                r["reaction"] = json!(reaction);
                r["emoji"] = json!(s(v, "emoji").unwrap_or_else(|| "\u{2764}".into()));
            } else {
                msg.reactions.remove(&user);
            }
            let item = envelope(st, ("reaction", r));
            st.emit(&account, "message_reactions", item, false);
            Ok(json!({"mid": mid, "user_id": user}))
        }
        "read" => {
            let mid = s(v, "mid").ok_or_else(|| AdminError::BadRequest("mid is required".into()))?;
            let item = envelope(st, ("read", json!({"mid": mid})));
            st.emit(&account, "messaging_seen", item, false);
            Ok(json!({"mid": mid, "user_id": user}))
        }
        "edit" => {
            let mid = s(v, "mid").ok_or_else(|| AdminError::BadRequest("mid is required".into()))?;
            let text = s(v, "text").unwrap_or_default();
            let msg = st.messages.get_mut(&mid).ok_or_else(|| AdminError::NotFound(mid.clone()))?;
            msg.text = Some(text.clone());
            let item = envelope(st, ("message_edit", json!({"mid": mid, "text": text, "num_edit": 1})));
            st.emit(&account, "message_edit", item, false);
            Ok(json!({"mid": mid}))
        }
        "comment" => {
            let media_id = match s(v, "media_id") {
                Some(m) => m,
                None => {
                    let existing = st.media.values().filter(|m| m.account == account).map(|m| m.id.clone()).min();
                    match existing {
                        Some(m) => m,
                        None => create_media(st, &account, None, None, Some("emulated post".into())),
                    }
                }
            };
            let media = st.media.get(&media_id).ok_or_else(|| AdminError::NotFound(media_id.clone()))?.clone();
            if media.account != account {
                return Err(AdminError::BadRequest("media belongs to another account".into()));
            }
            if !media.comment_enabled {
                return Err(AdminError::Conflict("comments are disabled on this media".into()));
            }
            let parent = s(v, "parent_id");
            let live = v.get("live").and_then(Value::as_bool).unwrap_or(false);
            let text = s(v, "text").unwrap_or_default();
            let username = st.users.get(&user).map(|u| u.username.clone()).unwrap_or_default();
            let id = st.new_id("180");
            st.comments.insert(
                id.clone(),
                Comment {
                    id: id.clone(),
                    media: media_id.clone(),
                    account: account.clone(),
                    parent: parent.clone(),
                    from_id: user.clone(),
                    from_username: username.clone(),
                    text: text.clone(),
                    hidden: false,
                    deleted: false,
                    live,
                    created_ms: now,
                    replies: Vec::new(),
                    private_replied: false,
                },
            );
            match parent.as_ref().and_then(|p| st.comments.get_mut(p)) {
                Some(p) => p.replies.push(id.clone()),
                None => {
                    if let Some(m) = st.media.get_mut(&media_id) {
                        m.comments.push(id.clone());
                    }
                }
            }
            let mut value = json!({
                "from": {"id": user, "username": username},
                "id": id,
                "text": text,
                "media": {"id": media_id, "media_product_type": media.media_product_type},
            });
            if let Some(p) = parent {
                value["parent_id"] = json!(p);
            }
            let field = if live { "live_comments" } else { "comments" };
            st.emit(&account, field, json!({"field": field, "value": value}), true);
            Ok(json!({"comment_id": id, "media_id": media_id, "user_id": user, "account": account}))
        }
        "mention" => {
            let media_id = s(v, "media_id").unwrap_or_else(|| st.new_id("179"));
            let mut value = json!({"media_id": media_id});
            if let Some(c) = s(v, "comment_id") {
                value["comment_id"] = json!(c);
            }
            st.emit(&account, "mentions", json!({"field": "mentions", "value": value}), true);
            Ok(json!({"media_id": media_id, "account": account}))
        }
        other => Err(AdminError::NotFound(format!("simulation {other}"))),
    }
}

async fn list_conversations(AxState(app): AxState<App>) -> AdminResult {
    let st = app.lock();
    let mut list: Vec<Value> = st
        .conversations
        .values()
        .map(|c| json!({"id": c.id, "account": c.account, "user": c.user, "messages": c.messages.len(), "updated_ms": c.updated_ms, "last_inbound_ms": c.last_inbound_ms}))
        .collect();
    list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(axum::Json(json!({"conversations": list})))
}

/// Every message of one conversation, oldest first, both directions.
pub fn conversation_log(st: &State, q: &HashMap<String, String>) -> Result<Value, AdminError> {
    let conv = match (q.get("conversation"), q.get("account"), q.get("user")) {
        (Some(c), _, _) => c.clone(),
        (None, a, Some(u)) => {
            let a = match a {
                Some(a) => a.clone(),
                None => st.default_account().unwrap_or_default(),
            };
            st.conv_index.get(&(a, u.clone())).cloned().ok_or_else(|| AdminError::NotFound("conversation".into()))?
        }
        _ => {
            return Err(AdminError::BadRequest("give conversation, or user (and account)".into()));
        }
    };
    let c = st.conversations.get(&conv).ok_or_else(|| AdminError::NotFound(conv.clone()))?;
    let messages: Vec<Value> = c
        .messages
        .iter()
        .filter_map(|m| st.messages.get(m))
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
        .collect();
    Ok(json!({"conversation": conv, "account": c.account, "user": c.user, "messages": messages}))
}

async fn list_messages(AxState(app): AxState<App>, Query(q): Query<HashMap<String, String>>) -> AdminResult {
    let st = app.lock();
    conversation_log(&st, &q).map(axum::Json)
}

async fn calls(AxState(app): AxState<App>) -> AdminResult {
    let st = app.lock();
    let list: Vec<Value> = st
        .stats
        .iter()
        .map(|((e, a), s)| json!({"endpoint": e, "account": a, "calls": s.calls, "errors": s.errors, "throttled": s.throttled}))
        .collect();
    let total: u64 = st.stats.values().map(|s| s.calls).sum();
    let throttled: u64 = st.stats.values().map(|s| s.throttled).sum();
    Ok(axum::Json(json!({"calls": list, "total": total, "throttled": throttled})))
}

async fn events(AxState(app): AxState<App>) -> AdminResult {
    let st = app.lock();
    Ok(axum::Json(json!({"events": st.events})))
}

async fn deliveries(AxState(app): AxState<App>) -> AdminResult {
    let st = app.lock();
    Ok(axum::Json(json!({"deliveries": st.deliveries})))
}

/// Prometheus text exposition of the inspection counters (no extra dependency needed for a
/// handful of counters).
async fn metrics(AxState(app): AxState<App>) -> impl IntoResponse {
    let st = app.lock();
    let mut out = String::new();
    out.push_str("# HELP igrelay_emulator_graph_calls_total Graph API calls answered, by endpoint and account.\n");
    out.push_str("# TYPE igrelay_emulator_graph_calls_total counter\n");
    for ((e, a), c) in &st.stats {
        out.push_str(&format!("igrelay_emulator_graph_calls_total{{endpoint=\"{e}\",account=\"{a}\"}} {}\n", c.calls));
    }
    out.push_str("# HELP igrelay_emulator_graph_errors_total Graph API calls answered with an error.\n");
    out.push_str("# TYPE igrelay_emulator_graph_errors_total counter\n");
    for ((e, a), c) in &st.stats {
        out.push_str(&format!(
            "igrelay_emulator_graph_errors_total{{endpoint=\"{e}\",account=\"{a}\"}} {}\n",
            c.errors
        ));
    }
    out.push_str("# HELP igrelay_emulator_graph_throttled_total Graph API calls refused by a rate limit.\n");
    out.push_str("# TYPE igrelay_emulator_graph_throttled_total counter\n");
    for ((e, a), c) in &st.stats {
        out.push_str(&format!(
            "igrelay_emulator_graph_throttled_total{{endpoint=\"{e}\",account=\"{a}\"}} {}\n",
            c.throttled
        ));
    }
    let ok = st.deliveries.iter().filter(|d| d.ok).count();
    let failed = st.deliveries.len() - ok;
    out.push_str("# HELP igrelay_emulator_webhook_attempts Webhook POST attempts kept in the record, by outcome.\n");
    out.push_str("# TYPE igrelay_emulator_webhook_attempts gauge\n");
    out.push_str(&format!("igrelay_emulator_webhook_attempts{{outcome=\"ok\"}} {ok}\n"));
    out.push_str(&format!("igrelay_emulator_webhook_attempts{{outcome=\"failed\"}} {failed}\n"));
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

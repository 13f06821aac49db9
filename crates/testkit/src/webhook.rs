//! Meta-shaped webhook payloads and correctly signed requests.
//!
//! Builders produce `serde_json::Value`s shaped like Meta's documented examples; [`encode`] turns
//! one into the bytes Meta would send (compact, non-ASCII escaped) and [`signed_headers`] signs
//! those bytes as Meta does.

use bytes::Bytes;
use serde_json::{Value, json};

pub use igrelay_core::webhook::{SIGNATURE_HEADER, sign, to_meta_json};

/// The bytes Meta would send for `payload`.
pub fn encode(payload: &Value) -> Bytes {
    Bytes::from(to_meta_json(payload))
}

/// Headers of a webhook POST of `body` signed with `secret`.
pub fn signed_headers(secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![("content-type", "application/json".into()), (SIGNATURE_HEADER, sign(secret.as_bytes(), body))]
}

/// `{"object":"instagram","entry":[...]}`
pub fn envelope(entries: Vec<Value>) -> Value {
    json!({"object": "instagram", "entry": entries})
}

/// An entry with `messaging[]` items (milliseconds, as Meta sends for messaging).
pub fn messaging_entry(account: &str, time_ms: i64, items: Vec<Value>) -> Value {
    json!({"id": account, "time": time_ms, "messaging": items})
}

/// An entry with `standby[]` items: the app is not the thread owner.
pub fn standby_entry(account: &str, time_ms: i64, items: Vec<Value>) -> Value {
    json!({"id": account, "time": time_ms, "standby": items})
}

/// An entry with `changes[]` (Facebook Login shape; times in seconds).
pub fn changes_entry(account: &str, time_s: i64, changes: Vec<(&str, Value)>) -> Value {
    let changes: Vec<Value> = changes.into_iter().map(|(f, v)| json!({"field": f, "value": v})).collect();
    json!({"id": account, "time": time_s, "changes": changes})
}

/// The Instagram Login flat shape: `field`/`value` directly in the entry.
pub fn field_entry(account: &str, time_s: i64, field: &str, value: Value) -> Value {
    json!({"id": account, "time": time_s, "field": field, "value": value})
}

/// A messaging item from `sender` to `recipient` carrying `key: body` (message, reaction, ...).
pub fn item(sender: &str, recipient: &str, timestamp_ms: i64, key: &str, body: Value) -> Value {
    let mut v = json!({"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": timestamp_ms});
    v[key] = body;
    v
}

/// A text message from a user to the business.
pub fn text_message(account: &str, user: &str, mid: &str, text: &str, timestamp_ms: i64) -> Value {
    envelope(vec![messaging_entry(
        account,
        timestamp_ms + 50,
        vec![item(user, account, timestamp_ms, "message", json!({"mid": mid, "text": text}))],
    )])
}

/// A comment on media, in the Facebook Login `changes` shape.
pub fn comment_change(comment_id: &str, user: &str, username: &str, text: &str, media_id: &str) -> Value {
    json!({
        "from": {"id": user, "username": username},
        "id": comment_id,
        "text": text,
        "media": {"id": media_id, "media_product_type": "FEED"}
    })
}

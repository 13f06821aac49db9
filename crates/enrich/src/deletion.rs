//! Forgetting a user: Meta's data deletion callback (`POST /meta/data-deletion` with a
//! `signed_request`), its status page, and the same purge behind `ig.v1.req.forget_user`.

use async_nats::jetstream::kv;
use base64::Engine as _;
use bytes::Bytes;
use igrelay_core::v1::{DataDeletionRecord, ForgetUserResponse};
use prost::Message as _;

/// Why a `signed_request` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignedRequestError {
    #[error("signed_request is missing")]
    Missing,
    #[error("signed_request is malformed: {0}")]
    Malformed(&'static str),
    #[error("signed_request algorithm must be HMAC-SHA256")]
    Algorithm,
    #[error("signed_request signature does not match any configured app secret (enrich.app_secrets)")]
    Signature,
}

impl SignedRequestError {
    /// Forged requests are unauthorised; malformed ones are bad requests.
    pub fn status(&self) -> u16 {
        match self {
            Self::Signature => 401,
            _ => 400,
        }
    }
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    // Meta sends unpadded base64url; accept padding anyway.
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Verifies `<base64url signature>.<base64url payload>` (HMAC-SHA256 of the payload part with
/// an app secret, constant-time compared) and returns the user id it names.
pub fn verify_signed_request<'a>(
    signed_request: &str,
    secrets: impl IntoIterator<Item = &'a [u8]>,
) -> Result<String, SignedRequestError> {
    let (sig, payload) = signed_request.trim().split_once('.').ok_or(SignedRequestError::Malformed("no '.'"))?;
    let sig = b64url(sig).ok_or(SignedRequestError::Malformed("signature is not base64url"))?;
    if sig.len() != 32 {
        return Err(SignedRequestError::Malformed("signature is not 32 bytes"));
    }
    let given = hex::encode(&sig);
    let ok = secrets.into_iter().fold(false, |ok, secret| {
        let expected = igrelay_core::webhook::hmac_sha256_hex(secret, payload.as_bytes());
        ok | igrelay_core::webhook::constant_time_eq(given.as_bytes(), expected.as_bytes())
    });
    if !ok {
        return Err(SignedRequestError::Signature);
    }
    let json = b64url(payload).ok_or(SignedRequestError::Malformed("payload is not base64url"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&json).map_err(|_| SignedRequestError::Malformed("payload is not JSON"))?;
    let algorithm = v.get("algorithm").and_then(|a| a.as_str()).unwrap_or_default();
    if !algorithm.eq_ignore_ascii_case("HMAC-SHA256") {
        return Err(SignedRequestError::Algorithm);
    }
    let user = match v.get("user_id") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err(SignedRequestError::Malformed("user_id is missing")),
    };
    if igrelay_core::ids::check_token(&user).is_err() {
        return Err(SignedRequestError::Malformed("user_id is not a valid id"));
    }
    Ok(user)
}

/// Stores the status of a deletion under its confirmation code.
pub async fn record(deletions: &kv::Store, code: &str, purged: Result<u32, String>) -> DataDeletionRecord {
    let now = igrelay_core::time::now();
    let rec = DataDeletionRecord {
        confirmation_code: code.to_owned(),
        requested_time: Some(now),
        completed_time: purged.is_ok().then_some(now),
        entries_purged: purged.as_ref().copied().unwrap_or(0),
        status: if purged.is_ok() { "completed" } else { "failed" }.into(),
    };
    if let Err(e) = deletions.put(code, Bytes::from(rec.encode_to_vec())).await {
        tracing::warn!(error = %e, "cannot store data deletion status");
    }
    rec
}

pub async fn status(deletions: &kv::Store, code: &str) -> anyhow::Result<Option<DataDeletionRecord>> {
    if igrelay_core::ids::check_token(code).is_err() {
        return Ok(None);
    }
    Ok(match deletions.get(code).await? {
        Some(b) => Some(DataDeletionRecord::decode(b)?),
        None => None,
    })
}

pub fn response(code: &str, status_url: String, purged: &Result<u32, String>) -> ForgetUserResponse {
    ForgetUserResponse {
        confirmation_code: code.to_owned(),
        status_url,
        entries_purged: purged.as_ref().copied().unwrap_or(0),
        error: purged.as_ref().err().cloned().unwrap_or_default(),
    }
}

/// Meta's confirmation codes are shown to the user and open the status page: 128 random bits
/// from the operating system (32 hex digits, safe as a KV key). A nuid would not do: it is
/// unique, not unpredictable (consecutive ids share a prefix and count up).
pub fn new_code() -> Result<String, getrandom::Error> {
    igrelay_core::ids::random_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, payload: &str) -> String {
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
        let mac = hex::decode(igrelay_core::webhook::hmac_sha256_hex(secret.as_bytes(), p.as_bytes())).unwrap();
        format!("{}.{p}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac))
    }

    #[test]
    fn confirmation_codes_are_128_random_bits() {
        let codes: Vec<String> = (0..64).map(|_| new_code().unwrap()).collect();
        for c in &codes {
            assert_eq!(c.len(), 32, "{c}");
            assert!(c.bytes().all(|b| b.is_ascii_hexdigit()), "{c}");
        }
        // Unpredictable, not merely unique: no two codes share a long prefix (a nuid's first
        // 12 characters are the same for millions of ids).
        let mut prefixes: Vec<&str> = codes.iter().map(|c| &c[..8]).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), codes.len());
    }

    #[test]
    fn verifies_and_refuses() {
        let ok = signed("s3cr3t", r#"{"algorithm":"HMAC-SHA256","user_id":"5500000000000002","issued_at":1}"#);
        assert_eq!(verify_signed_request(&ok, [b"other".as_slice(), b"s3cr3t"]).unwrap(), "5500000000000002");
        assert_eq!(verify_signed_request(&ok, [b"wrong".as_slice()]), Err(SignedRequestError::Signature));
        let numeric = signed("s", r#"{"algorithm":"HMAC-SHA256","user_id":55}"#);
        assert_eq!(verify_signed_request(&numeric, [b"s".as_slice()]).unwrap(), "55");
        let algo = signed("s", r#"{"algorithm":"HMAC-SHA1","user_id":"55"}"#);
        assert_eq!(verify_signed_request(&algo, [b"s".as_slice()]), Err(SignedRequestError::Algorithm));
        assert!(matches!(verify_signed_request("nodot", [b"s".as_slice()]), Err(SignedRequestError::Malformed(_))));
        let wild = signed("s", r#"{"algorithm":"HMAC-SHA256","user_id":"a.>"}"#);
        assert!(matches!(verify_signed_request(&wild, [b"s".as_slice()]), Err(SignedRequestError::Malformed(_))));
    }
}

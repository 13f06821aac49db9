//! Meta's error bodies and time formats.

use serde_json::{Value, json};

/// An error as Meta answers it: `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct MetaError {
    #[serde(default = "default_status")]
    pub status: u16,
    pub code: i64,
    #[serde(default)]
    pub subcode: Option<i64>,
    #[serde(default)]
    pub message: String,
    #[serde(default = "default_type")]
    pub error_type: String,
    #[serde(default)]
    pub is_transient: bool,
}

fn default_status() -> u16 {
    400
}

fn default_type() -> String {
    "OAuthException".into()
}

impl MetaError {
    pub fn new(code: i64, subcode: Option<i64>, message: impl Into<String>) -> Self {
        let status = match code {
            1 | 2 => 500,
            _ => 400,
        };
        Self {
            status,
            code,
            subcode,
            message: message.into(),
            error_type: default_type(),
            is_transient: matches!(code, 1 | 2),
        }
    }

    pub fn typed(mut self, t: &str) -> Self {
        self.error_type = t.into();
        self
    }

    pub fn body(&self, fbtrace_id: &str) -> Value {
        let mut e = json!({
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
            "fbtrace_id": fbtrace_id,
        });
        if let Some(s) = self.subcode {
            e["error_subcode"] = json!(s);
        }
        if self.is_transient {
            e["is_transient"] = json!(true);
        }
        json!({ "error": e })
    }

    // The errors the emulator answers, named after their meaning.

    pub fn token_missing() -> Self {
        Self::new(104, None, "An access token is required to request this resource.")
    }
    pub fn token_invalid() -> Self {
        Self::new(190, None, "Invalid OAuth access token - Cannot parse access token")
    }
    pub fn token_expired(at: &str) -> Self {
        Self::new(190, Some(463), format!("Error validating access token: Session has expired on {at}."))
    }
    pub fn token_revoked() -> Self {
        Self::new(
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
        )
    }
    pub fn bad_proof() -> Self {
        Self::new(100, None, "Invalid appsecret_proof provided in the API argument").typed("GraphMethodException")
    }
    pub fn no_object(id: &str, method: &str) -> Self {
        Self::new(
            100,
            Some(33),
            format!(
                "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
            ),
        )
        .typed("GraphMethodException")
    }
    pub fn unknown_path() -> Self {
        Self::new(2500, None, "An unknown path components was requested.")
    }
    pub fn param(message: impl Into<String>) -> Self {
        Self::new(100, None, format!("(#100) {}", message.into()))
    }
    pub fn param_sub(subcode: i64, message: impl Into<String>) -> Self {
        Self::new(100, Some(subcode), format!("(#100) {}", message.into()))
    }
    pub fn outside_window() -> Self {
        Self::new(10, Some(2534022), "(#10) This message is sent outside of allowed window.")
    }
    pub fn no_user() -> Self {
        Self::new(100, Some(2018001), "(#100) No matching user found")
    }
    pub fn user_unavailable() -> Self {
        Self::new(551, Some(1545041), "This person isn't available right now.")
    }
    pub fn rate_limited() -> Self {
        Self::new(613, Some(2534040), "(#613) Calls to this api have exceeded the rate limit.")
    }
    pub fn buc_throttled() -> Self {
        Self::new(
            80002,
            None,
            "(#80002) There have been too many calls to this Instagram account. Wait a bit and try again.",
        )
    }
    pub fn publish_limit() -> Self {
        Self::new(
            9,
            Some(2207042),
            "Application request limit reached: the maximum number of published posts has been reached.",
        )
    }
    pub fn consent_required() -> Self {
        Self::new(230, None, "(#230) User consent is required to access user profile").typed("IGApiException")
    }
    pub fn message_deleted() -> Self {
        Self::new(9000001, None, "This message has been deleted.")
    }
}

/// Meta's time format: `2025-07-28T22:44:49+0000`.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+0000", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_meta() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00+0000");
        assert_eq!(format_time(1_753_742_689_000), "2025-07-28T22:44:49+0000");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00+0000");
    }

    #[test]
    fn error_body_has_metas_shape() {
        let b = MetaError::token_expired("x").body("AbC");
        assert_eq!(b["error"]["code"], 190);
        assert_eq!(b["error"]["error_subcode"], 463);
        assert_eq!(b["error"]["type"], "OAuthException");
        assert_eq!(b["error"]["fbtrace_id"], "AbC");
    }
}

use crate::usage::Usage;
use std::time::Duration;

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Rate or quota limit: wait `retry_after` (from the usage headers when Meta sent any).
    Throttled { retry_after: Duration },
    /// Worth retrying with backoff: Meta's service errors, 5xx, timeouts, dropped connections.
    Transient,
    /// The token is invalid, expired or revoked: pause the account and ask for re-authorisation.
    Auth,
    /// Retrying will not help (bad parameter, window closed, permission, policy).
    Permanent,
}

/// Meta's error body `{"error":{...}}` together with the HTTP status and the usage headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub endpoint: &'static str,
    pub status: u16,
    pub code: i64,
    pub subcode: Option<i64>,
    pub message: String,
    pub error_type: Option<String>,
    pub fbtrace_id: Option<String>,
    pub is_transient: bool,
    pub user_title: Option<String>,
    pub user_msg: Option<String>,
    pub usage: Usage,
    /// Wait to suggest when throttled and the headers say nothing.
    pub(crate) default_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Timeout,
    Connect,
    /// The connection broke while the request or the answer was in flight.
    Interrupted,
}

/// Every way a Graph API call can fail. No variant ever holds a token: transport errors are
/// stripped of their URL, and Meta's messages are scrubbed of the token before they are kept.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error(
        "{endpoint}: graph error {code}{sub} (HTTP {status}): {message} [fbtrace_id {trace}]",
        endpoint = .0.endpoint, code = .0.code, status = .0.status, message = .0.message,
        sub = .0.subcode.map(|s| format!("/{s}")).unwrap_or_default(),
        trace = .0.fbtrace_id.as_deref().unwrap_or("-")
    )]
    Api(Box<ApiError>),
    #[error("{endpoint}: HTTP {status} without a Graph error body")]
    Http { endpoint: &'static str, status: u16, usage: Usage },
    #[error("{endpoint}: transport error ({kind:?}): {message}")]
    Transport { endpoint: &'static str, kind: TransportKind, message: String },
    #[error("{endpoint}: unexpected response: {message}")]
    Decode { endpoint: &'static str, message: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Codes Meta uses for rate and quota limits (RL-G, ERR-G, ERR-M).
const THROTTLE_CODES: &[i64] = &[4, 17, 32, 341, 368, 613, 80002, 80006];
/// Publishing errors worth retrying: server and upload errors, container not visible yet,
/// media not ready.
const TRANSIENT_PUBLISHING: &[(i64, i64)] =
    &[(-1, 2207001), (-1, 2207032), (-1, 2207053), (-2, 2207003), (24, 2207008), (9007, 2207027)];

impl ApiError {
    pub fn class(&self) -> ErrorClass {
        let throttled =
            || ErrorClass::Throttled { retry_after: self.usage.regain_access_in().unwrap_or(self.default_wait) };
        match (self.code, self.subcode) {
            // Abusive tag use is a policy verdict, not a rate limit.
            (613, Some(2018338)) => ErrorClass::Permanent,
            // Daily publishing cap: comes back as the moving 24 h window frees up.
            (9, Some(2207042)) => throttled(),
            (c, _) if THROTTLE_CODES.contains(&c) => throttled(),
            (102 | 190, _) => ErrorClass::Auth,
            // "An access token is required": nothing but a (new) token helps.
            (104, _) => ErrorClass::Auth,
            (1 | 2, _) => ErrorClass::Transient,
            (c, Some(s)) if TRANSIENT_PUBLISHING.contains(&(c, s)) => ErrorClass::Transient,
            _ if self.is_transient => ErrorClass::Transient,
            _ if self.status >= 500 && self.code <= 2 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

impl GraphError {
    pub fn class(&self) -> ErrorClass {
        match self {
            GraphError::Api(e) => e.class(),
            GraphError::Http { status, usage, .. } => match status {
                429 => {
                    ErrorClass::Throttled { retry_after: usage.regain_access_in().unwrap_or(Duration::from_secs(60)) }
                }
                401 => ErrorClass::Auth,
                s if *s >= 500 => ErrorClass::Transient,
                _ => ErrorClass::Permanent,
            },
            GraphError::Transport { .. } => ErrorClass::Transient,
            GraphError::Decode { .. } | GraphError::InvalidArgument(_) => ErrorClass::Permanent,
        }
    }

    /// Meta's error code and subcode, when the answer carried a Graph error body.
    pub fn code(&self) -> Option<(i64, Option<i64>)> {
        match self {
            GraphError::Api(e) => Some((e.code, e.subcode)),
            _ => None,
        }
    }

    pub fn api(&self) -> Option<&ApiError> {
        match self {
            GraphError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The usage headers of the failed call, when there was an answer.
    pub fn usage(&self) -> Option<&Usage> {
        match self {
            GraphError::Api(e) => Some(&e.usage),
            GraphError::Http { usage, .. } => Some(usage),
            _ => None,
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(serde::Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub error_type: Option<String>,
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    #[serde(default)]
    pub error_user_title: Option<String>,
    #[serde(default)]
    pub error_user_msg: Option<String>,
    #[serde(default)]
    pub fbtrace_id: Option<String>,
    #[serde(default)]
    pub is_transient: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64, subcode: Option<i64>) -> ApiError {
        ApiError {
            endpoint: "messages",
            status: 400,
            code,
            subcode,
            message: String::new(),
            error_type: None,
            fbtrace_id: None,
            is_transient: false,
            user_title: None,
            user_msg: None,
            usage: Usage::default(),
            default_wait: Duration::from_secs(60),
        }
    }

    #[test]
    fn classifies_the_facts_sheet_table() {
        let wait = ErrorClass::Throttled { retry_after: Duration::from_secs(60) };
        for c in [4, 17, 32, 341, 613, 80002, 80006, 368] {
            assert_eq!(api(c, None).class(), wait, "code {c}");
        }
        assert_eq!(api(9, Some(2207042)).class(), wait);
        assert_eq!(api(613, Some(2018338)).class(), ErrorClass::Permanent);
        for s in [None, Some(458), Some(460), Some(463)] {
            assert_eq!(api(190, s).class(), ErrorClass::Auth);
        }
        assert_eq!(api(102, None).class(), ErrorClass::Auth);
        assert_eq!(api(1, None).class(), ErrorClass::Transient);
        assert_eq!(api(2, None).class(), ErrorClass::Transient);
        assert_eq!(api(-2, Some(2207003)).class(), ErrorClass::Transient);
        assert_eq!(api(9007, Some(2207027)).class(), ErrorClass::Transient);
        for (c, s) in
            [(10, Some(2534022)), (100, Some(33)), (551, None), (230, None), (-2, Some(2207020)), (100, Some(2207028))]
        {
            assert_eq!(api(c, s).class(), ErrorClass::Permanent, "{c}/{s:?}");
        }
        let mut t = api(100, None);
        t.is_transient = true;
        assert_eq!(t.class(), ErrorClass::Transient);
    }

    #[test]
    fn throttle_wait_comes_from_the_buc_header() {
        let mut e = api(80002, None);
        e.usage.business.push(crate::usage::BusinessUsage { estimated_time_to_regain_access: 3, ..Default::default() });
        assert_eq!(e.class(), ErrorClass::Throttled { retry_after: Duration::from_secs(180) });
    }
}

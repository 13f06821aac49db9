//! Errors as gRPC statuses.

use igrelay_accounts::AccountsError;
use igrelay_graph::{ErrorClass, GraphError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds: protobuf's Timestamp range.
const MIN_TIMESTAMP_S: i64 = -62_135_596_800;
const MAX_TIMESTAMP_S: i64 = 253_402_300_799;
/// Protobuf's Duration range: about 10,000 years.
const MAX_DURATION_S: i64 = 315_576_000_000;

/// Collects field violations; INVALID_ARGUMENT with google.rpc.BadRequest details.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldViolation::new(field, reason));
    }

    /// Checks an id that becomes a subject token or a KV key: `[A-Za-z0-9_-]{1,64}`.
    pub fn id(&mut self, field: &str, value: &str) {
        if let Err(e) = igrelay_core::ids::check_token(value) {
            self.add(field, format!("{value:?} is not a valid id: {e}"));
        }
    }

    /// Checks an id that becomes a Graph API path segment or recipient.
    pub fn graph_id(&mut self, field: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 256
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'.' | b':'))
            && value != "."
            && value != "..";
        if !ok {
            self.add(
                field,
                if value.is_empty() {
                    "is required".to_string()
                } else {
                    format!("{value:?} is not a valid Graph API id")
                },
            );
        }
    }

    /// Checks a caller-supplied time: within protobuf's Timestamp range (years 1 to 9999) with
    /// nanos in 0..1e9, so later arithmetic on it can neither overflow nor wrap.
    pub fn timestamp(&mut self, field: &str, value: Option<&prost_types::Timestamp>) {
        if let Some(t) = value
            && !((MIN_TIMESTAMP_S..=MAX_TIMESTAMP_S).contains(&t.seconds) && (0..1_000_000_000).contains(&t.nanos))
        {
            self.add(
                field,
                format!(
                    "{}s {}ns is out of range: a time between 0001-01-01 and 9999-12-31 with nanos in 0..999999999",
                    t.seconds, t.nanos
                ),
            );
        }
    }

    /// Checks a caller-supplied duration: not negative, nanos in 0..1e9, at most 10,000 years
    /// (protobuf's Duration range).
    pub fn duration(&mut self, field: &str, value: Option<&prost_types::Duration>) {
        if let Some(d) = value
            && !((0..=MAX_DURATION_S).contains(&d.seconds) && (0..1_000_000_000).contains(&d.nanos))
        {
            self.add(
                field,
                format!("{}s {}ns is out of range: 0 to 10,000 years with nanos in 0..999999999", d.seconds, d.nanos),
            );
        }
    }

    pub fn required(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.add(field, "is required");
        }
    }

    /// `Ok` when nothing was found, else INVALID_ARGUMENT naming every field.
    pub fn check(self) -> Result<(), Status> {
        if self.0.is_empty() {
            return Ok(());
        }
        let message = self.0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
        Err(Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request(self.0)))
    }
}

/// One bad field.
pub fn invalid(field: &str, reason: impl Into<String>) -> Status {
    let mut v = Violations::new();
    v.add(field, reason);
    v.check().err().unwrap_or_else(|| Status::invalid_argument(field.to_owned()))
}

/// A new unguessable id (128 random bits), or UNAVAILABLE when the OS cannot supply randomness.
pub fn random_id() -> Result<String, Status> {
    igrelay_core::ids::random_id().map_err(|e| Status::unavailable(format!("no randomness for a new id: {e}")))
}

pub fn nats_unavailable(why: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("NATS unavailable: {why}"))
}

pub fn accounts(e: AccountsError) -> Status {
    match e {
        AccountsError::NotFound(a) => Status::not_found(format!("account {a} is not registered")),
        AccountsError::InvalidId(id, err) => invalid("account_id", format!("{id:?}: {err}")),
        AccountsError::Kv(why) => nats_unavailable(why),
        e @ AccountsError::Changed(_) => Status::aborted(format!("{e}; try again")),
        e @ (AccountsError::Decode { .. }
        | AccountsError::Mismatch { .. }
        | AccountsError::Unbound(_)
        | AccountsError::UnknownKey { .. }
        | AccountsError::Decrypt { .. }
        | AccountsError::Config(_)) => Status::failed_precondition(e.to_string()),
    }
}

/// A Graph API failure, for the caller.
pub fn graph(e: &GraphError) -> Status {
    let message = e.to_string();
    if let Some((code, sub)) = e.code()
        && (matches!((code, sub), (100, Some(33 | 2018001))) || code == 9_000_001 || sub == Some(9_000_001))
    {
        return Status::not_found(message);
    }
    match e {
        GraphError::InvalidArgument(m) => return Status::invalid_argument(m.clone()),
        GraphError::Http { status: 404, .. } => return Status::not_found(message),
        _ => {}
    }
    match e.class() {
        ErrorClass::Throttled { retry_after } => Status::resource_exhausted(format!(
            "Meta throttled the account, retry in {}s: {message}",
            retry_after.as_secs().max(1)
        )),
        ErrorClass::Transient => Status::unavailable(message),
        ErrorClass::Auth => Status::failed_precondition(format!(
            "Meta refused the account's token; register the account again with a new token: {message}"
        )),
        ErrorClass::Permanent => match e.code() {
            Some((100, _)) => Status::invalid_argument(message),
            Some((10 | 200..=299, _)) => Status::failed_precondition(message),
            _ => Status::failed_precondition(message),
        },
    }
}

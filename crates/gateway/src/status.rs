//! Errors as gRPC statuses.

use igrelay_accounts::AccountsError;
use igrelay_graph::{ErrorClass, GraphError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

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

pub fn nats_unavailable(why: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("NATS unavailable: {why}"))
}

pub fn accounts(e: AccountsError) -> Status {
    match e {
        AccountsError::NotFound(a) => Status::not_found(format!("account {a} is not registered")),
        AccountsError::InvalidId(id, err) => invalid("account_id", format!("{id:?}: {err}")),
        AccountsError::Kv(why) => nats_unavailable(why),
        e @ (AccountsError::Decode { .. }
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

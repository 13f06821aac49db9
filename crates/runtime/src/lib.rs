//! What every igrelay service process needs, written once:
//! - [`telemetry`]: JSON logs, OpenTelemetry traces (OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//!   set), W3C propagation.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`server`]: serving HTTP with header/request timeouts and a connection limit.
//! - [`shutdown`]: SIGTERM/SIGINT start a graceful stop; a second signal exits at once.
//! - [`Secret`]: configuration values that never reach logs.

pub mod ops;
pub mod server;
pub mod shutdown;
pub mod telemetry;

use std::fmt;

/// A configuration value that must never be logged or printed. `Debug`, `Display` and
/// `Serialize` redact it (`igrelay config` shows `<redacted>` for every `Secret`, whatever its key
/// is called); [`Secret::expose`] is the one way to the value. An empty secret shows as empty, so
/// a missing one is still visible.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

/// What every redacted secret shows instead of its value.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value itself; call only where it is used (a comparison, a signature, a request).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Serialization is for output only (configuration is read, never written back): the value
/// never leaves this way.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { REDACTED })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_redacted() {
        let s = super::Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "\"<redacted>\" <redacted>");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(serde_json::to_string(&super::Secret::default()).unwrap(), "\"\"");
    }
}

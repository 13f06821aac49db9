//! Ingest configuration (`[ingest]` in the TOML file, `IGRELAY_INGEST__*` in the environment).

use std::net::SocketAddr;
use std::time::Duration;

use igrelay_bus::connect::humantime_ms;
use igrelay_runtime::Secret;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address the webhook endpoint and `/healthz`, `/readyz`, `/metrics` listen on.
    pub listen: SocketAddr,
    /// Path of the webhook endpoint (the callback URL registered with Meta ends with it).
    pub path: String,
    /// The verify token entered in Meta's App Dashboard; checked on the GET challenge.
    pub verify_token: Secret,
    /// App secrets whose HMAC-SHA256 signature is accepted. Several allow rotation: add the new
    /// secret, rotate it in Meta's dashboard, then remove the old one.
    pub app_secrets: Vec<Secret>,
    /// Largest accepted body. Meta batches up to 1000 updates per POST; 8 MiB leaves room.
    pub max_body_bytes: usize,
    /// How long to wait for JetStream to acknowledge every event of a delivery before answering
    /// 503. Meta expects an answer within 5 s, so keep this well below.
    #[serde(with = "humantime_ms")]
    pub publish_deadline: Duration,
    /// Seconds in the `Retry-After` header of a 503.
    pub retry_after_s: u32,
    /// How long an echo may wait for dispatch's record of the message it sent (Meta can send
    /// the echo before the Send API answer arrived), to mark echoes of igrelay's own messages
    /// with the command id. Echoes of messages typed in the Instagram app wait this long; 0
    /// turns the correlation off.
    #[serde(with = "humantime_ms")]
    pub echo_correlation_wait: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            path: "/webhooks/instagram".into(),
            verify_token: Secret::default(),
            app_secrets: Vec::new(),
            max_body_bytes: 8 * 1024 * 1024,
            publish_deadline: Duration::from_secs(2),
            retry_after_s: 5,
            echo_correlation_wait: Duration::from_millis(300),
        }
    }
}

/// A configuration value that cannot work, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {problem}")]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, problem: &str| Err(ConfigError { key, problem: problem.into() });
        if self.verify_token.is_empty() {
            return err("ingest.verify_token", "must be set to the verify token configured in Meta's App Dashboard");
        }
        if self.app_secrets.is_empty() || self.app_secrets.iter().any(Secret::is_empty) {
            return err(
                "ingest.app_secrets",
                "at least one non-empty app secret is required to verify X-Hub-Signature-256",
            );
        }
        if !self.path.starts_with('/') {
            return err("ingest.path", "must start with /");
        }
        if self.max_body_bytes < 1024 {
            return err("ingest.max_body_bytes", "must be at least 1024");
        }
        if self.publish_deadline.is_zero() || self.publish_deadline >= Duration::from_secs(5) {
            return err("ingest.publish_deadline", "must be above 0 and below Meta's 5 s answer deadline");
        }
        Ok(())
    }
}

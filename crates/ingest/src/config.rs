//! Ingest configuration (`[ingest]` in the TOML file, `IGRELAY_INGEST__*` in the environment).

use std::net::SocketAddr;
use std::time::Duration;

use igrelay_bus::connect::humantime_ms;
use igrelay_runtime::Secret;
use igrelay_runtime::server::HttpLimits;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address of the webhook endpoint (the one Meta reaches, facing the internet).
    pub listen: SocketAddr,
    /// Address of `/healthz`, `/readyz` and `/metrics`, kept off the webhook port so the
    /// internet does not see them.
    pub ops_listen: SocketAddr,
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
    /// A signed delivery whose newest `entry.time` is older than this is answered 200 and
    /// dropped (counted as `replay_too_old`): past the events stream's duplicate window, storing
    /// it again would publish events consumers already had. Unset: the events stream's
    /// duplicate window (`topology.duplicate_window`).
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub max_delivery_age: Option<Duration>,
    /// Longest a client may take to send a request's headers (also how long an idle keep-alive
    /// connection stays open), on the webhook and ops listeners.
    #[serde(with = "humantime_ms")]
    pub header_timeout: Duration,
    /// Longest from a request's headers to its answer, reading the body included; then 408.
    #[serde(with = "humantime_ms")]
    pub request_timeout: Duration,
    /// Connections open at once, per listener; further ones wait in the listen backlog.
    pub max_connections: usize,
}

/// `Option<Duration>` written like every other duration (`"2h"`).
mod opt_duration {
    use std::time::Duration;

    use igrelay_bus::connect::humantime_ms;
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    struct D(#[serde(with = "humantime_ms")] Duration);

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => humantime_ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, De: Deserializer<'de>>(d: De) -> Result<Option<Duration>, De::Error> {
        Ok(Option::<D>::deserialize(d)?.map(|D(d)| d))
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            ops_listen: SocketAddr::from(([0, 0, 0, 0], 8084)),
            path: "/webhooks/instagram".into(),
            verify_token: Secret::default(),
            app_secrets: Vec::new(),
            max_body_bytes: 8 * 1024 * 1024,
            publish_deadline: Duration::from_secs(2),
            retry_after_s: 5,
            echo_correlation_wait: Duration::from_millis(300),
            max_delivery_age: None,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            max_connections: 1024,
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
        if self.listen == self.ops_listen && self.listen.port() != 0 {
            return err("ingest.ops_listen", "must differ from ingest.listen (keep /metrics off the webhook port)");
        }
        if self.max_delivery_age.is_some_and(|d| d.is_zero()) {
            return err("ingest.max_delivery_age", "must be above 0 (leave it unset for the duplicate window)");
        }
        if self.request_timeout <= self.publish_deadline {
            return err("ingest.request_timeout", "must be longer than ingest.publish_deadline");
        }
        if self.header_timeout.is_zero() {
            return err("ingest.header_timeout", "must be above 0");
        }
        if self.max_connections == 0 {
            return err("ingest.max_connections", "must be at least 1");
        }
        Ok(())
    }

    /// The bounds of the webhook and ops listeners.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: self.header_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections,
        }
    }
}

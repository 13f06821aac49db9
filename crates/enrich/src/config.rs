//! Enrich configuration (`[enrich]` in the TOML file, `IGRELAY_ENRICH__*` in the environment).

use std::net::SocketAddr;
use std::time::Duration;

use igrelay_bus::connect::humantime_ms;
use igrelay_runtime::Secret;

/// The profiles bucket keeps entries at most one day (`KvDef::Profiles`): a cache TTL above
/// that would never be reached.
pub const PROFILES_BUCKET_MAX_AGE: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Address of Meta's data deletion callback (reached by Meta, facing the internet).
    pub listen: SocketAddr,
    /// Address of `/healthz`, `/readyz` and `/metrics`, kept off the callback port.
    pub ops_listen: SocketAddr,
    /// Longest a client may take to send a request's headers (also how long an idle keep-alive
    /// connection stays open), on the callback and ops listeners.
    #[serde(with = "humantime_ms")]
    pub header_timeout: Duration,
    /// Longest from a request's headers to its answer, reading the body included; then 408.
    #[serde(with = "humantime_ms")]
    pub request_timeout: Duration,
    /// Connections open at once, per listener; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Longest an event waits for its sender's profile; then it goes out unenriched with reason
    /// `deadline` (the look-up goes on and fills the cache for the next event).
    #[serde(with = "humantime_ms")]
    pub deadline: Duration,
    /// How long a cached profile is used. Meta's profile_pic URLs expire within days; at most 1 day
    /// (the bucket's own limit).
    #[serde(with = "humantime_ms")]
    pub cache_ttl: Duration,
    /// How long a refusal (consent required, blocked or unknown user, other permanent error) is
    /// remembered before the user is looked up again.
    #[serde(with = "humantime_ms")]
    pub negative_ttl: Duration,
    /// Users processed at once (events of one user are always processed in order, one by one).
    pub concurrency: usize,
    /// `ig.v1.req.profile` / `ig.v1.req.forget_user` requests handled at once by this process;
    /// past that a request is answered at once with a "busy, retry" reply.
    pub max_concurrent_requests: usize,
    /// Retries of a look-up that failed transiently (Meta's 1/2, 5xx, timeouts).
    pub lookup_retries: u32,
    /// Profile look-ups per second per account in this process (a token bucket; the burst is
    /// the same number).
    pub lookups_per_s: u32,
    /// When Meta's usage headers report this percentage of any budget, look-ups for the account
    /// pause for `usage_pause` (or Meta's `estimated_time_to_regain_access`).
    pub usage_pause_percent: u32,
    #[serde(with = "humantime_ms")]
    pub usage_pause: Duration,
    /// How long an account whose token was refused is not looked up for.
    #[serde(with = "humantime_ms")]
    pub auth_pause: Duration,
    /// App secrets that sign Meta's data deletion `signed_request` (several during a rotation).
    pub app_secrets: Vec<Secret>,
    /// Public base URL of this listener; the status URL answered to Meta is
    /// `<status_base_url>/meta/data-deletion/<code>`.
    pub status_base_url: String,
    /// Durable consumer name on IGRELAY_EVENTS, shared by the replicas.
    pub durable: String,
    /// Events delivered but not yet acknowledged, across replicas.
    pub max_ack_pending: i64,
    /// One replica consumes at a time (a NATS pinned-client priority group): order per
    /// conversation then holds across replicas; the others stand by. `false`: replicas share the
    /// work, and order holds per replica only.
    pub exclusive: bool,
    /// How long the active replica may stop pulling before a standby one takes over (a graceful
    /// stop hands over at once).
    #[serde(with = "humantime_ms")]
    pub pin_timeout: Duration,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8082)),
            ops_listen: SocketAddr::from(([0, 0, 0, 0], 8085)),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            deadline: Duration::from_millis(300),
            cache_ttl: Duration::from_secs(12 * 3600),
            negative_ttl: Duration::from_secs(3600),
            concurrency: 64,
            max_concurrent_requests: 256,
            lookup_retries: 2,
            lookups_per_s: 20,
            usage_pause_percent: 90,
            usage_pause: Duration::from_secs(60),
            auth_pause: Duration::from_secs(30),
            app_secrets: Vec::new(),
            status_base_url: "http://localhost:8082".into(),
            durable: "enrich".into(),
            max_ack_pending: 4096,
            exclusive: true,
            pin_timeout: Duration::from_secs(10),
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

impl EnrichConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, problem: &str| Err(ConfigError { key, problem: problem.into() });
        if self.listen == self.ops_listen && self.listen.port() != 0 {
            return err("enrich.ops_listen", "must differ from enrich.listen (keep /metrics off the callback port)");
        }
        if self.header_timeout.is_zero() {
            return err("enrich.header_timeout", "must be above 0");
        }
        if self.request_timeout.is_zero() {
            return err("enrich.request_timeout", "must be above 0");
        }
        if self.max_connections == 0 {
            return err("enrich.max_connections", "must be at least 1");
        }
        if self.deadline.is_zero() || self.deadline > Duration::from_secs(20) {
            return err("enrich.deadline", "must be above 0 and at most 20s (events are acknowledged within 30s)");
        }
        if self.cache_ttl.is_zero() || self.cache_ttl > PROFILES_BUCKET_MAX_AGE {
            return err("enrich.cache_ttl", "must be above 0 and at most 1d (profile_pic URLs expire within days)");
        }
        if self.negative_ttl.is_zero() || self.negative_ttl > PROFILES_BUCKET_MAX_AGE {
            return err("enrich.negative_ttl", "must be above 0 and at most 1d");
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return err("enrich.concurrency", "must be between 1 and 4096");
        }
        if self.max_concurrent_requests == 0 || self.max_concurrent_requests > 65_536 {
            return err("enrich.max_concurrent_requests", "must be between 1 and 65536");
        }
        if self.lookups_per_s == 0 {
            return err("enrich.lookups_per_s", "must be at least 1");
        }
        if self.usage_pause_percent == 0 || self.usage_pause_percent > 100 {
            return err("enrich.usage_pause_percent", "must be between 1 and 100");
        }
        if self.app_secrets.is_empty() || self.app_secrets.iter().any(Secret::is_empty) {
            return err(
                "enrich.app_secrets",
                "at least one non-empty app secret is required to verify Meta's data deletion signed_request",
            );
        }
        if !(self.status_base_url.starts_with("http://") || self.status_base_url.starts_with("https://")) {
            return err("enrich.status_base_url", "must be an http:// or https:// URL");
        }
        if igrelay_core::ids::check_token(&self.durable).is_err() {
            return err("enrich.durable", "must match [A-Za-z0-9_-]{1,64}");
        }
        if self.max_ack_pending < 1 {
            return err("enrich.max_ack_pending", "must be at least 1");
        }
        if self.pin_timeout < Duration::from_secs(2) {
            return err("enrich.pin_timeout", "must be at least 2s (the active replica pulls every second)");
        }
        Ok(())
    }

    /// The bounds of the callback and ops listeners.
    pub fn http_limits(&self) -> igrelay_runtime::server::HttpLimits {
        igrelay_runtime::server::HttpLimits {
            header_timeout: self.header_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections,
        }
    }

    /// The status page of a data deletion request.
    pub fn status_url(&self, code: &str) -> String {
        format!("{}/meta/data-deletion/{code}", self.status_base_url.trim_end_matches('/'))
    }
}

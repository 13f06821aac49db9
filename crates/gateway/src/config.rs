//! Gateway configuration (`[gateway]` in the TOML file, `IGRELAY_GATEWAY__*` in the environment).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use igrelay_bus::connect::humantime_ms;

use crate::auth::Scope;

/// One API key: callers present the key itself; only its SHA-256 is configured.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Names the caller in commands, outcomes, audit records and logs (never the key).
    pub id: String,
    /// Lowercase hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// What the key may do: accounts:read, accounts:admin, messages:send, conversations:read,
    /// events:read, profiles:read, profiles:admin.
    pub scopes: Vec<String>,
    /// Accounts the key may act for; empty = every account.
    #[serde(default)]
    pub accounts: Vec<String>,
}

impl ApiKeyConfig {
    /// A key entry for `key` (hashed here) with every scope and every account; for development.
    pub fn all_scopes(id: &str, key: &str) -> Self {
        Self {
            id: id.into(),
            sha256: sha256_hex(key),
            scopes: Scope::names().into_iter().map(str::to_owned).collect(),
            accounts: Vec::new(),
        }
    }
}

/// Lowercase hex SHA-256 of an API key, as `api_keys[].sha256` expects.
pub fn sha256_hex(key: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Scheduled refresh of long-lived Instagram User tokens (Instagram Login accounts).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenRefreshConfig {
    pub enabled: bool,
    /// Refresh a token once it is this old (Meta allows it from 24 h; tokens live 60 days).
    #[serde(with = "humantime_ms")]
    pub refresh_after: Duration,
    /// How often accounts are checked.
    #[serde(with = "humantime_ms")]
    pub check_interval: Duration,
}

impl Default for TokenRefreshConfig {
    fn default() -> Self {
        Self { enabled: true, refresh_after: Duration::from_secs(24 * 3600), check_interval: Duration::from_secs(600) }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// gRPC address.
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics` (HTTP).
    pub ops_listen: SocketAddr,
    /// The API keys callers authenticate with.
    pub api_keys: Vec<ApiKeyConfig>,
    /// PEM certificate chain and private key: when both are set the gateway speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve plaintext gRPC on a non-loopback `listen` (API keys would cross the network in the
    /// clear): only behind something that adds TLS (a proxy, a service mesh). Without it the
    /// gateway refuses to start there.
    pub allow_plaintext: bool,
    /// How long to wait for JetStream to acknowledge a command before answering UNAVAILABLE.
    #[serde(with = "humantime_ms")]
    pub publish_deadline: Duration,
    /// Longest wait for an outcome (`wait` on SendMessage, UploadAttachment, GetOutcome).
    #[serde(with = "humantime_ms")]
    pub max_wait: Duration,
    /// Conversations API calls per second and account (Meta allows 2).
    pub conversations_per_s: u32,
    /// A Conversations call that would have to queue longer than this for its account's rate
    /// answers RESOURCE_EXHAUSTED instead.
    #[serde(with = "humantime_ms")]
    pub conversations_max_queue: Duration,
    /// Events buffered per StreamEvents call; a caller that reads slower than events arrive
    /// holds back only its own stream once this many are waiting.
    pub events_buffer: usize,
    /// Bytes of events buffered per StreamEvents call (encoded size); a stream whose caller
    /// does not read waits once this much is buffered, like `events_buffer`.
    pub events_buffer_bytes: usize,
    /// Open StreamEvents calls per API key; one more is RESOURCE_EXHAUSTED.
    pub max_streams_per_key: usize,
    /// Outcome waits at once per API key (`wait` on SendMessage, UploadAttachment, GetOutcome);
    /// one more is RESOURCE_EXHAUSTED (before the command is accepted).
    pub max_waits_per_key: usize,
    /// How long GetUserProfile and ForgetUser wait for enrich's answer (NATS request/reply),
    /// at most the call's gRPC deadline; then DEADLINE_EXCEEDED.
    #[serde(with = "humantime_ms")]
    pub profiles_timeout: Duration,
    pub token_refresh: TokenRefreshConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            ops_listen: SocketAddr::from(([0, 0, 0, 0], 8083)),
            api_keys: Vec::new(),
            tls_cert: None,
            tls_key: None,
            allow_plaintext: false,
            publish_deadline: Duration::from_secs(2),
            max_wait: Duration::from_secs(60),
            conversations_per_s: 2,
            conversations_max_queue: Duration::from_secs(2),
            events_buffer: 16,
            events_buffer_bytes: 4 << 20,
            max_streams_per_key: 16,
            max_waits_per_key: 256,
            profiles_timeout: Duration::from_secs(5),
            token_refresh: TokenRefreshConfig::default(),
        }
    }
}

/// A configuration value that cannot work, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

/// Largest `events_buffer_bytes` (1 GiB).
const MAX_BUFFER_BYTES: usize = 1 << 30;

impl GatewayConfig {
    /// Why serving on `addr` is refused: plaintext beyond loopback without `allow_plaintext`.
    pub fn plaintext_problem(&self, addr: SocketAddr) -> Option<String> {
        let plaintext_beyond_loopback = self.tls_cert.is_none() && !addr.ip().is_loopback();
        (plaintext_beyond_loopback && !self.allow_plaintext).then(|| {
            format!(
                "{addr} is reachable beyond this host but TLS is not configured, so API keys would cross the \
                 network in the clear: set gateway.tls_cert and gateway.tls_key, listen on a loopback address, \
                 or set gateway.allow_plaintext = true when a proxy or service mesh adds TLS"
            )
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, problem: String| Err(ConfigError { key: key.into(), problem });
        if self.api_keys.is_empty() {
            return err(
                "gateway.api_keys",
                "at least one API key is required ({ id, sha256, scopes, accounts })".into(),
            );
        }
        let mut ids = HashSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            let key = format!("gateway.api_keys[{i}]");
            if k.id.trim().is_empty() {
                return err(&format!("{key}.id"), "must not be empty".into());
            }
            if !ids.insert(k.id.as_str()) {
                return err(&format!("{key}.id"), format!("{:?} appears twice", k.id));
            }
            if k.sha256.len() != 64 || hex::decode(&k.sha256).is_err() {
                return err(&format!("{key}.sha256"), "must be the 64 hex digits of the key's SHA-256".into());
            }
            if let Some(j) = self.api_keys[..i].iter().position(|o| o.sha256.eq_ignore_ascii_case(&k.sha256)) {
                return err(
                    &format!("{key}.sha256"),
                    format!(
                        "the same key as gateway.api_keys[{j}] ({:?}); each key must be distinct",
                        self.api_keys[j].id
                    ),
                );
            }
            if k.scopes.is_empty() {
                return err(&format!("{key}.scopes"), "at least one scope".into());
            }
            for s in &k.scopes {
                if Scope::parse(s).is_none() {
                    return err(
                        &format!("{key}.scopes"),
                        format!("unknown scope {s:?} (known: {})", Scope::names().join(", ")),
                    );
                }
            }
            for a in &k.accounts {
                if let Err(e) = igrelay_core::ids::check_token(a) {
                    return err(&format!("{key}.accounts"), format!("{a:?}: {e}"));
                }
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                if !c.is_file() {
                    return err("gateway.tls_cert", format!("{} is not a file", c.display()));
                }
                if !k.is_file() {
                    return err("gateway.tls_key", format!("{} is not a file", k.display()));
                }
            }
            (None, None) => {}
            (Some(_), None) => {
                return err("gateway.tls_key", "required when tls_cert is set".into());
            }
            (None, Some(_)) => {
                return err("gateway.tls_cert", "required when tls_key is set".into());
            }
        }
        if self.publish_deadline.is_zero() {
            return err("gateway.publish_deadline", "must be above 0".into());
        }
        if self.max_wait.is_zero() {
            return err("gateway.max_wait", "must be above 0".into());
        }
        if self.conversations_per_s == 0 {
            return err("gateway.conversations_per_s", "must be at least 1".into());
        }
        if self.events_buffer == 0 {
            return err("gateway.events_buffer", "must be at least 1".into());
        }
        if !(1024..=MAX_BUFFER_BYTES).contains(&self.events_buffer_bytes) {
            return err("gateway.events_buffer_bytes", format!("must be between 1024 and {MAX_BUFFER_BYTES}"));
        }
        if self.max_streams_per_key == 0 {
            return err("gateway.max_streams_per_key", "must be at least 1".into());
        }
        if self.max_waits_per_key == 0 {
            return err("gateway.max_waits_per_key", "must be at least 1".into());
        }
        if let Some(problem) = self.plaintext_problem(self.listen) {
            return err("gateway.listen", problem);
        }
        if self.profiles_timeout.is_zero() {
            return err("gateway.profiles_timeout", "must be above 0".into());
        }
        if self.token_refresh.enabled && self.token_refresh.check_interval.is_zero() {
            return err("gateway.token_refresh.check_interval", "must be above 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> GatewayConfig {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            api_keys: vec![ApiKeyConfig::all_scopes("a", "key-a"), ApiKeyConfig::all_scopes("b", "key-b")],
            ..Default::default()
        }
    }

    fn problem(cfg: &GatewayConfig) -> (String, String) {
        let e = cfg.validate().unwrap_err();
        (e.key, e.problem)
    }

    #[test]
    fn bad_api_keys_are_named() {
        assert!(valid().validate().is_ok());

        let mut c = valid();
        c.api_keys[1].scopes = vec!["messages:send".into(), "messages:write".into()];
        let (key, why) = problem(&c);
        assert_eq!(key, "gateway.api_keys[1].scopes");
        assert!(why.contains("unknown scope \"messages:write\"") && why.contains("messages:send"), "{why}");

        for bad in ["abc", &"g".repeat(64), &"a".repeat(63)] {
            let mut c = valid();
            c.api_keys[0].sha256 = bad.to_string();
            let (key, why) = problem(&c);
            assert_eq!(key, "gateway.api_keys[0].sha256", "{bad}");
            assert!(why.contains("64 hex digits"), "{why}");
        }

        let mut c = valid();
        c.api_keys[1].id = "a".into();
        let (key, why) = problem(&c);
        assert_eq!(key, "gateway.api_keys[1].id");
        assert!(why.contains("\"a\" appears twice"), "{why}");

        let mut c = valid();
        c.api_keys[1].sha256 = c.api_keys[0].sha256.to_uppercase();
        let (key, why) = problem(&c);
        assert_eq!(key, "gateway.api_keys[1].sha256");
        assert!(why.contains("gateway.api_keys[0]"), "{why}");

        let mut c = valid();
        c.api_keys[0].accounts = vec!["a.b".into()];
        assert_eq!(problem(&c).0, "gateway.api_keys[0].accounts");
        let mut c = valid();
        c.api_keys[0].scopes.clear();
        assert_eq!(problem(&c).0, "gateway.api_keys[0].scopes");
        let mut c = valid();
        c.api_keys.clear();
        assert_eq!(problem(&c).0, "gateway.api_keys");
    }

    #[test]
    fn plaintext_beyond_loopback_needs_tls_or_an_explicit_allowance() {
        let mut c = valid();
        c.listen = SocketAddr::from(([0, 0, 0, 0], 50051));
        let (key, why) = problem(&c);
        assert_eq!(key, "gateway.listen");
        assert!(why.contains("gateway.tls_cert") && why.contains("gateway.allow_plaintext"), "{why}");
        c.listen = "[::]:50051".parse().unwrap();
        assert_eq!(problem(&c).0, "gateway.listen");
        c.listen = "10.1.2.3:50051".parse().unwrap();
        assert_eq!(problem(&c).0, "gateway.listen");
        c.allow_plaintext = true;
        assert!(c.validate().is_ok());
        c.allow_plaintext = false;
        c.listen = "[::1]:50051".parse().unwrap();
        assert!(c.validate().is_ok());
        // With TLS configured, any address is fine.
        assert!(c.plaintext_problem("0.0.0.0:1".parse().unwrap()).is_some());
        c.tls_cert = Some("cert.pem".into());
        assert!(c.plaintext_problem("0.0.0.0:1".parse().unwrap()).is_none());
    }

    #[test]
    fn resource_bounds_are_checked() {
        let mut c = valid();
        c.max_streams_per_key = 0;
        assert_eq!(problem(&c).0, "gateway.max_streams_per_key");
        let mut c = valid();
        c.max_waits_per_key = 0;
        assert_eq!(problem(&c).0, "gateway.max_waits_per_key");
        let mut c = valid();
        c.events_buffer_bytes = 10;
        assert_eq!(problem(&c).0, "gateway.events_buffer_bytes");
    }
}

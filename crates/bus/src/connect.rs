//! Connecting to NATS with the behaviour every igrelay service wants.

use std::path::PathBuf;
use std::time::Duration;

use igrelay_runtime::Secret;

use crate::BusError;

/// How a service connects to NATS. Production NATS always has auth: set one of `creds_file`,
/// `nkey_seed_file`, `user` + `password` or `token`, and TLS when the network is not private.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectConfig {
    /// NATS server URL(s), comma separated. Credentials in a URL (`nats://user:pass@host`) work
    /// but are shown as `<redacted>` in output and logs; prefer the keys below.
    #[serde(serialize_with = "serialize_urls")]
    pub url: String,
    /// Connection name shown in the server's monitoring (`connz`).
    pub name: String,
    /// Longest pause between reconnect attempts.
    #[serde(with = "humantime_ms")]
    pub max_reconnect_delay: Duration,
    /// Timeout of JetStream API calls and publish acknowledgements.
    #[serde(with = "humantime_ms")]
    pub request_timeout: Duration,
    /// A `.creds` file (JWT + nkey seed), as `nsc` or Synadia Cloud hand out.
    pub creds_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU…`), for servers configured with nkey users.
    pub nkey_seed_file: Option<PathBuf>,
    /// User name, with `password`.
    pub user: String,
    pub password: Secret,
    /// A token, for servers configured with `authorization { token }`.
    pub token: Secret,
    /// PEM file of the CA(s) that signed the server's certificate (TLS).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients (mutual TLS).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to talk to a server without TLS.
    pub require_tls: bool,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            name: "igrelay".into(),
            max_reconnect_delay: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            creds_file: None,
            nkey_seed_file: None,
            user: String::new(),
            password: Secret::default(),
            token: Secret::default(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            require_tls: false,
        }
    }
}

/// Like the derived one, with the URLs' credentials redacted (the secrets redact themselves).
impl std::fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("url", &self.display_url())
            .field("name", &self.name)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("request_timeout", &self.request_timeout)
            .field("creds_file", &self.creds_file)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

impl ConnectConfig {
    /// The URL(s) with any credentials replaced, for output and logs.
    pub fn display_url(&self) -> String {
        redact_urls(&self.url)
    }

    /// Which way of authenticating is configured, for error messages (the keys to check).
    pub fn auth_method(&self) -> &'static str {
        if self.creds_file.is_some() {
            "nats.creds_file"
        } else if self.nkey_seed_file.is_some() {
            "nats.nkey_seed_file"
        } else if !self.user.is_empty() {
            "nats.user/nats.password"
        } else if !self.token.is_empty() {
            "nats.token"
        } else if self.url.contains('@') {
            "credentials in nats.url"
        } else {
            "none configured (nats.creds_file, nats.nkey_seed_file, nats.user/nats.password or nats.token)"
        }
    }

    /// Checks what can be checked before connecting: one way of authenticating, whole pairs.
    pub fn validate(&self) -> Result<(), BusError> {
        let invalid = |problem: &str| Err(BusError::Config(problem.to_owned()));
        let methods = [
            self.creds_file.is_some(),
            self.nkey_seed_file.is_some(),
            !self.user.is_empty() || !self.password.is_empty(),
            !self.token.is_empty(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return invalid(
                "nats: set only one of creds_file, nkey_seed_file, user/password and token (the server expects one)",
            );
        }
        if self.user.is_empty() != self.password.is_empty() {
            return invalid("nats.user and nats.password go together: set both or neither");
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return invalid("nats.tls_cert_file and nats.tls_key_file go together: set both or neither");
        }
        for (key, path) in [
            ("nats.creds_file", &self.creds_file),
            ("nats.nkey_seed_file", &self.nkey_seed_file),
            ("nats.tls_ca_file", &self.tls_ca_file),
            ("nats.tls_cert_file", &self.tls_cert_file),
            ("nats.tls_key_file", &self.tls_key_file),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                return Err(BusError::Config(format!("{key}: file {} does not exist", p.display())));
            }
        }
        Ok(())
    }

    async fn options(&self) -> Result<async_nats::ConnectOptions, BusError> {
        let mut opts = async_nats::ConnectOptions::new();
        if let Some(path) = &self.creds_file {
            opts = opts.credentials_file(path).await.map_err(|e| {
                BusError::Config(format!("nats.creds_file {}: not a usable .creds file: {e}", path.display()))
            })?;
        }
        if let Some(path) = &self.nkey_seed_file {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| BusError::Config(format!("nats.nkey_seed_file {}: cannot read: {e}", path.display())))?;
            let seed = seed.trim();
            // The seed is checked here so a bad file is named now, not on every reconnect.
            if !seed.starts_with("SU") {
                return Err(BusError::Config(format!(
                    "nats.nkey_seed_file {}: not an nkey user seed (a line starting with SU)",
                    path.display()
                )));
            }
            opts = opts.nkey(seed.to_owned());
        }
        if !self.user.is_empty() {
            opts = opts.user_and_password(self.user.clone(), self.password.expose().to_owned());
        }
        if !self.token.is_empty() {
            opts = opts.token(self.token.expose().to_owned());
        }
        if let Some(ca) = &self.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(opts.require_tls(self.require_tls))
    }
}

/// Replaces the user information of every URL in a comma-separated list:
/// `nats://alice:pw@host:4222` → `nats://<redacted>@host:4222`.
pub fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            let rest_at = url.find("://").map_or(0, |i| i + 3);
            let (scheme, rest) = url.split_at(rest_at);
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}{}{}", igrelay_runtime::REDACTED, &rest[at..]),
                None => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn serialize_urls<S: serde::Serializer>(urls: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_urls(urls))
}

/// Connects, retrying in the background if the server is not up yet, so a service can start
/// (and report not-ready) before NATS does, as happens on Kubernetes. Credentials the server
/// refuses are an error at once, naming the setting to check: retrying cannot fix them.
pub async fn connect(cfg: &ConnectConfig) -> Result<async_nats::Client, BusError> {
    cfg.validate()?;
    let url = cfg.display_url();
    // One attempt without retries tells refused credentials and TLS trouble apart from a
    // server that is not up yet.
    match with_behaviour(cfg.options().await?, cfg).connect(&cfg.url).await {
        Ok(client) => return Ok(client),
        Err(e) => match e.kind() {
            async_nats::ConnectErrorKind::AuthorizationViolation | async_nats::ConnectErrorKind::Authentication => {
                return Err(BusError::Auth { url, method: cfg.auth_method(), source: e });
            }
            async_nats::ConnectErrorKind::Tls => return Err(BusError::Tls { url, source: e }),
            // A certificate the client does not trust comes as an I/O error with invalid data.
            async_nats::ConnectErrorKind::Io if is_invalid_data(&e) => return Err(BusError::Tls { url, source: e }),
            async_nats::ConnectErrorKind::ServerParse => {
                return Err(BusError::Connect { url, source: e });
            }
            _ => tracing::warn!(%url, error = %e, "NATS not reachable yet; retrying in the background"),
        },
    }
    with_behaviour(cfg.options().await?, cfg)
        .retry_on_initial_connect()
        .connect(&cfg.url)
        .await
        .map_err(|source| BusError::Connect { url, source })
}

fn is_invalid_data(e: &async_nats::ConnectError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
}

/// Reconnect, timeout and event-logging behaviour every connection shares.
fn with_behaviour(opts: async_nats::ConnectOptions, cfg: &ConnectConfig) -> async_nats::ConnectOptions {
    let max_delay = cfg.max_reconnect_delay;
    let method = cfg.auth_method();
    opts.name(&cfg.name)
        .max_reconnects(None)
        .request_timeout(Some(cfg.request_timeout))
        .reconnect_delay_callback(move |attempts| {
            // 50 ms doubling, capped: a restarted server is found again quickly.
            let exp = 50u64.saturating_mul(1u64 << attempts.min(16));
            Duration::from_millis(exp).min(max_delay)
        })
        .event_callback(move |event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("nats connected"),
                async_nats::Event::Disconnected => tracing::warn!("nats disconnected"),
                async_nats::Event::ServerError(async_nats::ServerError::AuthorizationViolation) => {
                    tracing::error!(auth = method, "NATS refused our credentials (authorization violation)");
                }
                other => tracing::info!(event = %other, "nats event"),
            }
        })
}

/// A JetStream context whose API and publish-ack timeout is `timeout`.
pub fn jetstream(client: async_nats::Client, timeout: Duration) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new().timeout(timeout).build(client)
}

/// Whether the client is connected right now.
pub fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// Durations in configuration are written in milliseconds (`request_timeout = 5000`) or as
/// strings with a unit (`"5s"`, `"250ms"`, `"2m"`, `"1h"`, `"7d"`).
pub mod humantime_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Written back in the largest unit that divides it exactly: `"2h"`, `"500ms"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let ms = d.as_millis() as u64;
        let text = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")]
            .iter()
            .find(|(unit, _)| ms > 0 && ms.is_multiple_of(*unit))
            .map(|(unit, name)| format!("{}{name}", ms / unit))
            .unwrap_or_else(|| format!("{ms}ms"));
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Ms(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }

    /// Parses `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"7d"` or a bare number of milliseconds.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("{text:?} is not a duration like 250ms, 5s, 2m, 1h or 7d"))?;
        let ms = match unit.trim() {
            "" | "ms" => n,
            "s" => n * 1000,
            "m" => n * 60_000,
            "h" => n * 3_600_000,
            "d" => n * 86_400_000,
            other => {
                return Err(format!("unknown duration unit {other:?} in {text:?} (use ms, s, m, h or d)"));
            }
        };
        Ok(Duration::from_millis(ms))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn parses_units() {
            assert_eq!(super::parse("250ms").unwrap().as_millis(), 250);
            assert_eq!(super::parse("5s").unwrap().as_secs(), 5);
            assert_eq!(super::parse("7d").unwrap().as_secs(), 7 * 86400);
            assert_eq!(super::parse("1500").unwrap().as_millis(), 1500);
            assert!(super::parse("5 parsecs").is_err());
            assert!(super::parse("").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_credentials() {
        use super::{ConnectConfig, redact_urls};
        assert_eq!(redact_urls("nats://a:b@h:4222"), "nats://<redacted>@h:4222");
        assert_eq!(redact_urls("nats://tok@h:1, tls://h2:2"), "nats://<redacted>@h:1,tls://h2:2");
        assert_eq!(redact_urls("u:p@h:4222"), "<redacted>@h:4222");
        assert_eq!(redact_urls("nats://h:4222"), "nats://h:4222");
        let cfg = ConnectConfig { url: "nats://a:pw@h:1".into(), ..Default::default() };
        assert!(!format!("{cfg:?}").contains("pw"), "{cfg:?}");
    }
}

//! Connecting to NATS with the behaviour every igrelay service wants.

use std::time::Duration;

use crate::BusError;

/// How a service connects to NATS.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectConfig {
    /// NATS server URL(s), comma separated.
    pub url: String,
    /// Connection name shown in the server's monitoring (`connz`).
    pub name: String,
    /// Longest pause between reconnect attempts.
    #[serde(with = "humantime_ms")]
    pub max_reconnect_delay: Duration,
    /// Timeout of JetStream API calls and publish acknowledgements.
    #[serde(with = "humantime_ms")]
    pub request_timeout: Duration,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            name: "igrelay".into(),
            max_reconnect_delay: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Connects, retrying in the background if the server is not up yet, so a service can start
/// (and report not-ready) before NATS does, as happens on Kubernetes.
pub async fn connect(cfg: &ConnectConfig) -> Result<async_nats::Client, BusError> {
    let max_delay = cfg.max_reconnect_delay;
    async_nats::ConnectOptions::new()
        .name(&cfg.name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .request_timeout(Some(cfg.request_timeout))
        .reconnect_delay_callback(move |attempts| {
            // 50 ms doubling, capped: a restarted server is found again quickly.
            let exp = 50u64.saturating_mul(1u64 << attempts.min(16));
            Duration::from_millis(exp).min(max_delay)
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("nats connected"),
                async_nats::Event::Disconnected => tracing::warn!("nats disconnected"),
                other => tracing::info!(event = %other, "nats event"),
            }
        })
        .connect(&cfg.url)
        .await
        .map_err(|source| BusError::Connect { url: cfg.url.clone(), source })
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

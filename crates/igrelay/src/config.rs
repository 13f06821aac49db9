//! The configuration of every service, in one file with one section per service.
//!
//! Layers, later wins: built-in defaults → TOML file (`--config`) → environment
//! (`IGRELAY_<SECTION>__<KEY>`, e.g. `IGRELAY_NATS__URL`, `IGRELAY_INGEST__APP_SECRETS='["a","b"]'`)
//! → `--set section.key=value`. Unknown keys are errors that name the key.

use std::path::Path;

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use igrelay_bus::{BusConfig, ConnectConfig, TopologyConfig};
use igrelay_ingest::IngestConfig;
use igrelay_runtime::telemetry::LogFormat;

#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogConfig,
    pub nats: ConnectConfig,
    pub topology: TopologyConfig,
    pub ingest: IngestConfig,
    pub dispatch: igrelay_dispatch::DispatchConfig,
    /// The gRPC gateway (`igrelay gateway`).
    pub gateway: igrelay_gateway::GatewayConfig,
    /// The Graph API: Meta's hosts in production, the emulator in `igrelay dev`.
    pub graph: igrelay_graph::GraphConfig,
    /// Protection of stored access tokens.
    pub accounts: igrelay_accounts::AccountsConfig,
    /// The Graph API emulator (`igrelay emulator`, and inside `igrelay dev`).
    pub emulator: igrelay_emulator::EmulatorConfig,
    /// Profile enrichment (`igrelay enrich`).
    pub enrich: igrelay_enrich::EnrichConfig,
}

#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (default) or `text`. The level is set with RUST_LOG (default `info`).
    pub format: LogFormat,
}

/// Keys whose values are never printed.
const SECRET_KEYS: [&str; 7] =
    ["verify_token", "app_secrets", "app_secret", "key", "token", "page_token", "user_token"];

impl Config {
    pub fn load(file: Option<&Path>, sets: &[String]) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            anyhow::ensure!(path.is_file(), "configuration file {} does not exist", path.display());
            fig = fig.merge(Toml::file(path));
        }
        // Only sectioned variables are configuration; others like IGRELAY_CONFIG are not.
        fig = fig.merge(Env::prefixed("IGRELAY_").filter(|k| k.as_str().contains("__")).split("__"));
        for set in sets {
            let (key, value) = set
                .split_once('=')
                .with_context(|| format!("--set {set:?}: expected KEY=VALUE, e.g. nats.url=nats://host:4222"))?;
            let value: toml::Value = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_owned()));
            fig = fig.merge(Serialized::global(key.trim(), value));
        }
        fig.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }

    pub fn bus(&self) -> BusConfig {
        BusConfig { nats: self.nats.clone(), topology: self.topology.clone() }
    }

    /// The configuration as TOML with secrets replaced.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut value = toml::Value::try_from(self)?;
        redact(&mut value);
        Ok(toml::to_string_pretty(&value)?)
    }
}

fn redact(v: &mut toml::Value) {
    if let toml::Value::Table(t) = v {
        for (k, child) in t.iter_mut() {
            if SECRET_KEYS.contains(&k.as_str()) {
                *child = match child {
                    toml::Value::Array(a) => {
                        toml::Value::Array(a.iter().map(|_| toml::Value::String("<redacted>".into())).collect())
                    }
                    _ => toml::Value::String("<redacted>".into()),
                };
            } else {
                redact(child);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_file_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("igrelay.toml");
        std::fs::write(
            &path,
            "[ingest]\nverify_token = \"from-file\"\nmax_body_bytes = 2048\n[nats]\nurl = \"nats://file:4222\"\n",
        )
        .unwrap();
        let cfg = Config::load(
            Some(&path),
            &[
                "nats.url=nats://flag:4222".into(),
                "ingest.app_secrets=[\"s1\",\"s2\"]".into(),
                "topology.duplicate_window=\"30m\"".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.ingest.verify_token.expose(), "from-file");
        assert_eq!(cfg.ingest.max_body_bytes, 2048);
        assert_eq!(cfg.nats.url, "nats://flag:4222");
        assert_eq!(cfg.ingest.app_secrets.len(), 2);
        assert_eq!(cfg.topology.duplicate_window.as_secs(), 1800);
        let shown = cfg.redacted_toml().unwrap();
        assert!(!shown.contains("from-file") && !shown.contains("s1"), "{shown}");
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        let e = Config::load(None, &["ingest.verfy_token=x".into()]).unwrap_err().to_string();
        assert!(e.contains("verfy_token"), "{e}");
        let e = Config::load(None, &["ingest.listen=\"not an address\"".into()]).unwrap_err().to_string();
        assert!(e.contains("listen"), "{e}");
        let e = Config::load(None, &["topology.duplicate_window=\"5 parsecs\"".into()]).unwrap_err().to_string();
        assert!(e.contains("duplicate_window"), "{e}");
    }
}

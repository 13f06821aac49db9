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

impl Config {
    pub fn load(file: Option<&Path>, sets: &[String]) -> anyhow::Result<Self> {
        // No serialized defaults: every section is `#[serde(default)]`, and serializing would
        // turn each `Secret` into its redacted form.
        let mut fig = Figment::new();
        if let Some(path) = file {
            anyhow::ensure!(path.is_file(), "configuration file {} does not exist", path.display());
            check_toml_syntax(path)?;
            fig = fig.merge(Toml::file(path));
        }
        // Only sectioned variables are configuration; others like IGRELAY_CONFIG are not.
        fig = fig.merge(Env::prefixed("IGRELAY_").filter(|k| k.as_str().contains("__")).split("__"));
        for set in sets {
            let Some((key, value)) = set.split_once('=') else {
                // The whole argument may be a secret pasted without its key: not echoed.
                anyhow::bail!("--set: expected KEY=VALUE, e.g. nats.url=nats://host:4222");
            };
            let value: toml::Value = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_owned()));
            fig = fig.merge(Serialized::global(key.trim(), value));
        }
        fig.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {}", without_values(e)))
    }

    pub fn bus(&self) -> BusConfig {
        BusConfig { nats: self.nats.clone(), topology: self.topology.clone() }
    }

    /// The configuration as TOML. Every secret is a type that serializes as `<redacted>`
    /// (`Secret`, the Graph `AccessToken`, credentials in NATS URLs), so nothing is
    /// looked up by key name here.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(&toml::Value::try_from(self)?)?)
    }
}

/// A TOML syntax error names the line and column only: the parser's own message quotes the
/// offending line, which may hold a secret.
fn check_toml_syntax(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read configuration file {}", path.display()))?;
    if let Err(e) = text.parse::<toml::Table>() {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {column}")
        });
        anyhow::bail!(
            "configuration file {}: TOML syntax error{}: {}",
            path.display(),
            at.unwrap_or_default(),
            e.message()
        );
    }
    Ok(())
}

/// Figment's errors quote the value that did not fit (`found string "…"`), which may be a
/// secret (a wrongly quoted `IGRELAY_ACCOUNTS__TOKEN_KEYS`, say). Each error keeps its key, what
/// was expected and the kind of value found, never the value.
fn without_values(e: figment::Error) -> String {
    use figment::error::{Actual, Kind};
    let hide = |a: Actual| {
        Actual::Other(
            match a {
                Actual::Bool(_) => "a boolean",
                Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
                Actual::Float(_) => "a float",
                Actual::Char(_) | Actual::Str(_) => "a string",
                Actual::Bytes(_) => "bytes",
                Actual::Seq => "a list",
                Actual::Map => "a table",
                _ => "another kind of value",
            }
            .into(),
        )
    };
    e.into_iter()
        .map(|mut err| {
            err.kind = match err.kind {
                Kind::InvalidType(a, exp) => Kind::InvalidType(hide(a), exp),
                Kind::InvalidValue(a, exp) => Kind::InvalidValue(hide(a), exp),
                Kind::Unsupported(a) => Kind::Unsupported(hide(a)),
                Kind::UnsupportedKey(a, exp) => Kind::UnsupportedKey(hide(a), exp),
                other => other,
            };
            err.to_string()
        })
        .collect::<Vec<_>>()
        .join("; ")
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
    fn every_secret_is_redacted_by_its_type() {
        let key = "c2VjcmV0LXRva2VuLWtleS1ieXRlcy0zMi1ieXRlcyE=";
        let cfg = Config::load(
            None,
            &[
                format!("accounts.token_keys=[{{id=\"k1\",key=\"{key}\"}}]"),
                "graph.app_secret=\"graph-app-secret\"".into(),
                "nats.password=\"nats-password\"".into(),
                "nats.token=\"nats-token\"".into(),
                "nats.url=\"nats://alice:url-password@nats-1:4222,nats://url-token@nats-2:4222\"".into(),
                "emulator.app_secret=\"emulator-secret\"".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.accounts.token_keys[0].key.expose(), key);
        let shown = cfg.redacted_toml().unwrap();
        for secret in [
            key,
            "graph-app-secret",
            "nats-password",
            "nats-token",
            "url-password",
            "url-token",
            "emulator-secret",
            "IGAAemulatortoken1",
        ] {
            assert!(!shown.contains(secret), "{secret} in\n{shown}");
        }
        assert!(shown.contains("id = \"k1\"") && shown.contains("nats-1:4222"), "{shown}");
    }

    #[test]
    fn a_malformed_secret_is_named_but_never_echoed() {
        // A missing closing quote and bracket: the value is taken as a plain string, which is
        // not a list of keys.
        let set = "accounts.token_keys=[{id=\"k1\",key=\"c2VjcmV0LWJ5dGVz".to_string();
        let e = Config::load(None, &[set]).unwrap_err().to_string();
        assert!(e.contains("token_keys"), "{e}");
        assert!(!e.contains("c2VjcmV0LWJ5dGVz"), "{e}");
        let e = Config::load(None, &["ingest.verify_token=[1]".into()]).unwrap_err().to_string();
        assert!(e.contains("verify_token") && !e.contains("[1]"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("igrelay.toml");
        std::fs::write(&path, "[ingest]\nverify_token = \"file-secret-value\n").unwrap();
        let e = Config::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(e.contains("line 2") && !e.contains("file-secret-value"), "{e}");
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

use crate::token::AccessToken;
use std::time::Duration;

/// How to reach the Graph API. Defaults are Meta's production hosts and the API version the
/// seeds document; tests and `igrelay dev` point both base URLs at the emulator.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphConfig {
    /// Base URL of the Instagram Login host.
    pub instagram_base_url: String,
    /// Base URL of the Facebook Login host.
    pub facebook_base_url: String,
    /// Version path prefix, e.g. `v23.0`. Pinned, because Meta retires fields per version.
    pub api_version: String,
    /// Whole-request timeout in milliseconds.
    pub timeout_ms: u64,
    /// Connect timeout in milliseconds.
    pub connect_timeout_ms: u64,
    /// App secret; when set every call carries `appsecret_proof` (required when the app has
    /// "Require App Secret" switched on).
    pub app_secret: Option<AccessToken>,
    /// Wait suggested for a throttling error when the usage headers give none, in seconds.
    pub default_throttle_wait_s: u64,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            instagram_base_url: "https://graph.instagram.com".into(),
            facebook_base_url: "https://graph.facebook.com".into(),
            api_version: "v23.0".into(),
            timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            app_secret: None,
            default_throttle_wait_s: 60,
        }
    }
}

impl GraphConfig {
    /// Both hosts served by one base URL (the emulator).
    pub fn single_host(base_url: impl Into<String>) -> Self {
        let base = base_url.into();
        Self { instagram_base_url: base.clone(), facebook_base_url: base, ..Self::default() }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl std::fmt::Debug for GraphConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphConfig")
            .field("instagram_base_url", &self.instagram_base_url)
            .field("facebook_base_url", &self.facebook_base_url)
            .field("api_version", &self.api_version)
            .field("timeout_ms", &self.timeout_ms)
            .field("app_secret", &self.app_secret.as_ref().map(|_| "***"))
            .finish()
    }
}

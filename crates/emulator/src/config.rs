use std::net::SocketAddr;

/// Per-account rate limits, one per class of call (RL-M, RL-G, CP, MEDIA). Where Meta's pages
/// disagree the default is the current, higher figure and the value is configurable.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Send API text, links, reactions, stickers per second (RL-M says 300, IG-OV 100).
    pub send_per_s: u32,
    /// Send API audio or video per second.
    pub send_media_per_s: u32,
    /// Conversations API calls per second.
    pub conversations_per_s: u32,
    /// Private replies per hour.
    pub private_replies_per_h: u32,
    /// Every other call (Business Use Case), per 24 h: 4800 × impressions; the emulator takes a
    /// fixed figure standing for an account with 100 impressions.
    pub buc_calls_per_24h: u32,
    /// API-published posts per moving 24 h (CP says 100; the CPL sample shows 50).
    pub publishes_per_24h: u32,
    /// Media containers created per moving 24 h.
    pub containers_per_24h: u32,
    /// App-wide calls per hour behind `X-App-Usage` percentages.
    pub app_calls_per_h: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            send_per_s: 300,
            send_media_per_s: 10,
            conversations_per_s: 2,
            private_replies_per_h: 750,
            buc_calls_per_24h: 480_000,
            publishes_per_24h: 100,
            containers_per_24h: 400,
            app_calls_per_h: 1_000_000,
        }
    }
}

impl RateLimits {
    /// Limits so high that only tests about limits ever meet them.
    pub fn unlimited() -> Self {
        Self {
            send_per_s: u32::MAX,
            send_media_per_s: u32::MAX,
            conversations_per_s: u32::MAX,
            private_replies_per_h: u32::MAX,
            buc_calls_per_24h: u32::MAX,
            publishes_per_24h: 100,
            containers_per_24h: 400,
            app_calls_per_h: u32::MAX,
        }
    }
}

/// How the emulator delivers webhooks.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (e.g. ingest's `http://127.0.0.1:8080/webhooks/instagram`). None: events are
    /// recorded as undelivered and can be read through the admin API.
    pub callback_url: Option<String>,
    /// Most updates in one POST. Meta batches up to 1000 but does not promise to.
    pub batch_max: usize,
    /// How long to wait for more updates before sending a batch, in milliseconds.
    pub batch_window_ms: u64,
    /// Delays before each retry of a batch answered non-2xx: Meta retries at once, then ever
    /// less often, for up to 36 h. The list length is the number of retries.
    pub retry_delays_ms: Vec<u64>,
    /// Per-attempt timeout in milliseconds (Meta wants an answer within 5 s).
    pub timeout_ms: u64,
    /// `changes` (Facebook Login: `entry[].changes[{field,value}]`) or `flat` (the Instagram
    /// Login example: `field`/`value` directly in the entry). Meta's pages show both.
    pub changes_style: ChangesStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangesStyle {
    #[default]
    Changes,
    Flat,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            callback_url: None,
            batch_max: 1,
            batch_window_ms: 0,
            retry_delays_ms: vec![0, 1_000, 5_000, 30_000, 120_000, 600_000],
            timeout_ms: 5_000,
            changes_style: ChangesStyle::Changes,
        }
    }
}

/// An account present from the start (so `igrelay dev` works without admin calls).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountSeed {
    pub ig_id: String,
    pub username: String,
    pub page_id: String,
    /// Instagram User token (Instagram Login host).
    #[serde(serialize_with = "redacted")]
    pub token: String,
    /// Page token (Facebook Login host).
    #[serde(serialize_with = "redacted")]
    pub page_token: String,
    /// Facebook User token (for `/me/accounts`).
    #[serde(serialize_with = "redacted")]
    pub user_token: String,
    pub followers: u64,
}

impl Default for AccountSeed {
    fn default() -> Self {
        Self {
            ig_id: "17841400000000001".into(),
            username: "emulated.business".into(),
            page_id: "100000000000001".into(),
            token: "IGAAemulatortoken1".into(),
            page_token: "EAAemulatorpagetoken1".into(),
            user_token: "EAAemulatorusertoken1".into(),
            followers: 1_000,
        }
    }
}

/// The emulator's configuration. Every field has a default; `[emulator]` in the TOML file.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    /// Signs webhooks (`X-Hub-Signature-256`) and checks `appsecret_proof`.
    #[serde(serialize_with = "redacted")]
    pub app_secret: String,
    /// Sent in the GET handshake (`POST /_admin/webhook/verify`), as Meta does when a callback
    /// URL is configured.
    #[serde(serialize_with = "redacted")]
    pub verify_token: String,
    pub app_id: String,
    pub app_name: String,
    /// Reject calls without a valid `appsecret_proof` ("Require App Secret").
    pub require_appsecret_proof: bool,
    pub rate_limits: RateLimits,
    /// How long a container stays IN_PROGRESS before FINISHED, in milliseconds.
    pub container_delay_ms: u64,
    /// Start with a frozen clock at this instant (ms since the epoch); time then moves only
    /// through `POST /_admin/clock`. None: the wall clock.
    pub frozen_clock_ms: Option<i64>,
    pub webhooks: WebhookConfig,
    pub accounts: Vec<AccountSeed>,
    /// Seed of the deterministic generator behind error rates and ids of generated users.
    pub seed: u64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
            app_secret: "emulator-app-secret".into(),
            verify_token: "emulator-verify-token".into(),
            app_id: "900000000000001".into(),
            app_name: "igrelay".into(),
            require_appsecret_proof: false,
            rate_limits: RateLimits::default(),
            container_delay_ms: 3_000,
            frozen_clock_ms: None,
            webhooks: WebhookConfig::default(),
            accounts: vec![AccountSeed::default()],
            seed: 42,
        }
    }
}

impl EmulatorConfig {
    /// For tests: port 0, frozen clock, no limits that a test does not ask for, immediate retries.
    pub fn for_tests() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate_limits: RateLimits::unlimited(),
            frozen_clock_ms: Some(1_760_000_000_000),
            webhooks: WebhookConfig { retry_delays_ms: vec![0, 10, 10], timeout_ms: 2_000, ..WebhookConfig::default() },
            ..Self::default()
        }
    }
}

/// The emulator's secrets show as `<redacted>` in `igrelay config` like every other secret.
fn redacted<S: serde::Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if value.is_empty() { "" } else { "<redacted>" })
}

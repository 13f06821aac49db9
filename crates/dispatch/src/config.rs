//! Dispatch configuration (`[dispatch]`).

use std::net::SocketAddr;
use std::time::Duration;

use igrelay_bus::connect::humantime_ms;

/// Meta's per-account send limits (platform facts §2). Meta's pages disagree on the text limit
/// (300/s on the Messenger rate-limit page, 100/s on the older Instagram overview): 300 is the
/// default because it is the current page; set 100 to be conservative.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Text, links, reactions, stickers, images, templates, sender actions per second.
    pub send_per_s: u32,
    /// Audio and video messages per second.
    pub media_per_s: u32,
    /// Private replies to comments on posts and reels per hour.
    pub private_replies_per_h: u32,
    /// Private replies to Live comments per second.
    pub live_private_replies_per_s: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { send_per_s: 300, media_per_s: 10, private_replies_per_h: 750, live_private_replies_per_s: 100 }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
    pub limits: Limits,
    /// Messaging window after the user's last message (Meta: 24 h).
    #[serde(with = "humantime_ms")]
    pub window: Duration,
    /// Window with the HUMAN_AGENT tag (Meta: 7 days).
    #[serde(with = "humantime_ms")]
    pub human_agent_window: Duration,
    /// How long after a comment a private reply may be sent (Meta: 7 days).
    #[serde(with = "humantime_ms")]
    pub private_reply_window: Duration,
    /// When no window is known yet for a user, wait this long for the events consumer to catch
    /// up before refusing (a reply often follows the user's message within milliseconds).
    #[serde(with = "humantime_ms")]
    pub window_grace: Duration,
    /// Usage percentage (X-App-Usage / X-Business-Use-Case-Usage) from which calls of the
    /// account are spaced out.
    pub usage_slowdown_percent: u32,
    /// Commands handled at once per partition (different recipients; one recipient is always
    /// served in order, one at a time).
    pub max_in_flight: usize,
    /// Deadline of commands that carry none.
    #[serde(with = "humantime_ms")]
    pub default_deadline: Duration,
    /// First retry delay after a transient error; doubles up to `retry_max`, with jitter.
    #[serde(with = "humantime_ms")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_ms")]
    pub retry_max: Duration,
    /// Longest wait after a throttling error when the usage headers give no time.
    #[serde(with = "humantime_ms")]
    pub throttle_wait: Duration,
    /// How long JetStream waits for an acknowledgement before delivering a command again (long
    /// calls and waits send progress acks every third of it). It also bounds how long the commands
    /// a killed process held take to reach the next owner.
    #[serde(with = "humantime_ms")]
    pub ack_wait: Duration,
    /// Unacknowledged commands a partition's consumer may hold (queued, parked, in flight) before
    /// JetStream stops giving it more. Unset: 8 × `max_in_flight`, at least 1024.
    pub max_ack_pending: Option<usize>,
    /// Commands of one account that cannot call Meta (needs re-authorisation, paused) kept
    /// waiting in memory; beyond this many they move to stream IGRELAY_PARKED, so they never hold
    /// the partition's `max_ack_pending` budget. Must be below `max_ack_pending`.
    pub park_hold: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            limits: Limits::default(),
            window: Duration::from_secs(24 * 3600),
            human_agent_window: Duration::from_secs(7 * 86_400),
            private_reply_window: Duration::from_secs(7 * 86_400),
            window_grace: Duration::from_secs(2),
            usage_slowdown_percent: 98,
            max_in_flight: 256,
            default_deadline: Duration::from_secs(24 * 3600),
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
            throttle_wait: Duration::from_secs(5),
            ack_wait: Duration::from_secs(10),
            max_ack_pending: None,
            park_hold: 64,
        }
    }
}

impl DispatchConfig {
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.send_per_s == 0 || l.media_per_s == 0 || l.private_replies_per_h == 0 || l.live_private_replies_per_s == 0
        {
            return Err("dispatch.limits: every limit must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            return Err("dispatch.max_in_flight: must be at least 1".into());
        }
        if self.ack_wait < Duration::from_secs(3) {
            return Err("dispatch.ack_wait: must be at least 3s".into());
        }
        if self.max_ack_pending.is_some_and(|m| m <= self.max_in_flight) {
            return Err("dispatch.max_ack_pending: must be above dispatch.max_in_flight".into());
        }
        if self.park_hold >= self.max_ack_pending() {
            return Err(format!(
                "dispatch.park_hold: must be below max_ack_pending ({}), or a paused account could stop its partition",
                self.max_ack_pending()
            ));
        }
        Ok(())
    }

    /// The effective `max_ack_pending` of a partition's consumer.
    pub fn max_ack_pending(&self) -> usize {
        self.max_ack_pending.unwrap_or_else(|| (self.max_in_flight.saturating_mul(8)).max(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn park_hold_must_leave_room_in_the_ack_budget() {
        let ok = DispatchConfig { max_in_flight: 2, max_ack_pending: Some(8), park_hold: 4, ..Default::default() };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(DispatchConfig::default().max_ack_pending(), 2048);
        assert_eq!(DispatchConfig { max_in_flight: 2, ..Default::default() }.max_ack_pending(), 1024);
        let full = DispatchConfig { park_hold: 8, ..ok.clone() };
        assert!(full.validate().unwrap_err().contains("dispatch.park_hold"));
        let tiny = DispatchConfig { max_ack_pending: Some(2), park_hold: 1, ..ok };
        assert!(tiny.validate().unwrap_err().contains("dispatch.max_ack_pending"));
    }
}

//! `igrelay bench dispatch --pause-seconds S`: dispatch's memory during a long pause. After the
//! measured phases the paused accounts stay paused for S seconds while commands for them keep
//! arriving (`PAUSED_PER_S`, spread over their recipients) and the running accounts keep sending
//! at half the limit; dispatch's RSS is sampled every few seconds. Then the tokens are restored
//! and every paused command must be sent exactly once, in order per recipient.

use std::time::Duration;

use anyhow::Context as _;
use igrelay_accounts::AccountStore;
use igrelay_bus::Publisher;
use igrelay_core::v1::{self, command_outcome::Result as R};
use igrelay_emulator::AdminClient;
use serde_json::json;

use super::dispatch::{order_and_duplicates, publish, sent_texts, wait_outcomes};
use super::measure::{round, rss_of};

/// New commands per second for the paused accounts during the pause (all of them together).
const PAUSED_PER_S: u32 = 20;
/// Publishing ticks per second (commands of a tick are published together).
const TICKS_PER_S: u32 = 10;
/// Seconds between RSS samples.
const SAMPLE_EVERY_S: u64 = 5;

/// A paused account, its token and its recipients with the number of commands queued for each
/// (their texts are "0", "1", ... so the order check of the emulator's messages applies).
pub struct Paused {
    pub account: String,
    pub token: String,
    pub users: Vec<(String, u32)>,
}

pub struct Ctx<'a> {
    pub pid: u32,
    pub limit: u32,
    pub publisher: &'a Publisher,
    pub js: &'a async_nats::jetstream::Context,
    pub admin: &'a AdminClient,
    pub store: &'a AccountStore,
    pub running: &'a [(String, Vec<String>)],
}

/// Runs the pause, restores the tokens and returns the report's `pause_*` and
/// `paused_completed` fields.
pub async fn run(cx: &Ctx<'_>, paused: &mut [Paused], seconds: u64) -> anyhow::Result<serde_json::Value> {
    let slots: Vec<(usize, usize)> =
        (0..paused.len()).flat_map(|a| (0..paused[a].users.len()).map(move |u| (a, u))).collect();
    anyhow::ensure!(!slots.is_empty(), "--pause-seconds needs --paused-accounts of at least 1");
    let running_per_tick = (cx.limit / 2 / TICKS_PER_S).max(1) as usize;
    let paused_per_tick = (PAUSED_PER_S / TICKS_PER_S) as usize;

    let (start_kib, _) = rss_of(cx.pid);
    let mut max_kib = start_kib;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / TICKS_PER_S);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut pause_commands, mut running_commands, mut next_slot) = (0usize, 0usize, 0usize);
    let ticks = seconds * u64::from(TICKS_PER_S);
    for tick in 0..ticks {
        ticker.tick().await;
        for _ in 0..paused_per_tick {
            let (a, u) = slots[next_slot % slots.len()];
            next_slot += 1;
            let p = &mut paused[a];
            let (user, n) = &mut p.users[u];
            let id = format!("paused-{}-{user}-{n}", p.account);
            publish(cx.publisher, &p.account, user, &id, &n.to_string()).await?;
            *n += 1;
            pause_commands += 1;
        }
        for (acct, users) in cx.running {
            for k in 0..running_per_tick {
                let i = running_commands + k;
                let user = &users[i % users.len()];
                publish(cx.publisher, acct, user, &format!("run-{acct}-{i}"), &format!("r{i}")).await?;
            }
        }
        running_commands += running_per_tick * cx.running.len();
        if tick % (SAMPLE_EVERY_S * u64::from(TICKS_PER_S)) == 0 {
            max_kib = max_kib.max(rss_of(cx.pid).0);
        }
    }
    let (end_kib, _) = rss_of(cx.pid);
    max_kib = max_kib.max(end_kib);

    let running = wait_outcomes(cx.js, "run-", running_commands, Duration::from_secs(60 + seconds)).await?;
    let running_not_sent = running.iter().filter(|o| !matches!(o.result, Some(R::Sent(_)))).count();

    // The token comes back: in Meta (the emulator) and in the account store, as after a new login.
    for p in paused.iter() {
        cx.admin
            .post("/_admin/tokens", &json!({"token": p.token, "state": "valid"}))
            .await
            .context("restoring a paused account's token")?;
        let account = v1::Account {
            account_id: p.account.clone(),
            login_type: v1::LoginType::Instagram as i32,
            ..Default::default()
        };
        cx.store.put(account, &p.token).await?;
    }
    let total: usize = paused.iter().flat_map(|p| p.users.iter()).map(|(_, n)| *n as usize).sum();
    // Drained at the limit per account; generous for a busy machine.
    let per_account = total / paused.len();
    let limit = Duration::from_secs(60 + 4 * per_account as u64 / u64::from(cx.limit.max(1)));
    let outcomes = wait_outcomes(cx.js, "paused-", total, limit).await?;
    let paused_not_sent = outcomes.iter().filter(|o| !matches!(o.result, Some(R::Sent(_)))).count();

    // Exactly once and in order, from what the emulator received: recipient by recipient, the
    // texts must be "0", "1", ... up to the number of commands queued for it.
    let (mut order_violations, mut duplicates, mut missing) = (0usize, 0usize, 0usize);
    for p in paused.iter() {
        for (user, n) in &p.users {
            let texts = sent_texts(cx.admin, &p.account, user).await?;
            let (o, d) = order_and_duplicates(&texts);
            order_violations += o;
            duplicates += d;
            missing += (*n as usize).saturating_sub(texts.len());
        }
    }
    let completed = paused_not_sent == 0 && order_violations == 0 && duplicates == 0 && missing == 0;
    Ok(json!({
        "pause_seconds": seconds,
        "pause_rss_start_mib": round(start_kib as f64 / 1024.0),
        "pause_rss_end_mib": round(end_kib as f64 / 1024.0),
        "pause_rss_max_mib": round(max_kib as f64 / 1024.0),
        "pause_commands": pause_commands,
        "pause_running_commands": running_commands,
        "pause_running_not_sent": running_not_sent,
        "paused_total_commands": total,
        "paused_not_sent": paused_not_sent,
        "paused_order_violations": order_violations,
        "paused_duplicates": duplicates,
        "paused_missing": missing,
        "paused_completed": completed,
    }))
}

//! `igrelay bench dispatch`: how close dispatch gets to Meta's per-account send limit without
//! ever exceeding it. nats-server, the emulator (enforcing the limit, counting violations) and
//! one `igrelay dispatch` child process; commands are offered above the limit for several
//! accounts, then at half the limit to measure latency from acceptance to outcome.
//!
//! With `--paused-accounts N`, the first N accounts have their token revoked (in the emulator,
//! and marked NEEDS_REAUTH as dispatch does after Meta refuses a token) and commands queued for
//! more recipients than `--max-in-flight`; the figures are over the other accounts, which must
//! still reach the limit. All accounts share one partition, so the paused ones compete with the
//! others for the same in-flight slots and fetch budget. `--pause-seconds` then keeps them paused
//! while commands keep arriving, samples dispatch's RSS, and checks every paused command is sent
//! exactly once, in order, after the token is restored (see `dispatch_pause`).

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use igrelay_accounts::{AccountStore, AccountsConfig, Keyring, TokenKeyConfig};
use igrelay_bus::local_server::LocalNatsServer;
use igrelay_bus::topology::KvDef;
use igrelay_bus::{OutgoingMessage, Publisher, TopologyConfig};
use igrelay_core::AccountId;
use igrelay_core::time::{now, now_ms, timestamp_to_ms};
use igrelay_core::v1::{self, SendCommand, command_outcome::Result as R, recipient::Target, send_command::Content};
use igrelay_emulator::{AdminClient, EmulatorConfig};
use igrelay_runtime::Secret;
use prost::Message as _;
use serde_json::json;

use super::dispatch_pause::{self, Paused};
use super::ingest::ChildGuard;
use super::measure::{percentile, round, rss_of};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[derive(Debug, clap::Args)]
pub struct DispatchBenchArgs {
    /// Instagram accounts sending at once.
    #[arg(long, default_value_t = 4)]
    pub accounts: usize,
    /// Send limit per account per second (the emulator enforces it, dispatch is set to it).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Recipients per account.
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// Seconds of load in each phase.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Accounts whose token is revoked (of `--accounts`), with commands queued for more
    /// recipients than `--max-in-flight`.
    #[arg(long, default_value_t = 0)]
    pub paused_accounts: usize,
    /// After the measured phases, keep the paused accounts paused this long while commands for
    /// them keep arriving (20/s) and the others keep sending; then restore their tokens and
    /// check every paused command is sent once, in order. 0: no pause phase.
    #[arg(long, default_value_t = 0)]
    pub pause_seconds: u64,
    /// dispatch.max_in_flight of the dispatch process.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
}

pub async fn run(args: DispatchBenchArgs) -> anyhow::Result<()> {
    let server = LocalNatsServer::start()?;
    let mut em = EmulatorConfig::for_tests();
    em.frozen_clock_ms = None;
    em.rate_limits.send_per_s = args.limit;
    em.accounts.clear();
    let emulator = igrelay_emulator::spawn(em).await?;

    let client = igrelay_bus::connect(&igrelay_bus::ConnectConfig { url: server.url(), ..Default::default() }).await?;
    let js = igrelay_bus::connect::jetstream(client, Duration::from_secs(5));
    anyhow::ensure!(
        args.paused_accounts < args.accounts,
        "--paused-accounts must leave at least one account running (got {} of {})",
        args.paused_accounts,
        args.accounts
    );
    anyhow::ensure!(
        args.pause_seconds == 0 || args.paused_accounts > 0,
        "--pause-seconds needs --paused-accounts of at least 1 (nothing to pause)"
    );
    // One partition: paused and running accounts share its slots and fetch budget.
    let topology = TopologyConfig { command_partitions: 1, ..TopologyConfig::default() };
    let accounts_cfg = AccountsConfig {
        token_keys: vec![TokenKeyConfig { id: "bench".into(), key: Secret::new(KEY) }],
        ..Default::default()
    };
    let store = AccountStore::open(&js, &topology, Keyring::from_config(&accounts_cfg)?).await?;
    let windows = igrelay_bus::ensure_kv(&js, &topology, KvDef::Windows).await?;
    igrelay_bus::ensure_streams(&js, &topology, &igrelay_bus::StreamDef::ALL).await?;

    // Accounts, and users who wrote to them (the emulator's window and dispatch's record).
    let mut accounts = Vec::new();
    for a in 0..args.accounts {
        let ig_id = format!("1784150000000{a:04}");
        let token = format!("IGAAbench{a:04}");
        emulator.admin.post("/_admin/accounts", &json!({"ig_id": ig_id, "token": token})).await?;
        store
            .put(
                v1::Account {
                    account_id: ig_id.clone(),
                    login_type: v1::LoginType::Instagram as i32,
                    ..Default::default()
                },
                &token,
            )
            .await?;
        let mut users = Vec::new();
        for u in 0..args.users {
            let user = format!("55{a:04}{u:06}");
            emulator.admin.simulate_dm(&ig_id, &user, "hi").await?;
            windows.put(format!("w.{ig_id}.{user}"), bytes::Bytes::copy_from_slice(&now_ms().to_be_bytes())).await?;
            users.push(user);
        }
        accounts.push((ig_id, users));
    }

    let exe = std::env::current_exe().context("cannot find the igrelay executable")?;
    let child = Command::new(exe)
        .arg("dispatch")
        .env("IGRELAY_NATS__URL", server.url())
        .env("IGRELAY_GRAPH__INSTAGRAM_BASE_URL", &emulator.base_url)
        .env("IGRELAY_GRAPH__FACEBOOK_BASE_URL", &emulator.base_url)
        .env("IGRELAY_ACCOUNTS__TOKEN_KEYS", format!("[{{id=\"bench\",key=\"{KEY}\"}}]"))
        .env("IGRELAY_DISPATCH__LISTEN", "127.0.0.1:0")
        .env("IGRELAY_DISPATCH__LIMITS__SEND_PER_S", args.limit.to_string())
        .env("IGRELAY_DISPATCH__MAX_IN_FLIGHT", args.max_in_flight.to_string())
        .env("IGRELAY_TOPOLOGY__COMMAND_PARTITIONS", topology.command_partitions.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start igrelay dispatch")?;
    let dispatch = ChildGuard(child);
    let publisher = Publisher::new(js.clone());

    // Paused accounts: token revoked, account marked, commands queued for more recipients than
    // the in-flight slots, before any load of the others.
    let (paused_accounts, accounts) = accounts.split_at(args.paused_accounts);
    let mut paused = Vec::new();
    for (acct, _) in paused_accounts {
        let token = format!("IGAAbench{}", &acct[acct.len() - 4..]);
        emulator.admin.post("/_admin/tokens", &json!({"token": token, "state": "revoked"})).await?;
        store.set_status(acct, v1::AccountStatus::NeedsReauth, "bench: token revoked").await?;
        let mut users = Vec::new();
        for u in 0..args.max_in_flight + 16 {
            let user = format!("56{u:010}");
            if args.pause_seconds > 0 {
                // Meta's window too, for the sends after the token is back.
                emulator.admin.simulate_dm(acct, &user, "hi").await?;
            }
            windows.put(format!("w.{acct}.{user}"), bytes::Bytes::copy_from_slice(&now_ms().to_be_bytes())).await?;
            publish(&publisher, acct, &user, &format!("paused-{acct}-{user}-0"), "0").await?;
            users.push((user, 1));
        }
        paused.push(Paused { account: acct.clone(), token, users });
    }

    // Phase 1: above the limit. Everything is queued at once: 1.5 × limit × seconds per account.
    let per_account = (f64::from(args.limit) * 1.5 * args.seconds as f64) as usize;
    let mut ids = Vec::new();
    for i in 0..per_account {
        for (acct, users) in accounts {
            let user = &users[i % users.len()];
            let id = format!("max-{acct}-{i}");
            publish(&publisher, acct, user, &id, &format!("{}", i / users.len())).await?;
            ids.push(id);
        }
    }
    let phase1 = wait_outcomes(&js, "max-", ids.len(), Duration::from_secs(args.seconds * 4 + 30)).await?;

    // Phase 2: half the limit, paced, to measure latency from acceptance to outcome.
    let rate = f64::from(args.limit) / 2.0;
    let n = (rate * args.seconds as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(interval);
    for i in 0..n {
        ticker.tick().await;
        for (acct, users) in accounts {
            let user = &users[i % users.len()];
            publish(&publisher, acct, user, &format!("half-{acct}-{i}"), &format!("h{i}")).await?;
        }
    }
    let phase2 = wait_outcomes(&js, "half-", n * accounts.len(), Duration::from_secs(args.seconds * 2 + 30)).await?;
    let (rss_kib, hwm_kib) = rss_of(dispatch.0.id());
    let pause = if args.pause_seconds > 0 {
        let cx = dispatch_pause::Ctx {
            pid: dispatch.0.id(),
            limit: args.limit,
            publisher: &publisher,
            js: &js,
            admin: &emulator.admin,
            store: &store,
            running: accounts,
        };
        Some(dispatch_pause::run(&cx, &mut paused, args.pause_seconds).await?)
    } else {
        None
    };

    // Achieved rate per account: sent calls over the time they took, phase 1 only.
    let mut per_account_rates = Vec::new();
    for (acct, _) in accounts {
        let mut times: Vec<i64> = phase1
            .iter()
            .filter(|o| o.account_id == *acct && matches!(o.result, Some(R::Sent(_))))
            .filter_map(|o| o.completed_time.as_ref().map(timestamp_to_ms))
            .collect();
        times.sort_unstable();
        if let (Some(first), Some(last)) = (times.first(), times.last())
            && last > first
        {
            per_account_rates.push((times.len() - 1) as f64 * 1000.0 / (last - first) as f64);
        }
    }
    let achieved = per_account_rates.iter().sum::<f64>() / per_account_rates.len().max(1) as f64;

    // Order and duplicates, from what the emulator received.
    let (mut order_violations, mut duplicates) = (0usize, 0usize);
    for (acct, users) in accounts {
        for user in users {
            let (o, d) = order_and_duplicates(&sent_texts(&emulator.admin, acct, user).await?);
            order_violations += o;
            duplicates += d;
        }
    }
    let calls = emulator.admin.calls().await?;
    let mut lat: Vec<f64> = phase2
        .iter()
        .filter_map(|o| Some((timestamp_to_ms(o.completed_time.as_ref()?) - o_accepted(o)?) as f64))
        .collect();
    lat.sort_by(f64::total_cmp);
    let not_sent = phase1.iter().chain(phase2.iter()).filter(|o| !matches!(o.result, Some(R::Sent(_)))).count();
    let mut report = json!({
        "bench": "dispatch",
        "accounts": args.accounts,
        "paused_accounts": paused_accounts.len(),
        "limit_per_account_per_s": args.limit,
        "achieved_per_account_per_s": round(achieved),
        "ratio": (achieved / f64::from(args.limit) * 1000.0).round() / 1000.0,
        "throttle_errors": calls["throttled"].as_u64().unwrap_or(0),
        "order_violations": order_violations,
        "duplicates": duplicates,
        "not_sent": not_sent,
        "commands": phase1.len() + phase2.len(),
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "latency_at_per_account_per_s": rate,
        "rss_mib": round(rss_kib as f64 / 1024.0),
        "peak_rss_mib": round(hwm_kib as f64 / 1024.0),
    });
    if let (Some(pause), Some(obj)) = (pause.as_ref().and_then(|p| p.as_object()), report.as_object_mut()) {
        obj.extend(pause.clone());
    }
    drop(dispatch);
    emulator.shutdown().await;
    writeln!(std::io::stdout().lock(), "{report}")?;
    Ok(())
}

/// The outcome does not repeat the command's accepted time, so the bench puts it at the end of
/// the command id (`...@<ms>`).
fn o_accepted(o: &v1::CommandOutcome) -> Option<i64> {
    o.command_id.rsplit('@').next()?.parse().ok()
}

/// What the emulator received for one recipient from the account (outbound texts, in order).
pub(super) async fn sent_texts(admin: &AdminClient, account: &str, user: &str) -> anyhow::Result<Vec<String>> {
    let conv = admin.messages(account, user).await?;
    let list = conv["messages"].as_array().cloned().or_else(|| conv.as_array().cloned()).unwrap_or_default();
    Ok(list.iter().filter(|m| m["inbound"] == false).filter_map(|m| m["text"].as_str().map(str::to_owned)).collect())
}

/// (order violations, duplicates) among the numeric texts a recipient received: each command's
/// text is its number for that recipient, so they must increase.
pub(super) fn order_and_duplicates(texts: &[String]) -> (usize, usize) {
    let nums: Vec<i64> = texts.iter().filter_map(|t| t.parse().ok()).collect();
    (nums.windows(2).filter(|w| w[1] < w[0]).count(), nums.windows(2).filter(|w| w[1] == w[0]).count())
}

pub(super) async fn publish(
    publisher: &Publisher,
    account: &str,
    user: &str,
    id: &str,
    text: &str,
) -> anyhow::Result<()> {
    let accepted = now_ms();
    let id = format!("{id}@{accepted}");
    let cmd = SendCommand {
        command_id: id.clone(),
        account_id: account.into(),
        recipient: Some(v1::Recipient { target: Some(Target::Igsid(user.into())) }),
        content: Some(Content::Text(v1::TextContent { text: text.into(), quick_replies: vec![] })),
        accepted_time: Some(now()),
        ..Default::default()
    };
    let subject = igrelay_bus::subjects::send_command(&AccountId::parse(account)?);
    publisher.publish(OutgoingMessage::proto(subject, id, &cmd), &opentelemetry_cx(), Duration::from_secs(5)).await?;
    Ok(())
}

fn opentelemetry_cx() -> opentelemetry::Context {
    opentelemetry::Context::new()
}

/// Waits until `n` outcomes whose command id starts with `prefix` exist, reading the outcomes
/// stream as it grows.
pub(super) async fn wait_outcomes(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<Vec<v1::CommandOutcome>> {
    use futures::StreamExt;
    let stream = js.get_stream("IGRELAY_OUTCOMES").await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "ig.v1.out.>".into(),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out: HashMap<String, v1::CommandOutcome> = HashMap::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(Ok(m))) => {
                let o = v1::CommandOutcome::decode(m.payload.clone())?;
                if o.command_id.starts_with(prefix) {
                    out.insert(o.command_id.clone(), o);
                }
            }
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => break,
            Err(_) => anyhow::bail!("only {} of {n} outcomes of phase {prefix} within {limit:?}", out.len()),
        }
    }
    Ok(out.into_values().collect())
}

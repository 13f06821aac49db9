//! Three `igrelay dispatch` processes share the work of several accounts; the process that owns
//! the partition of one account (read from the lease bucket) is killed with SIGKILL while Meta
//! (the emulator) holds the answers of calls it has already carried out, so calls are surely in
//! flight at the kill. Then:
//! - every command has one outcome, counted on the wire where JetStream's dedup cannot hide a
//!   second one;
//! - Meta received every message in order per recipient; a command in flight at the kill was
//!   sent at most twice (its outcome says `attempts: 2`), the two copies adjacent; every other
//!   command exactly once;
//! - the emulator counts no call over its rate limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use igrelay_accounts::{AccountStore, AccountsConfig, Keyring, TokenKeyConfig};
use igrelay_bus::{BusConfig, OutgoingMessage, Publisher};
use igrelay_core::AccountId;
use igrelay_core::v1::{self, SendCommand, command_outcome::Result as R, recipient::Target, send_command::Content};
use igrelay_e2e::Running;
use igrelay_emulator::EmulatorConfig;
use igrelay_runtime::Secret;
use igrelay_testkit::Nats;
use igrelay_testkit::wire::WireTap;
use prost::Message as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SECRET: &str = "failover-secret";
const ACCOUNTS: usize = 4;
const USERS: usize = 3;
const PER_USER: usize = 30;
const LIMIT: u32 = 60;
const PARTITIONS: u32 = 6;
/// How long Meta holds each answer after carrying the call out.
const ANSWER_DELAY_MS: u64 = 200;

fn account(a: usize) -> String {
    format!("178414000000000{:02}", a + 1)
}

fn token(a: usize) -> String {
    if a == 0 { "IGAAemulatortoken1".into() } else { format!("IGAAfailover{a}") }
}

fn user(a: usize, u: usize) -> String {
    format!("55000000000{a:02}3{u:02}")
}

fn command_id(a: usize, u: usize, i: usize) -> String {
    format!("{}-{}-{i}", account(a), user(a, u))
}

/// Dispatch process `n`: its lease member id starts with `d<n>-` (HOSTNAME).
fn dispatch(n: usize, nats: &str, graph: &str) -> Running {
    Running::start(
        &["dispatch"],
        &[
            ("HOSTNAME", format!("d{n}")),
            ("IGRELAY_NATS__URL", nats.to_owned()),
            ("IGRELAY_GRAPH__INSTAGRAM_BASE_URL", graph.to_owned()),
            ("IGRELAY_GRAPH__FACEBOOK_BASE_URL", graph.to_owned()),
            ("IGRELAY_ACCOUNTS__TOKEN_KEYS", format!("[{{id=\"t\",key=\"{KEY}\"}}]")),
            ("IGRELAY_DISPATCH__LISTEN", "127.0.0.1:0".into()),
            ("IGRELAY_DISPATCH__LIMITS__SEND_PER_S", LIMIT.to_string()),
            ("IGRELAY_DISPATCH__RETRY_INITIAL", "50ms".into()),
            ("IGRELAY_DISPATCH__ACK_WAIT", "3s".into()),
            ("IGRELAY_TOPOLOGY__COMMAND_PARTITIONS", PARTITIONS.to_string()),
            ("IGRELAY_TOPOLOGY__DISPATCH_LEASE_TTL", "1500ms".into()),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_owner_killed_with_calls_in_flight_sends_those_at_most_twice() {
    let nats = Nats::start().await.unwrap();
    let mut bus = BusConfig::default();
    bus.nats.url = nats.url();
    bus.topology.command_partitions = PARTITIONS;
    bus.topology.dispatch_lease_ttl = Duration::from_millis(1500);
    let shutdown = CancellationToken::new();
    let wire = WireTap::start(&nats.client, "ig.v1.out.>").await.unwrap();

    // Ingest + emulator: users write, so the windows are open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest_base = format!("http://{}", listener.local_addr().unwrap());
    let ingest_ops = format!("http://{}", ops_listener.local_addr().unwrap());
    let ingest_cfg = igrelay_ingest::IngestConfig {
        verify_token: Secret::new("vt"),
        app_secrets: vec![Secret::new(SECRET)],
        ..Default::default()
    };
    let ingest = tokio::spawn(igrelay_ingest::run_with_listeners(
        ingest_cfg,
        bus.clone(),
        listener,
        ops_listener,
        shutdown.clone(),
    ));
    let mut em = EmulatorConfig::for_tests();
    em.frozen_clock_ms = None;
    em.app_secret = SECRET.into();
    em.webhooks.callback_url = Some(format!("{ingest_base}/webhooks/instagram"));
    em.rate_limits.send_per_s = LIMIT;
    let emulator = igrelay_emulator::spawn(em).await.unwrap();

    let keyring = Keyring::from_config(&AccountsConfig {
        token_keys: vec![TokenKeyConfig { id: "t".into(), key: Secret::new(KEY) }],
        ..Default::default()
    })
    .unwrap();
    let accounts = AccountStore::open(&nats.js, &bus.topology, keyring).await.unwrap();
    for a in 0..ACCOUNTS {
        if a > 0 {
            emulator.admin.post("/_admin/accounts", &json!({"ig_id": account(a), "token": token(a)})).await.unwrap();
        }
        let acct =
            v1::Account { account_id: account(a), login_type: v1::LoginType::Instagram as i32, ..Default::default() };
        accounts.put(acct, &token(a)).await.unwrap();
    }

    let mut procs: Vec<Running> = (0..3).map(|n| dispatch(n, &nats.url(), &emulator.base_url)).collect();
    wait_for(|| async {
        nats.js.get_stream("IGRELAY_COMMANDS").await.is_ok() && nats.js.get_stream("IGRELAY_EVENTS").await.is_ok()
    })
    .await;
    // Ingest must be ready before the emulator sends the users' webhooks.
    let ingest_ready = format!("{ingest_ops}/readyz");
    let http = igrelay_testkit::http::client();
    wait_for(|| async { igrelay_testkit::http::get(&http, &ingest_ready).await.is_ok_and(|r| r.status == 200) }).await;
    for a in 0..ACCOUNTS {
        for u in 0..USERS {
            emulator.admin.simulate_dm(&account(a), &user(a, u), "hi").await.unwrap();
        }
    }
    let windows = nats.js.get_key_value("igrelay_windows").await;
    wait_for(|| async {
        let Ok(kv) = &windows else { return false };
        for a in 0..ACCOUNTS {
            for u in 0..USERS {
                if kv.get(format!("w.{}.{}", account(a), user(a, u))).await.ok().flatten().is_none() {
                    return false;
                }
            }
        }
        true
    })
    .await;

    // Meta carries every call out at once and answers 200 ms later: calls are in flight.
    emulator.admin.fault(&json!({"endpoint": "messages", "answer_delay_ms": ANSWER_DELAY_MS})).await.unwrap();
    let publisher = Publisher::new(nats.js.clone());
    let total = ACCOUNTS * USERS * PER_USER;
    for i in 0..PER_USER {
        for a in 0..ACCOUNTS {
            for u in 0..USERS {
                let c = SendCommand {
                    command_id: command_id(a, u, i),
                    account_id: account(a),
                    recipient: Some(v1::Recipient { target: Some(Target::Igsid(user(a, u))) }),
                    content: Some(Content::Text(v1::TextContent { text: format!("{i}"), quick_replies: vec![] })),
                    ..Default::default()
                };
                let subject = igrelay_bus::subjects::send_command(&AccountId::parse(account(a)).unwrap());
                let msg = OutgoingMessage::proto(subject, c.command_id.clone(), &c);
                publisher.publish(msg, &opentelemetry::Context::new(), Duration::from_secs(5)).await.unwrap();
            }
        }
    }

    // Once work is under way, find who owns account 0's partition, and kill exactly that one.
    wait_for(|| async { wire.messages().len() >= total / 4 }).await;
    let stream = nats.js.get_stream("IGRELAY_COMMANDS").await.unwrap();
    let leases = nats.js.get_key_value("igrelay_dispatch").await.unwrap();
    // Each account's partition (while it still has commands stored) and that partition's owner.
    let mut placement = Vec::new();
    for a in 0..ACCOUNTS {
        for p in 0..PARTITIONS {
            if stream.get_last_raw_message_by_subject(&format!("ig.v1.cmd.send.{p}.{}", account(a))).await.is_ok() {
                let owner = leases.get(format!("p.{p}")).await.ok().flatten();
                let owner = owner.map(|o| String::from_utf8_lossy(&o).into_owned()).unwrap_or_default();
                placement.push((a, p, owner));
            }
        }
    }
    let (_, partition, owner) =
        placement.iter().find(|(a, _, _)| *a == 0).cloned().expect("account 0 still has commands in the stream");
    let victim: usize = owner.strip_prefix('d').and_then(|r| r.split('-').next()).unwrap().parse().unwrap();
    procs[victim].child.kill().unwrap();
    let _ = procs[victim].child.wait();

    // In flight at the kill: carried out by Meta (stored) without an outcome yet. A superset:
    // answers on their way to a live process count too.
    let done_at_kill: HashSet<String> =
        wire.messages().into_iter().map(|(_, p)| v1::CommandOutcome::decode(p).unwrap().command_id).collect();
    let mut in_flight = HashSet::new();
    for a in 0..ACCOUNTS {
        for u in 0..USERS {
            for i in sent_texts(&emulator, a, u).await {
                let id = command_id(a, u, i);
                if !done_at_kill.contains(&id) {
                    in_flight.insert(id);
                }
            }
        }
    }

    // Every command ends in an outcome (bounded wait)...
    wait_for_long(|| async { outcomes(&nats).await.len() >= total }).await;
    let stored: HashMap<String, v1::CommandOutcome> =
        outcomes(&nats).await.into_iter().map(|o| (o.command_id.clone(), o)).collect();
    assert_eq!(stored.len(), total, "every command has an outcome");
    // ...and one only: every publish of an outcome, as core NATS delivered it, is the same one.
    let mut on_wire: HashMap<String, Vec<_>> = HashMap::new();
    for (_, p) in wire.messages() {
        let o = v1::CommandOutcome::decode(p.clone()).unwrap();
        on_wire.entry(o.command_id).or_default().push(p);
    }
    for (id, list) in &on_wire {
        let first = v1::CommandOutcome::decode(list[0].clone()).unwrap();
        for p in &list[1..] {
            assert_eq!(p, &list[0], "{id}: two outcomes: {first:?} and {:?}", v1::CommandOutcome::decode(p.clone()));
        }
    }

    // What Meta received: order per recipient, copies only for commands in flight at the kill.
    // Every violation is collected, so one run shows the whole picture.
    let mut wrong = Vec::new();
    let mut twice = Vec::new();
    for a in 0..ACCOUNTS {
        for u in 0..USERS {
            let texts = sent_texts(&emulator, a, u).await;
            let mut dedup = texts.clone();
            dedup.dedup();
            if dedup != (0..PER_USER).collect::<Vec<_>>() {
                wrong.push(format!("order (copies adjacent) for account {a} user {}: {texts:?}", user(a, u)));
            }
            for i in 0..PER_USER {
                let id = command_id(a, u, i);
                let copies = texts.iter().filter(|t| **t == i).count();
                let o = &stored[&id];
                if !matches!(o.result, Some(R::Sent(_))) {
                    wrong.push(format!("{id}: not sent: {o:?}"));
                }
                // Every copy Meta received is an attempt the outcome counts. One attempt more than
                // copies is allowed only for a command without an outcome at the kill: the owner
                // recorded it "in flight" and died before the request reached Meta, so its
                // successor counts an attempt whose result it cannot know.
                let unknown_attempt = o.attempts == 2 && copies == 1 && !done_at_kill.contains(&id);
                if o.attempts as usize != copies && !unknown_attempt {
                    wrong
                        .push(format!("{id}: Meta received {copies} copies, the outcome says {} attempts", o.attempts));
                }
                if copies > 2 {
                    wrong.push(format!("{id}: sent {copies} times"));
                }
                if copies == 2 {
                    if !in_flight.contains(&id) {
                        wrong.push(format!("{id}: sent twice but not in flight at the kill"));
                    }
                    twice.push(id);
                }
            }
        }
    }
    // The kill hit the owner of account 0 while Meta held its calls' answers: those answers were
    // lost with the process, so the next owner sent them again.
    if !twice.iter().any(|id| id.starts_with(&account(0))) {
        wrong.push(format!("no call of account 0 was re-sent: the kill missed its calls in flight ({in_flight:?})"));
    }
    assert!(
        wrong.is_empty(),
        "killed d{victim} (owner of account 0's partition {partition}); placement (account, partition, owner) at the kill: {placement:?}\n{}",
        wrong.join("\n")
    );
    let calls = emulator.admin.calls().await.unwrap();
    assert_eq!(calls["throttled"].as_u64().unwrap_or(0), 0, "no call over the rate limit: {calls}");

    for (n, p) in procs.iter_mut().enumerate() {
        if n != victim {
            assert_eq!(p.terminate(Duration::from_secs(15)).unwrap(), Some(0));
        }
    }
    shutdown.cancel();
    let _ = ingest.await;
    emulator.shutdown().await;
}

/// The texts (command numbers) account `a` sent to user `u`, in the order Meta stored them.
async fn sent_texts(emulator: &igrelay_emulator::EmulatorHandle, a: usize, u: usize) -> Vec<usize> {
    let conv = emulator.admin.messages(&account(a), &user(a, u)).await.unwrap();
    conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["inbound"] == false)
        .map(|m| m["text"].as_str().unwrap().parse().unwrap())
        .collect()
}

async fn outcomes(nats: &Nats) -> Vec<v1::CommandOutcome> {
    igrelay_testkit::events::read_raw(&nats.js, "IGRELAY_OUTCOMES", ">")
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(_, p)| v1::CommandOutcome::decode(p).unwrap())
        .collect()
}

async fn wait_for<F, Fut>(cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 30 s");
}

async fn wait_for_long<F, Fut>(cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1200 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached within 120 s");
}

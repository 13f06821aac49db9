//! Three `igrelay dispatch` processes share the work; one is killed with SIGKILL during load.
//! Every command still gets exactly one outcome, per-recipient order holds, the emulator counts
//! no call over its rate limit, and the only duplicates are calls that were in flight at the
//! kill (they show as an immediate repeat of the same message).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::HashMap;
use std::time::Duration;

use igrelay_accounts::{AccountStore, AccountsConfig, Keyring, TokenKeyConfig};
use igrelay_bus::{BusConfig, OutgoingMessage, Publisher};
use igrelay_core::AccountId;
use igrelay_core::v1::{self, SendCommand, command_outcome::Result as R, recipient::Target, send_command::Content};
use igrelay_e2e::Running;
use igrelay_emulator::EmulatorConfig;
use igrelay_runtime::Secret;
use igrelay_testkit::Nats;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

const ACCOUNT: &str = "17841400000000001";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SECRET: &str = "failover-secret";
const USERS: usize = 6;
const PER_USER: usize = 40;
const LIMIT: u32 = 60;

fn dispatch(nats: &str, graph: &str) -> Running {
    Running::start(
        &["dispatch"],
        &[
            ("IGRELAY_NATS__URL", nats.to_owned()),
            ("IGRELAY_GRAPH__INSTAGRAM_BASE_URL", graph.to_owned()),
            ("IGRELAY_GRAPH__FACEBOOK_BASE_URL", graph.to_owned()),
            ("IGRELAY_ACCOUNTS__TOKEN_KEYS", format!("[{{id=\"t\",key=\"{KEY}\"}}]")),
            ("IGRELAY_DISPATCH__LISTEN", "127.0.0.1:0".into()),
            ("IGRELAY_DISPATCH__LIMITS__SEND_PER_S", LIMIT.to_string()),
            ("IGRELAY_DISPATCH__RETRY_INITIAL", "50ms".into()),
            ("IGRELAY_DISPATCH__ACK_WAIT", "3s".into()),
            ("IGRELAY_TOPOLOGY__COMMAND_PARTITIONS", "6".into()),
            ("IGRELAY_TOPOLOGY__DISPATCH_LEASE_TTL", "1500ms".into()),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_dispatchers_one_killed_nothing_lost_order_and_limits_hold() {
    let nats = Nats::start().await.unwrap();
    let mut bus = BusConfig::default();
    bus.nats.url = nats.url();
    bus.topology.command_partitions = 6;
    bus.topology.dispatch_lease_ttl = Duration::from_millis(1500);
    let shutdown = CancellationToken::new();

    // Ingest + emulator: users write, so the windows are open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest_base = format!("http://{}", listener.local_addr().unwrap());
    let ingest_ops = format!("http://{}", ops_listener.local_addr().unwrap());
    let ingest_url = format!("{ingest_base}/webhooks/instagram");
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
    em.webhooks.callback_url = Some(ingest_url);
    em.rate_limits.send_per_s = LIMIT;
    let emulator = igrelay_emulator::spawn(em).await.unwrap();

    let keyring = Keyring::from_config(&AccountsConfig {
        token_keys: vec![TokenKeyConfig { id: "t".into(), key: Secret::new(KEY) }],
    })
    .unwrap();
    let accounts = AccountStore::open(&nats.js, &bus.topology, keyring).await.unwrap();
    accounts
        .put(
            v1::Account {
                account_id: ACCOUNT.into(),
                login_type: v1::LoginType::Instagram as i32,
                ..Default::default()
            },
            "IGAAemulatortoken1",
        )
        .await
        .unwrap();

    let mut procs: Vec<Running> = (0..3).map(|_| dispatch(&nats.url(), &emulator.base_url)).collect();
    wait_for(|| async {
        nats.js.get_stream("IGRELAY_COMMANDS").await.is_ok() && nats.js.get_stream("IGRELAY_EVENTS").await.is_ok()
    })
    .await;
    // Ingest must be ready before the emulator sends the users' webhooks.
    let ingest_ready = format!("{ingest_ops}/readyz");
    let http = igrelay_testkit::http::client();
    wait_for(|| async { igrelay_testkit::http::get(&http, &ingest_ready).await.is_ok_and(|r| r.status == 200) }).await;
    let users: Vec<String> = (0..USERS).map(|i| format!("55000000000003{i:02}")).collect();
    for u in &users {
        emulator.admin.simulate_dm(ACCOUNT, u, "hi").await.unwrap();
    }
    let windows = nats.js.get_key_value("igrelay_windows").await;
    wait_for(|| async {
        let Ok(kv) = &windows else { return false };
        for u in &users {
            if kv.get(format!("w.{ACCOUNT}.{u}")).await.ok().flatten().is_none() {
                return false;
            }
        }
        true
    })
    .await;

    // The load: more than the limit allows, interleaved across users.
    let publisher = Publisher::new(nats.js.clone());
    let subject = igrelay_bus::subjects::send_command(&AccountId::parse(ACCOUNT).unwrap());
    let total = USERS * PER_USER;
    for i in 0..PER_USER {
        for u in &users {
            let c = SendCommand {
                command_id: format!("{u}-{i}"),
                account_id: ACCOUNT.into(),
                recipient: Some(v1::Recipient { target: Some(Target::Igsid(u.clone())) }),
                content: Some(Content::Text(v1::TextContent { text: format!("{i}"), quick_replies: vec![] })),
                ..Default::default()
            };
            let msg = OutgoingMessage::proto(subject.clone(), c.command_id.clone(), &c);
            publisher.publish(msg, &opentelemetry::Context::new(), Duration::from_secs(5)).await.unwrap();
        }
    }

    // Kill one process with SIGKILL once work is under way.
    wait_for(|| async { outcomes(&nats).await.len() >= total / 4 }).await;
    procs[0].child.kill().unwrap();
    let _ = procs[0].child.wait();

    // Every command ends in exactly one outcome (bounded wait).
    let mut all = Vec::new();
    for _ in 0..600 {
        all = outcomes(&nats).await;
        if all.len() >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for o in &all {
        *by_id.entry(o.command_id.clone()).or_default() += 1;
        assert!(matches!(o.result, Some(R::Sent(_))), "{o:?}");
    }
    assert_eq!(by_id.len(), total, "every command has an outcome");
    assert!(by_id.values().all(|n| *n == 1), "no command has two outcomes");

    // Order per recipient; duplicates only as immediate repeats (calls in flight at the kill).
    let mut duplicates = 0;
    for u in &users {
        let conv = emulator.admin.messages(ACCOUNT, u).await.unwrap();
        let list = conv["messages"].as_array().cloned().or_else(|| conv.as_array().cloned()).unwrap();
        let texts: Vec<usize> = list
            .iter()
            .filter(|m| m["inbound"] == false)
            .map(|m| m["text"].as_str().unwrap().parse().unwrap())
            .collect();
        let mut dedup = texts.clone();
        dedup.dedup();
        duplicates += texts.len() - dedup.len();
        assert_eq!(dedup, (0..PER_USER).collect::<Vec<_>>(), "order for {u}: {texts:?}");
    }
    assert!(duplicates <= 6, "{duplicates} duplicates: at most one per lane in flight at the kill");
    let calls = emulator.admin.calls().await.unwrap();
    assert_eq!(calls["throttled"].as_u64().unwrap_or(0), 0, "no call over the rate limit: {calls}");

    for p in procs.iter_mut().skip(1) {
        assert_eq!(p.terminate(Duration::from_secs(15)).unwrap(), Some(0));
    }
    shutdown.cancel();
    let _ = ingest.await;
    emulator.shutdown().await;
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

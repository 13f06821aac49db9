//! A whole send path for one test: nats-server, the emulator playing Meta and Instagram users,
//! ingest receiving the emulator's webhooks, an account registered, and dispatch.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use igrelay_accounts::{AccountStore, AccountsConfig, Keyring, TokenKeyConfig};
use igrelay_bus::{BusConfig, OutgoingMessage, Publisher};
use igrelay_core::AccountId;
use igrelay_core::v1::{self, CommandOutcome, SendCommand};
use igrelay_dispatch::DispatchConfig;
use igrelay_emulator::{EmulatorConfig, EmulatorHandle};
use igrelay_runtime::Secret;
use igrelay_testkit::Nats;
use prost::Message as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const ACCOUNT: &str = "17841400000000001";
pub const TOKEN: &str = "IGAAemulatortoken1";
const SECRET: &str = "dispatch-test-secret";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub fn accounts_config() -> AccountsConfig {
    AccountsConfig { token_keys: vec![TokenKeyConfig { id: "t".into(), key: Secret::new(KEY) }], ..Default::default() }
}

pub struct Harness {
    pub nats: Nats,
    pub emulator: EmulatorHandle,
    pub accounts: AccountStore,
    pub bus: BusConfig,
    pub shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Dispatch processes started by [`Harness::spawn_dispatch`]; checked by the waits, so one
    /// that stopped with an error fails the test with that error.
    dispatchers: std::sync::Mutex<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>>,
    publisher: Publisher,
    /// Every outcome published, duplicates included (JetStream's dedup would hide them).
    pub wire: igrelay_testkit::wire::WireTap,
    /// Stops the dispatch process the harness started (a graceful leave).
    pub first_dispatch: CancellationToken,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_, _| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut EmulatorConfig, &mut DispatchConfig)) -> Harness {
        let (h, proc) = Self::start_with_proc(tune).await;
        // The harness watches the process, so an error it stops with fails the test's waits.
        h.dispatchers.lock().unwrap().push(proc.task);
        h
    }

    /// Like `start_with`, and also returns the dispatch process, to stop it or read its metrics.
    pub async fn start_with_proc(
        tune: impl FnOnce(&mut EmulatorConfig, &mut DispatchConfig),
    ) -> (Harness, DispatchProc) {
        let nats = Nats::start().await.expect("nats-server (run deploy/local/setup.sh)");
        let mut bus = BusConfig::default();
        bus.nats.url = nats.url();
        bus.topology.command_partitions = 4;
        bus.topology.dispatch_lease_ttl = Duration::from_millis(1500);
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();

        // Ingest, so the emulator's webhooks (DMs, comments) reach the events stream.
        let ingest_cfg = igrelay_ingest::IngestConfig {
            verify_token: Secret::new("vt"),
            app_secrets: vec![Secret::new(SECRET)],
            // Tests move the emulator's clock days back (windows at their edges): its webhooks
            // are then dated in the past and must not be dropped as replays.
            max_delivery_age: Some(Duration::from_secs(365 * 86_400)),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ingest_base = format!("http://{}", listener.local_addr().unwrap());
        let ingest_ops = format!("http://{}", ops_listener.local_addr().unwrap());
        let ingest_url = format!("{ingest_base}/webhooks/instagram");
        tasks.push(tokio::spawn(igrelay_ingest::run_with_listeners(
            ingest_cfg,
            bus.clone(),
            listener,
            ops_listener,
            shutdown.clone(),
        )));

        let mut em = EmulatorConfig::for_tests();
        // The emulator's clock is dispatch's clock, so windows agree.
        em.frozen_clock_ms = None;
        em.app_secret = SECRET.into();
        em.webhooks.callback_url = Some(ingest_url);
        let mut dcfg = DispatchConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
        tune(&mut em, &mut dcfg);
        let emulator = igrelay_emulator::spawn(em).await.unwrap();

        let keyring = Keyring::from_config(&accounts_config()).unwrap();
        let accounts = AccountStore::open(&nats.js, &bus.topology, keyring).await.unwrap();
        register(&accounts, TOKEN).await;

        let wire = igrelay_testkit::wire::WireTap::start(&nats.client, "ig.v1.out.>").await.unwrap();
        let mut h = Harness {
            publisher: Publisher::new(nats.js.clone()),
            nats,
            emulator,
            accounts,
            bus,
            shutdown,
            tasks,
            dispatchers: std::sync::Mutex::default(),
            wire,
            first_dispatch: CancellationToken::new(),
        };
        let proc = h.spawn_dispatch_proc(dcfg).await;
        h.first_dispatch = proc.stop.clone();
        // Ready when ingest answers (the emulator's webhooks must not meet a 503), dispatch
        // created its streams and learns windows.
        let http = igrelay_testkit::http::client();
        for _ in 0..400 {
            if igrelay_testkit::http::get(&http, &format!("{ingest_ops}/readyz")).await.is_ok_and(|r| r.status == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        for _ in 0..400 {
            let events = h.nats.js.get_stream("IGRELAY_EVENTS").await.is_ok();
            let windows = match h.nats.js.get_stream("IGRELAY_EVENTS").await {
                Ok(s) => s.consumer_info("dispatch-windows").await.is_ok(),
                Err(_) => false,
            };
            if events && windows && h.nats.js.get_stream("IGRELAY_COMMANDS").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (h, proc)
    }

    /// Starts one more dispatch process and keeps its handle (stop token, task, ops address);
    /// waits until it is ready, and a start-up error fails the test at once, with the error.
    pub async fn spawn_dispatch_proc(&self, cfg: DispatchConfig) -> DispatchProc {
        self.try_spawn_dispatch_proc(cfg).await.unwrap_or_else(|e| panic!("dispatch did not start: {e:#}"))
    }

    /// [`Harness::spawn_dispatch_proc`], returning the start-up error instead of failing.
    pub async fn try_spawn_dispatch_proc(&self, cfg: DispatchConfig) -> anyhow::Result<DispatchProc> {
        let stop = self.shutdown.child_token();
        let graph = igrelay_graph::GraphConfig::single_host(self.emulator.base_url.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let ops = listener.local_addr()?;
        let ready_url = format!("http://{ops}/readyz");
        let task = tokio::spawn(igrelay_dispatch::run_with_listener(
            cfg,
            graph,
            accounts_config(),
            self.bus.clone(),
            listener,
            stop.clone(),
        ));
        let http = igrelay_testkit::http::client();
        for _ in 0..600 {
            if task.is_finished() {
                return match task.await {
                    Ok(Ok(())) => Err(anyhow::anyhow!("dispatch stopped before it was ready")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(anyhow::anyhow!("dispatch panicked: {e}")),
                };
            }
            if igrelay_testkit::http::get(&http, &ready_url).await.is_ok_and(|r| r.status == 200) {
                return Ok(DispatchProc { stop, task, ops });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        stop.cancel();
        Err(anyhow::anyhow!("dispatch not ready within 15 s ({ready_url})"))
    }

    /// Starts one more dispatch process (in this process: its own NATS connection and lease)
    /// and waits until it is ready; a start-up error fails the test at once, with the error.
    pub async fn spawn_dispatch(&self, cfg: DispatchConfig) -> CancellationToken {
        self.try_spawn_dispatch(cfg).await.unwrap_or_else(|e| panic!("dispatch did not start: {e:#}"))
    }

    /// [`Harness::spawn_dispatch`], returning the start-up error instead of failing.
    pub async fn try_spawn_dispatch(&self, cfg: DispatchConfig) -> anyhow::Result<CancellationToken> {
        let proc = self.try_spawn_dispatch_proc(cfg).await?;
        self.dispatchers.lock().unwrap().push(proc.task);
        Ok(proc.stop)
    }

    /// Fails the test with its error if a dispatch process stopped with an error.
    pub fn check_dispatchers(&self) {
        let mut list = self.dispatchers.lock().unwrap();
        if let Some(i) = list.iter().position(|t| t.is_finished()) {
            let task = list.swap_remove(i);
            drop(list);
            let result = futures::FutureExt::now_or_never(task);
            // Ok(()) is a process the test stopped itself; anything else is a failure.
            if !matches!(result, Some(Ok(Ok(())))) {
                panic!("a dispatch process stopped: {result:?}");
            }
        }
    }

    /// A user writes to the account (opens the window); returns the user's message id.
    pub async fn user_writes(&self, user: &str, text: &str) -> String {
        let r = self.emulator.admin.simulate_dm(ACCOUNT, user, text).await.unwrap();
        r["mid"].as_str().unwrap().to_owned()
    }

    /// Waits (bounded) until dispatch has learned the user's window from the events stream.
    pub async fn wait_window(&self, user: &str) {
        let kv = self.nats.js.get_key_value("igrelay_windows").await;
        for _ in 0..200 {
            if let Ok(kv) = &kv
                && kv.get(format!("w.{ACCOUNT}.{user}")).await.ok().flatten().is_some()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("window of {user} never learned");
    }

    pub async fn send(&self, cmd: SendCommand) {
        let subject = igrelay_bus::subjects::send_command(&AccountId::parse(cmd.account_id.clone()).unwrap());
        let msg = OutgoingMessage::proto(subject, cmd.command_id.clone(), &cmd);
        self.publisher.publish(msg, &opentelemetry_cx(), Duration::from_secs(5)).await.unwrap();
    }

    /// Publishes raw bytes as a command (for undecodable input).
    pub async fn send_raw(&self, subject: &str, id: &str, payload: &[u8]) {
        let msg = OutgoingMessage {
            subject: subject.into(),
            msg_id: id.into(),
            type_name: "x",
            kind: None,
            payload: Bytes::copy_from_slice(payload),
        };
        self.publisher.publish(msg, &opentelemetry_cx(), Duration::from_secs(5)).await.unwrap();
    }

    /// All outcomes so far.
    pub async fn outcomes(&self) -> Vec<(String, CommandOutcome)> {
        igrelay_testkit::events::read_raw(&self.nats.js, "IGRELAY_OUTCOMES", ">")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(s, p)| (s, CommandOutcome::decode(p).unwrap()))
            .collect()
    }

    /// Waits (bounded) for the outcome of `command_id`.
    pub async fn outcome(&self, command_id: &str) -> CommandOutcome {
        self.outcome_within(command_id, 300).await.unwrap_or_else(|| panic!("no outcome for {command_id}"))
    }

    pub async fn outcome_within(&self, command_id: &str, tries: u32) -> Option<CommandOutcome> {
        for _ in 0..tries {
            self.check_dispatchers();
            if let Some((_, o)) = self.outcomes().await.into_iter().find(|(_, o)| o.command_id == command_id) {
                return Some(o);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Messages the emulator holds for the conversation with `user`, in order.
    pub async fn conversation(&self, user: &str) -> Vec<Value> {
        let v = self.emulator.admin.messages(ACCOUNT, user).await.unwrap();
        v["messages"].as_array().cloned().or_else(|| v.as_array().cloned()).unwrap_or_default()
    }

    /// Every outcome published for `command_id`, as core NATS saw them (duplicates included);
    /// waits (bounded) for the first, since the tap may trail the stream by a moment.
    pub async fn wire_outcomes(&self, command_id: &str) -> Vec<Bytes> {
        let mut found = Vec::new();
        for _ in 0..100 {
            found = self
                .wire
                .messages()
                .into_iter()
                .filter(|(_, p)| CommandOutcome::decode(p.clone()).is_ok_and(|o| o.command_id == command_id))
                .map(|(_, p)| p)
                .collect();
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        found
    }

    /// Asserts that `command_id` has exactly one outcome on the wire (no republication at all).
    pub async fn assert_published_once(&self, command_id: &str) {
        let n = self.wire_outcomes(command_id).await.len();
        assert_eq!(n, 1, "{command_id}: {n} outcomes published (JetStream would keep only the first)");
    }

    /// Asserts that every outcome published for `command_id` is the same outcome (a republished
    /// record, not a second result), and returns how many were published.
    pub async fn assert_one_outcome(&self, command_id: &str) -> usize {
        let all = self.wire_outcomes(command_id).await;
        assert!(!all.is_empty(), "{command_id}: no outcome published");
        let distinct: Vec<CommandOutcome> =
            all.iter().filter(|p| **p != all[0]).map(|p| CommandOutcome::decode(p.clone()).unwrap()).collect();
        assert!(
            distinct.is_empty(),
            "{command_id}: two different outcomes were published: {:?} and {distinct:?}",
            CommandOutcome::decode(all[0].clone()).unwrap()
        );
        all.len()
    }

    /// How many times the emulator stored an outbound message with `text` to `user`.
    pub async fn copies(&self, user: &str, text: &str) -> usize {
        self.conversation(user).await.iter().filter(|m| m["inbound"] == false && m["text"] == text).count()
    }

    pub async fn graph_calls(&self, endpoint: &str) -> u64 {
        self.emulator.admin.calls_to(endpoint).await.unwrap()
    }

    pub async fn throttled(&self) -> u64 {
        self.emulator.admin.calls().await.unwrap()["throttled"].as_u64().unwrap_or(0)
    }

    pub async fn fault(&self, f: Value) {
        self.emulator.admin.fault(&f).await.unwrap();
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        // Let dispatch processes finish their shutdown before the server goes.
        let dispatchers = std::mem::take(&mut *self.dispatchers.lock().unwrap());
        for t in dispatchers {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// A dispatch process started by a test.
pub struct DispatchProc {
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub ops: std::net::SocketAddr,
}

impl DispatchProc {
    /// The value of a metric without labels from `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let http = igrelay_testkit::http::client();
        let r = igrelay_testkit::http::get(&http, &format!("http://{}/metrics", self.ops)).await.ok()?;
        String::from_utf8_lossy(&r.body).lines().find_map(|l| {
            l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
        })
    }
}

pub async fn register(accounts: &AccountStore, token: &str) {
    let account =
        v1::Account { account_id: ACCOUNT.into(), login_type: v1::LoginType::Instagram as i32, ..Default::default() };
    accounts.put(account, token).await.unwrap();
}

fn opentelemetry_cx() -> opentelemetry::Context {
    opentelemetry::Context::new()
}

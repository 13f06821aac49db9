//! `igrelay bench enrich`: enriched events per second with a warm cache, and the latency enrich
//! adds to an event (time the enriched copy was stored minus time the raw event was stored, both
//! by the same nats-server clock). Everything runs in this process: a nats-server, the Graph API
//! emulator, and enrich, as in `igrelay dev`.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull};
use futures::StreamExt;
use igrelay_accounts::{AccountStore, AccountsConfig, Keyring, TokenKeyConfig};
use igrelay_bus::local_server::LocalNatsServer;
use igrelay_bus::subjects::{self, EventKind};
use igrelay_bus::{BusConfig, OutgoingMessage, Publisher, StreamDef};
use igrelay_core::AccountId;
use igrelay_core::v1::{Account, EnrichedEvent, Event, EventMeta, LoginType, Message, event::Payload};
use igrelay_emulator::EmulatorConfig;
use igrelay_enrich::EnrichConfig;
use igrelay_runtime::Secret;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use super::measure::{cpu_ms, percentile, round};

const ACCOUNT: &str = "17841400000000001";
const TOKEN: &str = "IGAAemulatortoken1";
const BENCH_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[derive(Debug, clap::Args)]
pub struct EnrichBenchArgs {
    /// Events in the backlog drained to measure throughput.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Distinct senders (all with a cached profile before the measurement).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Events per second published during the latency phase.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Lanes (`enrich.concurrency`).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

struct Env {
    bus: BusConfig,
    js: jetstream::Context,
    publisher: Publisher,
    graph: igrelay_graph::GraphConfig,
    accounts: AccountsConfig,
    concurrency: usize,
    seq: u64,
}

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Env {
    async fn start_enrich(&self) -> anyhow::Result<Running> {
        let cfg = EnrichConfig {
            app_secrets: vec![Secret::new("bench-app-secret")],
            concurrency: self.concurrency,
            // The emulator has no limits here; the warm-up must cache every user at once.
            lookups_per_s: 100_000,
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(igrelay_enrich::run_with_listeners(
            cfg,
            self.bus.clone(),
            self.graph.clone(),
            self.accounts.clone(),
            listener,
            ops_listener,
            shutdown.clone(),
        ));
        Ok(Running { shutdown, task })
    }

    fn events(&mut self, users: usize, n: usize, tag: &str) -> Vec<Event> {
        (0..n)
            .map(|i| {
                self.seq += 1;
                let mid = format!("{tag}-{}", self.seq);
                Event {
                    meta: Some(EventMeta {
                        event_id: format!("msg:{mid}"),
                        account_id: ACCOUNT.into(),
                        received_time: Some(igrelay_core::time::now()),
                        webhook_field: "messages".into(),
                        ..Default::default()
                    }),
                    payload: Some(Payload::Message(Message {
                        sender_id: user(i % users),
                        recipient_id: ACCOUNT.into(),
                        mid,
                        text: "Hello, do you ship to Lisbon?".into(),
                        ..Default::default()
                    })),
                }
            })
            .collect()
    }

    async fn publish(&self, events: &[Event]) -> anyhow::Result<()> {
        let account = AccountId::parse(ACCOUNT)?;
        for chunk in events.chunks(1000) {
            let msgs = chunk
                .iter()
                .map(|e| {
                    let id = e.meta.as_ref().map(|m| m.event_id.clone()).unwrap_or_default();
                    OutgoingMessage::proto(subjects::event(&account, EventKind::Message), id, e).with_kind("message")
                })
                .collect();
            self.publisher.publish_all(msgs, &opentelemetry::Context::new(), Duration::from_secs(30)).await?;
        }
        Ok(())
    }

    /// Waits until IGRELAY_ENRICHED holds `n` messages (bounded by `limit`).
    async fn wait_enriched(&self, n: u64, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut stream = self.js.get_stream(StreamDef::Enriched.name()).await?;
        loop {
            let have = stream.info().await?.state.messages;
            if have >= n {
                return Ok(());
            }
            anyhow::ensure!(started.elapsed() < limit, "only {have} of {n} events enriched after {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn user(i: usize) -> String {
    format!("55{:014}", i + 1)
}

/// Messages of `stream` from sequence `from`, with their stored time in ms.
async fn read(js: &jetstream::Context, stream: &str, from: u64, n: usize) -> anyhow::Result<Vec<(f64, bytes::Bytes)>> {
    let stream = js.get_stream(stream).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| anyhow::anyhow!("stream {} ended early", stream.cached_info().config.name))?
            .ok_or_else(|| anyhow::anyhow!("stream closed"))??;
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let ms = info.published.unix_timestamp_nanos() as f64 / 1e6;
        out.push((ms, msg.payload.clone()));
    }
    Ok(out)
}

pub async fn run(args: EnrichBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.users > 0 && args.events > 1 && args.rate > 0.0,
        "--users, --events and --rate must be positive"
    );
    let server = LocalNatsServer::start()?;
    let emulator = igrelay_emulator::spawn(EmulatorConfig::for_tests()).await?;
    // The senders exist and gave consent, as after a first DM.
    emulator.with_state(|s| {
        for i in 0..args.users {
            let id = s.ensure_user(Some(&user(i)), None);
            if let Some(a) = s.accounts.get_mut(ACCOUNT) {
                a.consent.insert(id);
            }
        }
    });
    let mut bus = BusConfig::default();
    bus.nats.url = server.url();
    let client = igrelay_bus::connect(&bus.nats).await?;
    let js = igrelay_bus::connect::jetstream(client, Duration::from_secs(10));
    igrelay_bus::ensure_streams(&js, &bus.topology, &[StreamDef::Events, StreamDef::Enriched]).await?;
    let accounts = AccountsConfig {
        token_keys: vec![TokenKeyConfig { id: "bench".into(), key: Secret::new(BENCH_KEY) }],
        ..Default::default()
    };
    let store = AccountStore::open(&js, &bus.topology, Keyring::from_config(&accounts)?).await?;
    store
        .put(
            Account { account_id: ACCOUNT.into(), login_type: LoginType::Instagram as i32, ..Default::default() },
            TOKEN,
        )
        .await?;
    let mut env = Env {
        graph: igrelay_graph::GraphConfig::single_host(emulator.base_url.clone()),
        bus,
        publisher: Publisher::new(js.clone()),
        js: js.clone(),
        accounts,
        concurrency: args.concurrency,
        seq: 0,
    };
    let users = args.users as u64;

    // Warm the cache: one event per user.
    let enrich = env.start_enrich().await?;
    let warm = env.events(args.users, args.users, "warm");
    env.publish(&warm).await?;
    env.wait_enriched(users, Duration::from_secs(60)).await?;
    enrich.shutdown.cancel();
    enrich.task.await??;

    // Throughput: a backlog drained by a fresh start, timed by the stream's own clock.
    let backlog = env.events(args.users, args.events, "backlog");
    env.publish(&backlog).await?;
    let cpu_before = (cpu_ms(std::process::id()), server.pid().map(cpu_ms).unwrap_or(0));
    let enrich = env.start_enrich().await?;
    let total = users + args.events as u64;
    env.wait_enriched(total, Duration::from_secs(600)).await?;
    let cpu = (cpu_ms(std::process::id()) - cpu_before.0, server.pid().map(cpu_ms).unwrap_or(0) - cpu_before.1);
    let drained = read(&js, StreamDef::Enriched.name(), users + 1, args.events).await?;
    let mut from_cache = 0usize;
    let mut not_enriched: HashMap<String, usize> = HashMap::new();
    for (_, payload) in &drained {
        let e = EnrichedEvent::decode(payload.clone())?;
        from_cache += usize::from(e.enriched && e.from_cache);
        if !e.enriched {
            *not_enriched.entry(e.not_enriched_detail).or_default() += 1;
        }
    }
    let span_ms = drained.last().map(|l| l.0).unwrap_or(0.0) - drained.first().map(|f| f.0).unwrap_or(0.0);
    let per_s = (args.events as f64 - 1.0) / (span_ms / 1000.0).max(1e-9);

    // Latency at a steady rate: each event's enriched copy against its raw copy.
    let raw_start = js.get_stream(StreamDef::Events.name()).await?.info().await?.state.last_sequence + 1;
    let n = (args.rate * args.seconds as f64) as usize;
    let steady = env.events(args.users, n, "steady");
    let tick = Duration::from_millis(10);
    let per_tick = (args.rate * tick.as_secs_f64()).max(1.0);
    let started = tokio::time::Instant::now();
    let mut sent = 0usize;
    let mut ticks = 0u32;
    while sent < n {
        ticks += 1;
        let due = ((f64::from(ticks) * per_tick) as usize).min(n);
        if due > sent {
            env.publish(&steady[sent..due]).await?;
            sent = due;
        }
        tokio::time::sleep_until(started + tick * ticks).await;
    }
    env.wait_enriched(total + n as u64, Duration::from_secs(120)).await?;
    let raw: HashMap<String, f64> = read(&js, StreamDef::Events.name(), raw_start, n)
        .await?
        .into_iter()
        .filter_map(|(ms, p)| Some((Event::decode(p).ok()?.meta?.event_id, ms)))
        .collect();
    let mut latencies: Vec<f64> = read(&js, StreamDef::Enriched.name(), total + 1, n)
        .await?
        .into_iter()
        .filter_map(|(ms, p)| {
            let id = EnrichedEvent::decode(p).ok()?.event?.meta?.event_id;
            raw.get(&id).map(|raw_ms| ms - raw_ms)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    enrich.shutdown.cancel();
    enrich.task.await??;

    let profile_calls = emulator.admin.calls_to("user_profile").await?;
    let report = serde_json::json!({
        "bench": "enrich",
        "enriched_per_s": round(per_s),
        "backlog_events": args.events,
        "cpu_us_per_event": round(cpu.0 as f64 * 1000.0 / args.events as f64),
        "nats_cpu_us_per_event": round(cpu.1 as f64 * 1000.0 / args.events as f64),
        "backlog_from_cache": from_cache,
        "backlog_not_enriched": not_enriched,
        "added_p50_ms": round(percentile(&latencies, 0.50)),
        "added_p99_ms": round(percentile(&latencies, 0.99)),
        "latency_at_per_s": args.rate,
        "latency_events": latencies.len(),
        "users": args.users,
        "profile_calls": profile_calls,
        "concurrency": args.concurrency,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "nats_server": igrelay_bus::local_server::PINNED_VERSION,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    Ok(())
}

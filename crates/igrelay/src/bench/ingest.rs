//! `igrelay bench ingest`: webhooks per second through the real ingest (signature, parsing,
//! JetStream publish with dedup id, ack) against a baseline HTTP handler that only publishes the
//! raw body to the same stream and awaits the ack. Both run as child processes of this binary
//! against one nats-server, driven by the same load generator, so the ratio compares like with
//! like on this machine.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::message::PublishMessage;
use axum::routing::{get, post};
use bytes::Bytes;
use igrelay_bus::local_server::LocalNatsServer;
use igrelay_testkit::http as thttp;
use igrelay_testkit::webhook;

use super::load::{self, RequestFn};
use super::measure::{cpu_ms, ctx_switches, round, rss_of};
use crate::config::Config;

const SECRET: &str = "bench-app-secret";
const ACCOUNT: &str = "17841400000000001";
const PATH: &str = "/webhooks/instagram";
const BASELINE_SUBJECT: &str = "ig.v1.evt._bench.raw";

#[derive(Debug, clap::Args)]
pub struct IngestBenchArgs {
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Interleaved baseline/ingest rounds. Single rounds on a shared 2-core machine vary by
    /// about ±7 %; eight average most of that out.
    #[arg(long, default_value_t = 8)]
    pub rounds: usize,
    /// Drive every round at this rate (open loop) instead of as fast as possible: CPU per webhook
    /// at a fixed load is far less noisy than the maximum rate, for comparing builds.
    #[arg(long)]
    pub fixed_rate: Option<f64>,
    /// Concurrent connections of the closed-loop phases.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Give every baseline publish a unique `Nats-Msg-Id`, so nats-server's duplicate check
    /// (which ingest's dedup ids cost it) is on both sides: the ratio then shows ingest's own
    /// work alone. Not the baseline, so off by default.
    #[arg(long)]
    pub baseline_msg_id: bool,
}

#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    /// A unique `Nats-Msg-Id` on every publish.
    #[arg(long)]
    pub msg_id: bool,
}

/// A child process killed on drop.
pub(super) struct ChildGuard(pub(super) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(args: IngestBenchArgs) -> anyhow::Result<()> {
    let server = LocalNatsServer::start()?;
    let exe = std::env::current_exe().context("cannot find the igrelay executable")?;
    let client = thttp::client();
    let phase = Duration::from_secs(args.seconds);

    // Both servers run side by side; only the one under load uses CPU.
    let base_addr = free_addr()?;
    let base_listen = base_addr.to_string();
    let mut base_args = vec!["bench", "baseline-server", "--listen", &base_listen];
    if args.baseline_msg_id {
        base_args.push("--msg-id");
    }
    let baseline = spawn(&exe, &base_args, &server.url(), base_addr, free_addr()?)?;
    let (ingest_addr, ingest_ops) = (free_addr()?, free_addr()?);
    let ingest = spawn(&exe, &["ingest"], &server.url(), ingest_addr, ingest_ops)?;
    wait_ready(&client, base_addr).await?;
    wait_ready(&client, ingest_ops).await?;
    let targets = [
        Target { url: format!("http://{base_addr}{PATH}"), pid: baseline.0.id(), tag: "base" },
        Target { url: format!("http://{ingest_addr}{PATH}"), pid: ingest.0.id(), tag: "ingest" },
    ];
    for t in &targets {
        let _ = load::closed_loop(&client, &t.url, args.connections, Duration::from_secs(1), request_fn("warm", t.tag))
            .await;
    }

    // Interleaved rounds (B I, I B, B I, …) so drift on a shared machine (other processes, the
    // stream growing, the server's dedup table filling) weighs on both sides alike.
    let mut totals = [Phase::default(), Phase::default()];
    let mut round_ratios = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut rates = [0.0; 2];
        for i in order {
            let t = &targets[i];
            let cpu_before = (cpu_ms(t.pid), server_cpu(&server));
            let switches_before = ctx_switches(t.pid);
            let r = match args.fixed_rate {
                Some(rate) => {
                    load::open_loop(&client, &t.url, rate, args.connections, phase, request_fn("max", t.tag)).await
                }
                None => load::closed_loop(&client, &t.url, args.connections, phase, request_fn("max", t.tag)).await,
            };
            totals[i].cpu_ms += cpu_ms(t.pid) - cpu_before.0;
            totals[i].nats_cpu_ms += server_cpu(&server) - cpu_before.1;
            totals[i].switches += ctx_switches(t.pid) - switches_before;
            rates[i] = r.per_s();
            totals[i].load.merge(r);
        }
        round_ratios.push(rates[1] / rates[0].max(1e-9));
    }
    drop(baseline);
    let [base, max] = totals;

    let half_rate = max.per_s() / 2.0;
    let half =
        load::open_loop(&client, &targets[1].url, half_rate, args.connections, phase, request_fn("half", "ingest"))
            .await;
    let (rss_kib, hwm_kib) = rss_of(targets[1].pid);
    drop(ingest);

    let ratio = max.per_s() / base.per_s().max(1e-9);
    let report = serde_json::json!({
        "bench": "ingest",
        "webhooks_per_s": round(max.per_s()),
        "p50_ms": round(half.percentile(0.50)),
        "p99_ms": round(half.percentile(0.99)),
        "latency_at_per_s": round(half_rate),
        "p50_ms_at_max": round(max.load.percentile(0.50)),
        "p99_ms_at_max": round(max.load.percentile(0.99)),
        "errors": max.load.errors + half.errors,
        "rss_mib": round(rss_kib as f64 / 1024.0),
        "peak_rss_mib": round(hwm_kib as f64 / 1024.0),
        "baseline_per_s": round(base.per_s()),
        "baseline_errors": base.load.errors,
        "cpu_us_per_webhook": per_req_us(max.cpu_ms, max.load.ok),
        "baseline_cpu_us_per_webhook": per_req_us(base.cpu_ms, base.load.ok),
        "nats_cpu_us_per_webhook": per_req_us(max.nats_cpu_ms, max.load.ok),
        "baseline_nats_cpu_us_per_webhook": per_req_us(base.nats_cpu_ms, base.load.ok),
        "switches_per_webhook": round(max.switches as f64 / max.load.ok.max(1) as f64),
        "baseline_switches_per_webhook": round(base.switches as f64 / base.load.ok.max(1) as f64),
        "ratio": (ratio * 1000.0).round() / 1000.0,
        "round_ratios": round_ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        "rounds": args.rounds,
        "connections": args.connections,
        "baseline_msg_id": args.baseline_msg_id,
        "phase_seconds": args.seconds,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "nats_server": igrelay_bus::local_server::PINNED_VERSION,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    Ok(())
}

/// One server under test.
struct Target {
    url: String,
    pid: u32,
    tag: &'static str,
}

/// The measured phases of one target, summed over rounds.
#[derive(Default)]
struct Phase {
    load: load::LoadResult,
    cpu_ms: u64,
    nats_cpu_ms: u64,
    switches: u64,
}

impl Phase {
    fn per_s(&self) -> f64 {
        self.load.per_s()
    }
}

fn per_req_us(cpu_ms: u64, requests: u64) -> f64 {
    round(cpu_ms as f64 * 1000.0 / requests.max(1) as f64)
}

fn server_cpu(server: &LocalNatsServer) -> u64 {
    server.pid().map(cpu_ms).unwrap_or(0)
}

/// One signed single-message webhook, unique per (worker, i) so deduplication never
/// short-circuits the work.
fn request_fn(phase: &'static str, target: &'static str) -> RequestFn {
    // A counter shared by every phase of a target keeps message ids unique across rounds.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // A current time: ingest drops deliveries older than the events stream's duplicate window.
    let now = igrelay_core::time::now_ms();
    Arc::new(move |w, _| {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let mid = format!("{phase}-{target}-{w}-{n}");
        let body = webhook::encode(&webhook::text_message(
            ACCOUNT,
            "5500000000000002",
            &mid,
            "Hello, do you ship to Lisbon? äöå",
            now,
        ));
        let headers = webhook::signed_headers(SECRET, &body);
        (headers, body)
    })
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn spawn(
    exe: &std::path::Path,
    args: &[&str],
    nats_url: &str,
    listen: SocketAddr,
    ops: SocketAddr,
) -> anyhow::Result<ChildGuard> {
    let child = Command::new(exe)
        .args(args)
        .env("IGRELAY_NATS__URL", nats_url)
        .env("IGRELAY_INGEST__LISTEN", listen.to_string())
        .env("IGRELAY_INGEST__OPS_LISTEN", ops.to_string())
        .env("IGRELAY_INGEST__VERIFY_TOKEN", "bench")
        .env("IGRELAY_INGEST__APP_SECRETS", format!("[\"{SECRET}\"]"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} {}", exe.display(), args.join(" ")))?;
    Ok(ChildGuard(child))
}

async fn wait_ready(client: &thttp::HttpClient, addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if thttp::get(client, &format!("http://{addr}/readyz")).await.is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("service on {addr} did not become ready")
}

/// The least a durable ingest can do: publish the raw body to the events stream and await the
/// acknowledgement. No signature check, no parsing, no dedup id (unless `--msg-id`: then a
/// counter, unique per process start, so nothing is ever a duplicate).
pub async fn baseline_server(cfg: Config, args: BaselineArgs) -> anyhow::Result<()> {
    let client = igrelay_bus::connect(&cfg.nats).await?;
    let js = igrelay_bus::connect::jetstream(client, cfg.nats.request_timeout);
    igrelay_bus::ensure_streams(&js, &cfg.topology, &[igrelay_bus::StreamDef::Events]).await?;
    let started = igrelay_core::time::now_ms();
    let seq = Arc::new(AtomicU64::new(0));
    let with_msg_id = args.msg_id;
    let app = axum::Router::new()
        .route(
            PATH,
            post(move |body: Bytes| {
                let js = js.clone();
                let msg_id = with_msg_id.then(|| format!("base-{started}-{}", seq.fetch_add(1, Ordering::Relaxed)));
                async move {
                    let sent = match msg_id {
                        Some(id) => {
                            js.send_publish(BASELINE_SUBJECT, PublishMessage::build().payload(body).message_id(id))
                                .await
                        }
                        None => js.publish(BASELINE_SUBJECT, body).await,
                    };
                    match sent {
                        Ok(ack) => match ack.await {
                            Ok(_) => axum::http::StatusCode::OK,
                            Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        },
                        Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    }
                }
            }),
        )
        .route("/readyz", get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

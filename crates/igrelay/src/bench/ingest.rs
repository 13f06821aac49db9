//! `igrelay bench ingest`: webhooks per second through the real ingest (signature, parsing,
//! JetStream publish with dedup id, ack) against a baseline HTTP handler that only publishes the
//! raw body to the same stream and awaits the ack. Both run as child processes of this binary
//! against one nats-server, driven by the same load generator, so the ratio compares like with
//! like on this machine.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::{get, post};
use bytes::Bytes;
use igrelay_bus::local_server::LocalNatsServer;
use igrelay_testkit::http as thttp;
use igrelay_testkit::webhook;

use super::load::{self, RequestFn};
use super::measure::{cpu_ms, round, rss_of};
use crate::config::Config;

const SECRET: &str = "bench-app-secret";
const ACCOUNT: &str = "17841400000000001";
const PATH: &str = "/webhooks/instagram";
const BASELINE_SUBJECT: &str = "ig.v1.evt._bench.raw";

#[derive(Debug, clap::Args)]
pub struct IngestBenchArgs {
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Concurrent connections of the closed-loop phases.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
}

#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    #[arg(long)]
    pub listen: SocketAddr,
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

    // Baseline.
    let base_addr = free_addr()?;
    let _baseline =
        spawn(&exe, &["bench", "baseline-server", "--listen", &base_addr.to_string()], &server.url(), base_addr)?;
    wait_ready(&client, base_addr).await?;
    let base_url = format!("http://{base_addr}{PATH}");
    let _ = load::closed_loop(&client, &base_url, args.connections, Duration::from_secs(1), request_fn("warm-b")).await;
    let cpu_before = (cpu_ms(_baseline.0.id()), server_cpu(&server));
    let baseline = load::closed_loop(&client, &base_url, args.connections, phase, request_fn("base")).await;
    let baseline_cpu = (cpu_ms(_baseline.0.id()) - cpu_before.0, server_cpu(&server) - cpu_before.1);
    drop(_baseline);

    // Ingest.
    let ingest_addr = free_addr()?;
    let ingest = spawn(&exe, &["ingest"], &server.url(), ingest_addr)?;
    let pid = ingest.0.id();
    wait_ready(&client, ingest_addr).await?;
    let url = format!("http://{ingest_addr}{PATH}");
    let _ = load::closed_loop(&client, &url, args.connections, Duration::from_secs(1), request_fn("warm-i")).await;
    let cpu_before = (cpu_ms(pid), server_cpu(&server));
    let max = load::closed_loop(&client, &url, args.connections, phase, request_fn("max")).await;
    let ingest_cpu = (cpu_ms(pid) - cpu_before.0, server_cpu(&server) - cpu_before.1);
    let half_rate = max.per_s() / 2.0;
    let half = load::open_loop(&client, &url, half_rate, args.connections, phase, request_fn("half")).await;
    let (rss_kib, hwm_kib) = rss_of(pid);
    drop(ingest);

    let ratio = max.per_s() / baseline.per_s().max(1e-9);
    let report = serde_json::json!({
        "bench": "ingest",
        "webhooks_per_s": round(max.per_s()),
        "p50_ms": round(half.percentile(0.50)),
        "p99_ms": round(half.percentile(0.99)),
        "latency_at_per_s": round(half_rate),
        "p50_ms_at_max": round(max.percentile(0.50)),
        "p99_ms_at_max": round(max.percentile(0.99)),
        "errors": max.errors + half.errors,
        "rss_mib": round(rss_kib as f64 / 1024.0),
        "peak_rss_mib": round(hwm_kib as f64 / 1024.0),
        "baseline_per_s": round(baseline.per_s()),
        "baseline_errors": baseline.errors,
        "cpu_us_per_webhook": per_req_us(ingest_cpu.0, max.ok),
        "baseline_cpu_us_per_webhook": per_req_us(baseline_cpu.0, baseline.ok),
        "nats_cpu_us_per_webhook": per_req_us(ingest_cpu.1, max.ok),
        "baseline_nats_cpu_us_per_webhook": per_req_us(baseline_cpu.1, baseline.ok),
        "ratio": (ratio * 1000.0).round() / 1000.0,
        "connections": args.connections,
        "phase_seconds": args.seconds,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "nats_server": igrelay_bus::local_server::PINNED_VERSION,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    Ok(())
}

fn per_req_us(cpu_ms: u64, requests: u64) -> f64 {
    round(cpu_ms as f64 * 1000.0 / requests.max(1) as f64)
}

fn server_cpu(server: &LocalNatsServer) -> u64 {
    server.pid().map(cpu_ms).unwrap_or(0)
}

/// One signed single-message webhook, unique per (worker, i) so deduplication never
/// short-circuits the work.
fn request_fn(tag: &'static str) -> RequestFn {
    Arc::new(move |w, i| {
        let mid = format!("{tag}-{w}-{i}");
        let body = webhook::encode(&webhook::text_message(
            ACCOUNT,
            "5500000000000002",
            &mid,
            "Hello, do you ship to Lisbon? äöå",
            1_743_480_368_714,
        ));
        let headers = webhook::signed_headers(SECRET, &body);
        (headers, body)
    })
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn spawn(exe: &std::path::Path, args: &[&str], nats_url: &str, listen: SocketAddr) -> anyhow::Result<ChildGuard> {
    let child = Command::new(exe)
        .args(args)
        .env("IGRELAY_NATS__URL", nats_url)
        .env("IGRELAY_INGEST__LISTEN", listen.to_string())
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
/// acknowledgement. No signature check, no parsing, no dedup id.
pub async fn baseline_server(cfg: Config, args: BaselineArgs) -> anyhow::Result<()> {
    let client = igrelay_bus::connect(&cfg.nats).await?;
    let js = igrelay_bus::connect::jetstream(client, cfg.nats.request_timeout);
    igrelay_bus::ensure_streams(&js, &cfg.topology, &[igrelay_bus::StreamDef::Events]).await?;
    let app = axum::Router::new()
        .route(
            PATH,
            post(move |body: Bytes| {
                let js = js.clone();
                async move {
                    match js.publish(BASELINE_SUBJECT, body).await {
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

//! A faithful local Graph API (Instagram Platform) and webhook sender.
//!
//! - Serves the Graph endpoints igrelay uses, statefully, under `/{version}/…`, with Meta's
//!   rules, error codes and usage headers (see the README for the list and the admin API).
//! - Plays the Instagram users: `/_admin/simulate/*` changes state and POSTs the signed webhook
//!   Meta would send to the configured callback.
//! - Injects faults, moves its clock on request, and shows everything it saw for assertions.
//!
//! [`run`] is the service entry (`igrelay emulator`); [`spawn`] starts one on a free port for
//! tests and embedding.

mod admin;
mod bench;
mod config;
mod graph;
mod meta;
mod server;
mod state;
mod webhooks;

pub use admin::{AdminError, simulate_event};
pub use bench::{BenchReport, bench_requests_per_s};
pub use config::{AccountSeed, ChangesStyle, EmulatorConfig, RateLimits, WebhookConfig};
pub use graph::WEBHOOK_FIELDS;
pub use meta::{MetaError, format_time};
pub use server::App;
pub use state::{Fault, FaultKind, FaultPick, LimitClass, State, TokenKind, TokenState};

use anyhow::Context;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Runs the emulator until `shutdown` is cancelled.
pub async fn run(config: EmulatorConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("emulator: cannot listen on {}", config.listen))?;
    let (_app, router) = build(config, shutdown.clone())?;
    tracing::info!(addr = %listener.local_addr()?, "graph api emulator listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("emulator: server failed")
}

fn build(config: EmulatorConfig, shutdown: CancellationToken) -> anyhow::Result<(App, axum::Router)> {
    let cfg = Arc::new(config);
    let http = reqwest::Client::builder().build().context("emulator: cannot build the webhook HTTP client")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut state = State::new(cfg);
    state.outbox = Some(tx);
    let app = App { inner: Arc::new(server::Inner { state: Mutex::new(state), http }) };
    tokio::spawn(webhooks::run_sender(app.clone(), rx, shutdown));
    Ok((app.clone(), server::router(app)))
}

/// A running emulator: its base URL, direct access to its state, and an admin client.
pub struct EmulatorHandle {
    pub addr: SocketAddr,
    pub base_url: String,
    pub app: App,
    pub admin: AdminClient,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle").field("base_url", &self.base_url).finish()
    }
}

/// Starts an emulator on `config.listen` (use port 0 for a free port) in the background.
pub async fn spawn(config: EmulatorConfig) -> anyhow::Result<EmulatorHandle> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("emulator: cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let (app, router) = build(config, shutdown.clone())?;
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "emulator server failed");
        }
    });
    let base_url = format!("http://{addr}");
    let admin = AdminClient { base_url: base_url.clone(), http: reqwest::Client::new() };
    Ok(EmulatorHandle { addr, base_url, app, admin, shutdown, task: Some(task) })
}

impl EmulatorHandle {
    /// Runs `f` on the locked state (set-up and assertions without HTTP).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.app.lock();
        f(&mut st)
    }

    /// Moves the emulator's clock forward.
    pub fn advance(&self, ms: i64) {
        self.with_state(|s| s.clock.offset_ms += ms);
    }

    /// Stops the server and the webhook sender and waits for the server to finish.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Dropping the handle stops the emulator (without waiting), so a failed test cannot leave a
/// server behind.
impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A thin client of the admin API (`/_admin/...`).
#[derive(Clone, Debug)]
pub struct AdminClient {
    base_url: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self { base_url: base_url.into(), http: reqwest::Client::new() }
    }

    async fn answer(resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body: Value = serde_json::from_slice(&bytes).context("admin answer is not JSON")?;
        anyhow::ensure!(status.is_success(), "admin call failed with {status}: {body}");
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Self::answer(self.http.get(format!("{}{path}", self.base_url)).send().await?).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let req =
            self.http.post(format!("{}{path}", self.base_url)).header(http::header::CONTENT_TYPE, "application/json");
        Self::answer(req.body(body.to_string()).send().await?).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        Self::answer(self.http.delete(format!("{}{path}", self.base_url)).send().await?).await
    }

    /// An Instagram user sends a DM; returns `{mid, conversation_id, user_id, account}`.
    pub async fn simulate_dm(&self, account: &str, from: &str, text: &str) -> anyhow::Result<Value> {
        self.post("/_admin/simulate/message", &serde_json::json!({"account": account, "from": from, "text": text}))
            .await
    }

    pub async fn simulate(&self, kind: &str, body: &Value) -> anyhow::Result<Value> {
        self.post(&format!("/_admin/simulate/{kind}"), body).await
    }

    pub async fn fault(&self, fault: &Value) -> anyhow::Result<Value> {
        self.post("/_admin/faults", fault).await
    }

    pub async fn advance_clock(&self, ms: i64) -> anyhow::Result<Value> {
        self.post("/_admin/clock", &serde_json::json!({"advance_ms": ms})).await
    }

    pub async fn calls(&self) -> anyhow::Result<Value> {
        self.get("/_admin/calls").await
    }

    /// Graph API calls the emulator answered for `endpoint`, over every account.
    pub async fn calls_to(&self, endpoint: &str) -> anyhow::Result<u64> {
        let v = self.calls().await?;
        let list = v["calls"].as_array().ok_or_else(|| anyhow::anyhow!("/_admin/calls has no calls list: {v}"))?;
        list.iter()
            .filter(|c| c["endpoint"] == endpoint)
            .map(|c| c["calls"].as_u64().ok_or_else(|| anyhow::anyhow!("a call count that is not a number: {c}")))
            .sum()
    }

    pub async fn deliveries(&self) -> anyhow::Result<Value> {
        self.get("/_admin/webhooks/deliveries").await
    }

    pub async fn messages(&self, account: &str, user: &str) -> anyhow::Result<Value> {
        self.get(&format!("/_admin/messages?account={account}&user={user}")).await
    }
}

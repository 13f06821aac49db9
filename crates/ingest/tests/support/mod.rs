//! Starts ingest for one test: a real nats-server, ingest on a loopback port, an HTTP client.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use igrelay_bus::BusConfig;
use igrelay_ingest::IngestConfig;
use igrelay_runtime::Secret;
use igrelay_testkit::http::{self, HttpClient, Response};
use igrelay_testkit::{Nats, webhook};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-app-secret";
pub const OLD_SECRET: &str = "previous-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const ACCOUNT: &str = "17841400000000001";

pub struct App {
    pub nats: Nats,
    pub url: String,
    /// The webhook listener.
    pub base: String,
    /// The ops listener (`/healthz`, `/readyz`, `/metrics`).
    pub ops: String,
    pub http: HttpClient,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl App {
    pub async fn start() -> App {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut IngestConfig)) -> App {
        Self::start_with_bus(tune, |_| {}).await
    }

    /// Starts with ingest's and the bus's configuration adjusted.
    pub async fn start_with_bus(tune: impl FnOnce(&mut IngestConfig), tune_bus: impl FnOnce(&mut BusConfig)) -> App {
        // The first App of the test binary installs telemetry and keeps it for the whole run.
        static TELEMETRY: std::sync::OnceLock<Option<igrelay_runtime::telemetry::TelemetryGuard>> =
            std::sync::OnceLock::new();
        TELEMETRY.get_or_init(|| {
            igrelay_runtime::telemetry::init("ingest-test", igrelay_runtime::telemetry::LogFormat::Text).ok()
        });
        let nats = Nats::start().await.expect("nats-server (run deploy/local/setup.sh)");
        let mut cfg = IngestConfig {
            verify_token: Secret::new(VERIFY_TOKEN),
            app_secrets: vec![Secret::new(OLD_SECRET), Secret::new(SECRET)],
            // The fixtures are Meta's recorded examples, with entry times from 2025: far older
            // than the default max_delivery_age. Tests of that limit set it themselves.
            max_delivery_age: Some(Duration::from_secs(100 * 365 * 86_400)),
            ..Default::default()
        };
        tune(&mut cfg);
        let mut bus = BusConfig::default();
        bus.nats.url = nats.url();
        bus.nats.max_reconnect_delay = Duration::from_millis(200);
        tune_bus(&mut bus);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ops = format!("http://{}", ops_listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(igrelay_ingest::run_with_listeners(cfg, bus, listener, ops_listener, shutdown.clone()));
        let app =
            App { nats, url: format!("{base}/webhooks/instagram"), base, ops, http: http::client(), shutdown, task };
        app.wait_ready().await;
        app
    }

    /// Waits (bounded) until /readyz says ready.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if http::get(&self.http, &format!("{}/readyz", self.ops)).await.is_ok_and(|r| r.status == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ingest did not become ready");
    }

    /// POSTs `payload` encoded and signed as Meta would.
    pub async fn post_json(&self, payload: &Value) -> Response {
        self.post_bytes(webhook::encode(payload)).await
    }

    pub async fn post_bytes(&self, body: Bytes) -> Response {
        let headers = webhook::signed_headers(SECRET, &body);
        let headers: Vec<(&str, String)> = headers.into_iter().collect();
        http::send(&self.http, http::Method::POST, &self.url, &headers, body).await.unwrap()
    }

    pub async fn post_with(&self, headers: &[(&str, String)], body: Bytes) -> Response {
        http::send(&self.http, http::Method::POST, &self.url, headers, body).await.unwrap()
    }

    pub async fn events(&self) -> Vec<igrelay_testkit::events::StoredEvent> {
        igrelay_testkit::events::read_all(&self.nats.js, "ig.v1.evt.>").await.unwrap()
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        http::get(&self.http, &format!("{}/metrics", self.ops)).await.unwrap().text()
    }

    pub async fn event_count(&self) -> u64 {
        igrelay_testkit::events::count(&self.nats.js, "IGRELAY_EVENTS").await.unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A fixture from tests/fixtures.
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

//! Starts a gateway for one test: a real nats-server, the Graph API emulator, webhook ingest
//! (so simulated Instagram users produce real events), the gateway on a loopback port, and, when
//! asked, a stand-in for dispatch.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use futures::StreamExt;
use igrelay_accounts::{AccountStore, AccountsConfig, Keyring, TokenKeyConfig};
use igrelay_bus::{BusConfig, OutgoingMessage, Publisher, subjects};
use igrelay_core::AccountId;
use igrelay_core::v1::CommandOutcome;
use igrelay_emulator::{EmulatorConfig, EmulatorHandle};
use igrelay_gateway::{ApiKeyConfig, GatewayConfig};
use igrelay_graph::GraphConfig;
use igrelay_runtime::Secret;
use igrelay_testkit::Nats;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::transport::Channel;

pub const ACCOUNT: &str = "17841400000000001";
pub const TOKEN: &str = "IGAAemulatortoken1";
/// Every scope, every account.
pub const ADMIN_KEY: &str = "admin-key-0123456789";
/// Every scope, only account 999.
pub const LIMITED_KEY: &str = "limited-key-0123456789";
/// Only accounts:read.
pub const READER_KEY: &str = "reader-key-0123456789";
/// Only profiles:read.
pub const PROFILES_READER_KEY: &str = "profiles-reader-key-0123456789";
/// A second emulated account (created by `Stack::add_account_b`).
pub const ACCOUNT_B: &str = "17841400000000002";
pub const TOKEN_B: &str = "IGAAemulatortokenB";
/// Every scope, only ACCOUNT: one tenant.
pub const TENANT_A_KEY: &str = "tenant-a-key-0123456789";
/// Every scope, only ACCOUNT_B: another tenant.
pub const TENANT_B_KEY: &str = "tenant-b-key-0123456789";

pub fn key(id: &str, key: &str, scopes: &[&str], accounts: &[&str]) -> ApiKeyConfig {
    ApiKeyConfig {
        id: id.into(),
        sha256: hex::encode(Sha256::digest(key.as_bytes())),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        accounts: accounts.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn api_keys() -> Vec<ApiKeyConfig> {
    let all = ["accounts:admin", "messages:send", "conversations:read", "events:read", "profiles:admin"];
    vec![
        key("admin", ADMIN_KEY, &all, &[]),
        key("limited", LIMITED_KEY, &all, &["999"]),
        key("reader", READER_KEY, &["accounts:read"], &[]),
        key("profiles-reader", PROFILES_READER_KEY, &["profiles:read"], &[]),
        key("tenant-a", TENANT_A_KEY, &all, &[ACCOUNT]),
        key("tenant-b", TENANT_B_KEY, &all, &[ACCOUNT_B]),
    ]
}

pub fn accounts_config() -> AccountsConfig {
    AccountsConfig {
        token_keys: vec![TokenKeyConfig {
            id: "test-key".into(),
            // 32 bytes, base64.
            key: Secret::new("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        }],
        ..Default::default()
    }
}

/// Changes the gateway configuration of one test.
pub type Tune = Box<dyn FnOnce(&mut GatewayConfig) + Send>;

#[derive(Default)]
pub struct Options {
    /// Run dispatch (igrelay_dispatch) too: commands are carried out against the emulator.
    pub dispatch: bool,
    pub tune: Option<Tune>,
    /// Serve TLS with this PEM certificate (issued for `localhost`) and key; the test channel
    /// trusts the CA certificate (the third path).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
}

pub struct Stack {
    pub nats: Nats,
    pub emulator: EmulatorHandle,
    pub addr: SocketAddr,
    pub channel: Channel,
    pub bus: BusConfig,
    pub shutdown: CancellationToken,
    pub gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Stack {
        static TELEMETRY: std::sync::OnceLock<Option<igrelay_runtime::telemetry::TelemetryGuard>> =
            std::sync::OnceLock::new();
        TELEMETRY.get_or_init(|| {
            igrelay_runtime::telemetry::init("gateway-test", igrelay_runtime::telemetry::LogFormat::Text).ok()
        });
        let nats = Nats::start().await.expect("nats-server (run deploy/local/setup.sh)");
        let mut bus = BusConfig::default();
        bus.nats.url = nats.url();
        bus.nats.max_reconnect_delay = Duration::from_millis(200);
        bus.nats.request_timeout = Duration::from_secs(2);
        bus.topology.command_partitions = 4;
        bus.topology.dispatch_lease_ttl = Duration::from_millis(1500);
        let shutdown = CancellationToken::new();

        // Ingest, so that the emulator's webhooks become events.
        let mut emu_cfg = EmulatorConfig::for_tests();
        // The emulator's clock is dispatch's clock, so messaging windows agree.
        emu_cfg.frozen_clock_ms = None;
        let ingest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ingest_url = format!("http://{}/webhooks/instagram", ingest_listener.local_addr().unwrap());
        let ingest_cfg = igrelay_ingest::IngestConfig {
            verify_token: Secret::new("verify"),
            app_secrets: vec![Secret::new(emu_cfg.app_secret.clone())],
            ..Default::default()
        };
        let ingest_ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tokio::spawn(igrelay_ingest::run_with_listeners(
            ingest_cfg,
            bus.clone(),
            ingest_listener,
            ingest_ops,
            shutdown.clone(),
        ));
        emu_cfg.webhooks.callback_url = Some(ingest_url);
        let emulator = igrelay_emulator::spawn(emu_cfg).await.unwrap();

        let mut cfg = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ops_listen: "127.0.0.1:0".parse().unwrap(),
            api_keys: api_keys(),
            ..Default::default()
        };
        cfg.token_refresh.enabled = false;
        if let Some((cert, key, _)) = &opts.tls {
            cfg.tls_cert = Some(cert.clone());
            cfg.tls_key = Some(key.clone());
        }
        if let Some(tune) = opts.tune {
            tune(&mut cfg);
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gateway = tokio::spawn(igrelay_gateway::run_with_listener(
            cfg,
            bus.clone(),
            accounts_config(),
            GraphConfig::single_host(emulator.base_url.clone()),
            listener,
            shutdown.clone(),
        ));
        if opts.dispatch {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tokio::spawn(igrelay_dispatch::run_with_listener(
                igrelay_dispatch::DispatchConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() },
                GraphConfig::single_host(emulator.base_url.clone()),
                accounts_config(),
                bus.clone(),
                listener,
                shutdown.clone(),
            ));
        }
        let channel = match &opts.tls {
            None => Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy(),
            Some((_, _, ca)) => Channel::from_shared(format!("https://localhost:{}", addr.port()))
                .unwrap()
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(ca).unwrap()))
                        .domain_name("localhost"),
                )
                .unwrap()
                .connect_lazy(),
        };
        let stack = Stack { nats, emulator, addr, channel, bus, shutdown, gateway };
        stack.wait_serving().await;
        stack
    }

    /// Waits (bounded) until gRPC health says SERVING.
    pub async fn wait_serving(&self) {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let mut last = None;
        for _ in 0..200 {
            let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
            if let Err(e) = &answer {
                last = Some(e.clone());
            }
            if let Ok(r) = answer
                && r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not become SERVING (last error: {last:?})");
    }

    pub async fn store(&self) -> AccountStore {
        AccountStore::open(&self.nats.js, &self.bus.topology, Keyring::from_config(&accounts_config()).unwrap())
            .await
            .unwrap()
    }

    pub fn accounts(&self) -> igrelay_gateway::proto::accounts_service_client::AccountsServiceClient<Channel> {
        igrelay_gateway::proto::accounts_service_client::AccountsServiceClient::new(self.channel.clone())
    }

    pub fn messaging(&self) -> igrelay_gateway::proto::messaging_service_client::MessagingServiceClient<Channel> {
        igrelay_gateway::proto::messaging_service_client::MessagingServiceClient::new(self.channel.clone())
    }

    pub fn conversations(
        &self,
    ) -> igrelay_gateway::proto::conversations_service_client::ConversationsServiceClient<Channel> {
        igrelay_gateway::proto::conversations_service_client::ConversationsServiceClient::new(self.channel.clone())
    }

    pub fn events(&self) -> igrelay_gateway::proto::events_service_client::EventsServiceClient<Channel> {
        igrelay_gateway::proto::events_service_client::EventsServiceClient::new(self.channel.clone())
    }

    pub fn profiles(&self) -> igrelay_gateway::proto::profiles_service_client::ProfilesServiceClient<Channel> {
        igrelay_gateway::proto::profiles_service_client::ProfilesServiceClient::new(self.channel.clone())
    }

    /// Starts the enrich service on this stack's NATS and emulator (it answers the gateway's
    /// profile requests) and waits until it is ready. Stops with the stack.
    pub async fn start_enrich(&self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ops = format!("http://{}", ops_listener.local_addr().unwrap());
        let cfg = igrelay_enrich::EnrichConfig {
            app_secrets: vec![Secret::new("enrich-test-secret")],
            // Tests assert what happens, not how fast.
            deadline: Duration::from_secs(10),
            status_base_url: base.clone(),
            ..Default::default()
        };
        tokio::spawn(igrelay_enrich::run_with_listeners(
            cfg,
            self.bus.clone(),
            GraphConfig::single_host(self.emulator.base_url.clone()),
            accounts_config(),
            listener,
            ops_listener,
            self.shutdown.clone(),
        ));
        let http = igrelay_testkit::http::client();
        for _ in 0..200 {
            if igrelay_testkit::http::get(&http, &format!("{ops}/readyz")).await.is_ok_and(|r| r.status == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("enrich did not become ready");
    }

    /// Registers the emulator's default account through the gateway.
    pub async fn register_default(&self) {
        self.accounts()
            .register_account(req(
                igrelay_core::v1::RegisterAccountRequest {
                    account_id: ACCOUNT.into(),
                    login_type: igrelay_core::v1::LoginType::Instagram as i32,
                    access_token: TOKEN.into(),
                    ..Default::default()
                },
                ADMIN_KEY,
            ))
            .await
            .unwrap();
    }

    /// Creates ACCOUNT_B (token TOKEN_B) in the emulator; register it with `register`.
    pub async fn add_account_b(&self) {
        self.emulator
            .admin
            .post("/_admin/accounts", &serde_json::json!({"ig_id": ACCOUNT_B, "token": TOKEN_B}))
            .await
            .unwrap();
    }

    /// Registers an Instagram Login account through the gateway with `api_key`.
    pub async fn register(&self, account: &str, token: &str, api_key: &str) {
        self.accounts()
            .register_account(req(
                igrelay_core::v1::RegisterAccountRequest {
                    account_id: account.into(),
                    login_type: igrelay_core::v1::LoginType::Instagram as i32,
                    access_token: token.into(),
                    ..Default::default()
                },
                api_key,
            ))
            .await
            .unwrap();
    }

    /// Graph API calls the emulator answered for `endpoint` (every account).
    pub async fn emulator_calls(&self, endpoint: &str) -> u64 {
        self.emulator.admin.calls_to(endpoint).await.unwrap()
    }

    /// Runs the Python client (tests/python/gateway_client.py) and returns its stdout.
    pub async fn python(&self, scenario: &str) -> String {
        let root = igrelay_bus::local_server::repo_root();
        let py = root.join(".tools/py");
        assert!(
            py.join("grpc_tools").is_dir(),
            "grpcio-tools is not installed in {}: run deploy/local/setup.sh",
            py.display()
        );
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/gateway_client.py");
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new("python3")
                .arg(&script)
                .args(["--addr", &self.addr.to_string(), "--key", ADMIN_KEY])
                .args(["--emulator", &self.emulator.base_url])
                .args(["--reader-key", READER_KEY, "--limited-key", LIMITED_KEY])
                .arg(scenario)
                .env("PYTHONPATH", &py)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("python client did not finish within 120 s")
        .expect("cannot run python3");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "python scenario {scenario} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        assert!(stdout.contains("{\"ok\": true}"), "{stdout}");
        stdout
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.gateway)
            .await
            .expect("gateway did not stop within 10 s")
            .unwrap()
            .unwrap();
    }
}

/// A request carrying `key` as a bearer token.
pub fn req<T>(msg: T, key: &str) -> Request<T> {
    let mut r = Request::new(msg);
    if !key.is_empty() {
        r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    r
}

/// Publishes an outcome as dispatch would.
pub async fn publish_outcome(js: &async_nats::jetstream::Context, outcome: &CommandOutcome) {
    let account = AccountId::parse(outcome.account_id.clone()).unwrap();
    Publisher::new(js.clone())
        .publish(
            OutgoingMessage::proto(
                subjects::outcome(&account, subjects::OutcomeKind::Sent),
                outcome.command_id.clone(),
                outcome,
            ),
            &Default::default(),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
}

/// Every message of `stream` on `filter`, decoded as `M`.
pub async fn read<M: prost::Message + Default>(
    js: &async_nats::jetstream::Context,
    stream: &str,
    filter: &str,
) -> Vec<M> {
    let stream = js.get_stream(stream).await.unwrap();
    let pending = stream.get_info().await.unwrap().state.messages;
    let consumer = stream
        .create_consumer(pull::OrderedConfig { filter_subject: filter.into(), ..Default::default() })
        .await
        .unwrap();
    let mut out = Vec::new();
    if pending == 0 {
        return out;
    }
    let mut msgs = consumer.messages().await.unwrap();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), msgs.next()).await {
        out.push(M::decode(m.payload.clone()).unwrap());
    }
    out
}

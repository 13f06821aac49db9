//! Starts enrich for one test: a real nats-server, the Graph API emulator, the emulator's
//! account registered in the account store, enrich on a loopback port.
#![allow(dead_code)]

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use igrelay_accounts::{AccountStore, AccountsConfig, Keyring, TokenKeyConfig};
use igrelay_bus::subjects::{self, EventKind};
use igrelay_bus::{BusConfig, OutgoingMessage, Publisher};
use igrelay_core::AccountId;
use igrelay_core::v1::{
    Account, EnrichedEvent, Event, EventMeta, LoginType, Message, Postback, Reaction, event::Payload,
};
use igrelay_emulator::{EmulatorConfig, EmulatorHandle};
use igrelay_enrich::EnrichConfig;
use igrelay_graph::GraphConfig;
use igrelay_runtime::Secret;
use igrelay_testkit::Nats;
use igrelay_testkit::http::{self, HttpClient};
use prost::Message as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const ACCOUNT: &str = "17841400000000001";
pub const TOKEN: &str = "IGAAemulatortoken1";
pub const SECRET: &str = "test-app-secret";
const TOKEN_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct App {
    pub nats: Nats,
    pub emulator: EmulatorHandle,
    pub base: String,
    /// The ops listener (`/healthz`, `/readyz`, `/metrics`).
    pub ops: String,
    pub http: HttpClient,
    pub publisher: Publisher,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    seq: std::sync::atomic::AtomicU64,
    bus: BusConfig,
    cfg: EnrichConfig,
}

/// Another enrich process on the same NATS (a replica).
pub struct Replica {
    pub base: String,
    pub ops: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn accounts_config() -> AccountsConfig {
    AccountsConfig {
        token_keys: vec![TokenKeyConfig { id: "k1".into(), key: Secret::new(TOKEN_KEY) }],
        ..Default::default()
    }
}

impl App {
    pub async fn start() -> App {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut EnrichConfig)) -> App {
        Self::start_full(tune, |_| {}).await
    }

    pub async fn start_full(
        tune: impl FnOnce(&mut EnrichConfig),
        tune_emulator: impl FnOnce(&mut EmulatorConfig),
    ) -> App {
        static TELEMETRY: std::sync::OnceLock<Option<igrelay_runtime::telemetry::TelemetryGuard>> =
            std::sync::OnceLock::new();
        TELEMETRY.get_or_init(|| {
            igrelay_runtime::telemetry::init("enrich-test", igrelay_runtime::telemetry::LogFormat::Text).ok()
        });
        let nats = Nats::start().await.expect("nats-server (run deploy/local/setup.sh)");
        let mut em = EmulatorConfig::for_tests();
        tune_emulator(&mut em);
        let emulator = igrelay_emulator::spawn(em).await.unwrap();
        let mut bus = BusConfig::default();
        bus.nats.url = nats.url();
        bus.nats.max_reconnect_delay = Duration::from_millis(200);
        // nats-server refuses streams whose reserved bytes exceed its share of the free disk:
        // keep the tests independent of how full the machine's disk is.
        bus.topology.events_max_bytes = 256 * 1024 * 1024;
        igrelay_bus::ensure_streams(&nats.js, &bus.topology, &[igrelay_bus::StreamDef::Events]).await.unwrap();
        let keyring = Keyring::from_config(&accounts_config()).unwrap();
        let store = AccountStore::open(&nats.js, &bus.topology, keyring).await.unwrap();
        let account =
            Account { account_id: ACCOUNT.into(), login_type: LoginType::Instagram as i32, ..Default::default() };
        store.put(account, TOKEN).await.unwrap();

        // Generous by default: most tests assert what happens, not how fast; the deadline test
        // sets its own.
        let mut cfg = EnrichConfig {
            app_secrets: vec![Secret::new("previous-secret"), Secret::new(SECRET)],
            deadline: Duration::from_secs(10),
            ..Default::default()
        };
        tune(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ops = format!("http://{}", ops_listener.local_addr().unwrap());
        cfg.status_base_url = base.clone();
        let graph = GraphConfig::single_host(emulator.base_url.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(igrelay_enrich::run_with_listeners(
            cfg.clone(),
            bus.clone(),
            graph,
            accounts_config(),
            listener,
            ops_listener,
            shutdown.clone(),
        ));
        let app = App {
            publisher: Publisher::new(nats.js.clone()),
            nats,
            emulator,
            base,
            ops,
            http: http::client(),
            shutdown,
            task,
            seq: Default::default(),
            bus,
            cfg,
        };
        app.wait_ready().await;
        app
    }

    /// Starts a second enrich process with the same configuration on the same NATS.
    pub async fn start_replica(&self) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ops = format!("http://{}", ops_listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(igrelay_enrich::run_with_listeners(
            EnrichConfig { status_base_url: base.clone(), ..self.cfg.clone() },
            self.bus.clone(),
            GraphConfig::single_host(self.emulator.base_url.clone()),
            accounts_config(),
            listener,
            ops_listener,
            shutdown.clone(),
        ));
        wait_ready(&self.http, &ops).await;
        Replica { base, ops, shutdown, task }
    }

    pub async fn wait_ready(&self) {
        wait_ready(&self.http, &self.ops).await
    }
}

async fn wait_ready(client: &HttpClient, base: &str) {
    {
        for _ in 0..200 {
            if http::get(client, &format!("{base}/readyz")).await.is_ok_and(|r| r.status == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("enrich did not become ready");
    }
}

impl App {
    /// The user sends a DM in the emulator: the user exists there and gave consent (Meta's view).
    pub async fn user_with_consent(&self, igsid: &str) {
        self.emulator.admin.simulate_dm(ACCOUNT, igsid, "hello").await.unwrap();
    }

    /// A user Meta knows but who never wrote (no consent on Meta's side).
    pub async fn user_without_consent(&self, igsid: &str) {
        self.emulator
            .admin
            .post("/_admin/users", &json!({"id": igsid, "username": format!("user{igsid}"), "name": "No Consent"}))
            .await
            .unwrap();
    }

    fn meta(&self, id: String) -> EventMeta {
        EventMeta {
            event_id: id,
            account_id: ACCOUNT.into(),
            event_time: Some(igrelay_core::time::now()),
            received_time: Some(igrelay_core::time::now()),
            webhook_field: "messages".into(),
            ..Default::default()
        }
    }

    pub fn message(&self, from: &str, text: &str) -> Event {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mid = format!("m-{from}-{n}");
        Event {
            meta: Some(self.meta(format!("msg:{mid}"))),
            payload: Some(Payload::Message(Message {
                sender_id: from.into(),
                recipient_id: ACCOUNT.into(),
                mid,
                text: text.into(),
                ..Default::default()
            })),
        }
    }

    pub fn postback(&self, from: &str) -> Event {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Event {
            meta: Some(self.meta(format!("postback:{from}-{n}"))),
            payload: Some(Payload::Postback(Postback {
                sender_id: from.into(),
                recipient_id: ACCOUNT.into(),
                mid: format!("pb-{n}"),
                title: "Get Started".into(),
                payload: "GET_STARTED".into(),
                ..Default::default()
            })),
        }
    }

    pub fn reaction(&self, from: &str) -> Event {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Event {
            meta: Some(self.meta(format!("reaction:{from}-{n}"))),
            payload: Some(Payload::Reaction(Reaction {
                sender_id: from.into(),
                recipient_id: ACCOUNT.into(),
                mid: format!("m-{n}"),
                reaction: "love".into(),
                ..Default::default()
            })),
        }
    }

    /// Publishes events to IGRELAY_EVENTS, in order, as ingest would.
    pub async fn publish(&self, events: &[Event]) {
        let account = AccountId::parse(ACCOUNT).unwrap();
        let msgs = events
            .iter()
            .map(|e| {
                let kind = EventKind::of(e);
                let id = e.meta.as_ref().unwrap().event_id.clone();
                OutgoingMessage::proto(subjects::event(&account, kind), id, e).with_kind(kind.token())
            })
            .collect();
        self.publisher.publish_all(msgs, &opentelemetry::Context::new(), Duration::from_secs(10)).await.unwrap();
    }

    /// Waits (bounded) until stream IGRELAY_ENRICHED holds `n` messages, then returns them all
    /// in stream order.
    pub async fn enriched(&self, n: usize) -> Vec<(String, EnrichedEvent)> {
        let mut stream = None;
        for _ in 0..400 {
            if let Ok(mut s) = self.nats.js.get_stream("IGRELAY_ENRICHED").await
                && s.info().await.is_ok_and(|i| i.state.messages as usize >= n)
            {
                stream = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stream = stream.unwrap_or_else(|| panic!("IGRELAY_ENRICHED never held {n} messages"));
        let consumer = stream
            .create_consumer(pull::OrderedConfig { filter_subject: "ig.v1.enr.>".into(), ..Default::default() })
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        let mut out = Vec::new();
        while out.len() < n {
            let msg = tokio::time::timeout(Duration::from_secs(5), messages.next()).await.unwrap().unwrap().unwrap();
            out.push((msg.subject.to_string(), EnrichedEvent::decode(msg.payload.clone()).unwrap()));
        }
        out
    }

    /// The last enriched event (waits until there are `n`).
    pub async fn nth_enriched(&self, n: usize) -> EnrichedEvent {
        self.enriched(n).await.pop().unwrap().1
    }

    /// User Profile API calls the emulator saw.
    pub async fn profile_calls(&self) -> u64 {
        self.emulator.admin.calls_to("user_profile").await.unwrap()
    }

    /// Every Graph call the emulator saw (calls refused before routing, e.g. for an expired
    /// token, are not attributed to an endpoint).
    pub async fn all_calls(&self) -> u64 {
        self.emulator.admin.calls().await.unwrap()["total"].as_u64().unwrap()
    }

    pub async fn kv(&self, bucket: &str) -> async_nats::jetstream::kv::Store {
        self.nats.js.get_key_value(bucket).await.unwrap()
    }

    pub async fn post_form(&self, path: &str, form: &str) -> http::Response {
        self.post_form_to(&self.base, path, form).await
    }

    pub async fn post_form_to(&self, base: &str, path: &str, form: &str) -> http::Response {
        let headers = [("content-type", "application/x-www-form-urlencoded".to_string())];
        http::send(&self.http, http::Method::POST, &format!("{base}{path}"), &headers, Bytes::from(form.to_owned()))
            .await
            .unwrap()
    }

    pub async fn request<Req: prost::Message, Resp: prost::Message + Default>(&self, subject: &str, req: &Req) -> Resp {
        let reply = self.nats.client.request(subject.to_owned(), req.encode_to_vec().into()).await.unwrap();
        Resp::decode(reply.payload).unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A `signed_request` as Meta builds it: base64url(HMAC-SHA256(payload part, secret)).payload.
pub fn signed_request(secret: &str, payload: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let p = b64.encode(payload.to_string());
    let mac = hex::decode(igrelay_core::webhook::hmac_sha256_hex(secret.as_bytes(), p.as_bytes())).unwrap();
    format!("{}.{p}", b64.encode(mac))
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

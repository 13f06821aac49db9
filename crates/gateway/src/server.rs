//! Start-up, shared state, health, and the tonic server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use igrelay_accounts::{AccountStore, AccountsConfig, Keyring};
use igrelay_bus::subjects::{self, AuditAction};
use igrelay_bus::topology::{KvDef, StreamDef};
use igrelay_bus::{BusConfig, OutgoingMessage, Publisher};
use igrelay_core::AccountId;
use igrelay_core::v1::AuditRecord;
use igrelay_graph::{GraphClient, GraphConfig};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Status};
use tonic_health::ServingStatus;

use crate::auth::{Authenticator, Principal, Scope};
use crate::config::GatewayConfig;
use crate::limiter::AccountLimiter;
use crate::metrics::Metrics;
use crate::proto::accounts_service_server::AccountsServiceServer;
use crate::proto::conversations_service_server::ConversationsServiceServer;
use crate::proto::events_service_server::EventsServiceServer;
use crate::proto::messaging_service_server::MessagingServiceServer;
use crate::proto::profiles_service_server::ProfilesServiceServer;
use crate::quota::PerKey;
use crate::status;

/// Everything the handlers share.
pub(crate) struct Shared {
    pub cfg: GatewayConfig,
    pub auth: Authenticator,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub publisher: Publisher,
    pub store: AccountStore,
    pub outcomes: kv::Store,
    pub leases: kv::Store,
    pub graph: GraphClient,
    pub limiter: AccountLimiter,
    pub shutdown: CancellationToken,
    pub metrics: Metrics,
    /// Open StreamEvents calls per API key.
    pub streams: Arc<PerKey>,
    /// Outcome waits per API key.
    pub waits: Arc<PerKey>,
}

/// The service implementation (one value behind all five services).
#[derive(Clone)]
pub(crate) struct Gateway(pub Arc<Shared>);

impl std::ops::Deref for Gateway {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    /// UNAVAILABLE while NATS is not connected.
    pub fn ensure_connected(&self) -> Result<(), Status> {
        if igrelay_bus::connect::is_connected(&self.client) {
            Ok(())
        } else {
            Err(status::nats_unavailable("not connected"))
        }
    }

    /// Authenticates and checks the scope.
    pub fn principal<T>(&self, req: &Request<T>, scope: Scope) -> Result<Principal, Status> {
        let p = self.auth.authenticate(req)?;
        p.require(scope)?;
        Ok(p)
    }

    /// Publishes an audit record (deduplicated by `audit_id`).
    pub async fn audit(&self, account: &AccountId, action: AuditAction, record: AuditRecord) -> Result<(), Status> {
        let msg = OutgoingMessage::proto(subjects::audit(account, action), record.audit_id.clone(), &record)
            .with_kind(action.token());
        self.publisher
            .publish(msg, &igrelay_bus::trace::current(), self.cfg.publish_deadline)
            .await
            .map(|_| ())
            .map_err(status::nats_unavailable)
    }
}

/// Binds `cfg.listen` and serves until `shutdown`.
pub async fn run(
    cfg: GatewayConfig,
    bus: BusConfig,
    accounts: AccountsConfig,
    graph: GraphConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (gateway.listen)", cfg.listen))?;
    run_with_listener(cfg, bus, accounts, graph, listener, shutdown).await
}

/// Serves gRPC on an already bound listener (tests bind port 0) until `shutdown`. Open event
/// streams end, waits for outcomes answer UNAVAILABLE, then the server returns.
pub async fn run_with_listener(
    cfg: GatewayConfig,
    bus: BusConfig,
    accounts: AccountsConfig,
    graph: GraphConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    // The listener may be bound elsewhere than `listen` (tests, `igrelay dev`): check it too.
    let bound = listener.local_addr()?;
    if let Some(problem) = cfg.plaintext_problem(bound) {
        anyhow::bail!("invalid configuration: gateway.listen: {problem}");
    }
    if cfg.tls_cert.is_none() && !bound.ip().is_loopback() {
        tracing::warn!(
            addr = %bound,
            "gateway serves plaintext gRPC beyond loopback (gateway.allow_plaintext = true): API keys are readable on the network unless a proxy or mesh adds TLS"
        );
    }
    let keyring = Keyring::from_config(&accounts)?;
    let graph = GraphClient::new(graph).context("cannot build the Graph API client")?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => {
            let cert = std::fs::read(c).with_context(|| format!("cannot read {} (gateway.tls_cert)", c.display()))?;
            let key = std::fs::read(k).with_context(|| format!("cannot read {} (gateway.tls_key)", k.display()))?;
            Some(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
        }
        _ => None,
    };
    let client = igrelay_bus::connect(&bus.nats).await?;
    let js = igrelay_bus::connect::jetstream(client.clone(), bus.nats.request_timeout);

    // Ops endpoints first, so a probe sees "not ready" while NATS is not reachable yet.
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    let readiness: igrelay_runtime::ops::Readiness = {
        let (client, ready) = (client.clone(), ready.clone());
        Arc::new(move || {
            if !igrelay_bus::connect::is_connected(&client) {
                Err("not connected to NATS".to_string())
            } else if !ready.load(Ordering::Relaxed) {
                Err("streams and buckets not confirmed yet".to_string())
            } else {
                Ok(())
            }
        })
    };
    let ops_listener = TcpListener::bind(cfg.ops_listen)
        .await
        .with_context(|| format!("cannot listen on {} (gateway.ops_listen)", cfg.ops_listen))?;
    let ops_addr = ops_listener.local_addr()?;
    let ops = igrelay_runtime::ops::router(Arc::new(registry), readiness);
    let ops_task = tokio::spawn(
        axum::serve(ops_listener, ops).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future(),
    );

    // Streams and buckets, once NATS answers.
    let (store, outcomes, leases) = loop {
        match setup(&js, &bus, keyring.clone()).await {
            Ok(x) => break x,
            Err(e) => tracing::warn!(error = %e, "cannot set up streams and buckets yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    ready.store(true, Ordering::Relaxed);

    let streams = PerKey::new("open StreamEvents calls", "max_streams_per_key", cfg.max_streams_per_key);
    let waits = PerKey::new("outcome waits", "max_waits_per_key", cfg.max_waits_per_key);
    let shared = Arc::new(Shared {
        limiter: AccountLimiter::new(cfg.conversations_per_s, cfg.conversations_max_queue),
        auth: Authenticator::new(&cfg.api_keys),
        cfg,
        client: client.clone(),
        publisher: Publisher::new(js.clone()),
        js: js.clone(),
        store,
        outcomes,
        leases,
        graph,
        shutdown: shutdown.clone(),
        metrics,
        streams,
        waits,
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    let health_task = tokio::spawn(watch_health(health, client.clone(), shutdown.clone()));
    let index_task = tokio::spawn(crate::outcomes::run_indexer(shared.clone(), shutdown.clone()));
    let refresh_task =
        shared.cfg.token_refresh.enabled.then(|| tokio::spawn(crate::refresh::run(shared.clone(), shutdown.clone())));

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;

    let gw = Gateway(shared.clone());
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder =
            builder.tls_config(tls).context("invalid TLS certificate or key (gateway.tls_cert, gateway.tls_key)")?;
    }
    let addr = listener.local_addr()?;
    tracing::info!(%addr, %ops_addr, tls = shared.cfg.tls_cert.is_some(), "gateway listening");
    let served = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AccountsServiceServer::new(gw.clone()))
        .add_service(MessagingServiceServer::new(gw.clone()))
        .add_service(ConversationsServiceServer::new(gw.clone()))
        .add_service(EventsServiceServer::new(gw.clone()))
        .add_service(ProfilesServiceServer::new(gw))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.clone().cancelled_owned(),
        )
        .await;
    // Whatever ended the server ends the background tasks too.
    shutdown.cancel();
    let _ = health_task.await;
    let _ = index_task.await;
    if let Some(t) = refresh_task {
        let _ = t.await;
    }
    let _ = ops_task.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    tracing::info!("gateway stopped");
    served.context("gateway gRPC server failed")
}

async fn setup(
    js: &jetstream::Context,
    bus: &BusConfig,
    keyring: Keyring,
) -> anyhow::Result<(AccountStore, kv::Store, kv::Store)> {
    igrelay_bus::ensure_streams(
        js,
        &bus.topology,
        &[StreamDef::Events, StreamDef::Commands, StreamDef::Outcomes, StreamDef::Audit],
    )
    .await?;
    let store = AccountStore::open(js, &bus.topology, keyring).await?;
    let outcomes = igrelay_bus::ensure_kv(js, &bus.topology, KvDef::Outcomes).await?;
    let leases = igrelay_bus::ensure_kv(js, &bus.topology, KvDef::Leases).await?;
    Ok((store, outcomes, leases))
}

const SERVICES: [&str; 6] = [
    "",
    <AccountsServiceServer<Gateway> as NamedService>::NAME,
    <MessagingServiceServer<Gateway> as NamedService>::NAME,
    <ConversationsServiceServer<Gateway> as NamedService>::NAME,
    <EventsServiceServer<Gateway> as NamedService>::NAME,
    <ProfilesServiceServer<Gateway> as NamedService>::NAME,
];

/// gRPC health follows the NATS connection: SERVING while connected, NOT_SERVING otherwise and
/// once shutting down.
async fn watch_health(
    reporter: tonic_health::server::HealthReporter,
    client: async_nats::Client,
    shutdown: CancellationToken,
) {
    let mut last = None;
    loop {
        let up = igrelay_bus::connect::is_connected(&client);
        if last != Some(up) {
            let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
            for s in SERVICES {
                reporter.set_service_status(s, status).await;
            }
            tracing::info!(serving = up, "gRPC health changed");
            last = Some(up);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    for s in SERVICES {
        reporter.set_service_status(s, ServingStatus::NotServing).await;
    }
}

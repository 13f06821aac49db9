//! Message dispatch (design flow 3): consumes send and upload commands, checks them against
//! Meta's limits and the messaging windows, calls the Graph API within the per-account rate
//! limits, keeps per-recipient order, retries what can be retried, pauses accounts whose token
//! Meta refuses, and publishes exactly one outcome per command. See docs/dispatch.md.

mod call;
pub mod config;
pub mod lease;
pub mod limiter;
mod metrics;
mod park;
pub mod process;
pub mod validate;
pub mod windows;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use igrelay_accounts::{AccountStore, AccountsConfig, Keyring};
use igrelay_bus::subjects::{self, EventKind};
use igrelay_bus::topology::KvDef;
use igrelay_bus::{BusConfig, ConsumerDef, HandlerError, Publisher, StreamDef};
use igrelay_core::v1::Event;
use igrelay_graph::{GraphClient, GraphConfig};
use prometheus_client::registry::Registry;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::DispatchConfig;

/// Everything a command needs, shared by all partitions of the process.
pub struct Ctx {
    pub cfg: DispatchConfig,
    pub js: async_nats::jetstream::Context,
    pub publisher: Publisher,
    pub accounts: AccountStore,
    pub graph: GraphClient,
    pub windows: windows::Windows,
    pub idem: async_nats::jetstream::kv::Store,
    pub limiter: limiter::Limiter,
    metrics: metrics::Metrics,
}

/// Binds `cfg.listen` for the ops endpoints and runs until `shutdown`.
pub async fn run(
    cfg: DispatchConfig,
    graph: GraphConfig,
    accounts: AccountsConfig,
    bus: BusConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (dispatch.listen)", cfg.listen))?;
    run_with_listener(cfg, graph, accounts, bus, listener, shutdown).await
}

pub async fn run_with_listener(
    cfg: DispatchConfig,
    graph: GraphConfig,
    accounts: AccountsConfig,
    bus: BusConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let keyring = Keyring::from_config(&accounts)?;
    let client = igrelay_bus::connect(&bus.nats).await?;
    let js = igrelay_bus::connect::jetstream(client.clone(), bus.nats.request_timeout);
    // Start-up waits for NATS; Kubernetes sees not-ready meanwhile via /readyz.
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readiness: igrelay_runtime::ops::Readiness = {
        let (client, ready) = (client.clone(), ready.clone());
        Arc::new(move || {
            if !igrelay_bus::connect::is_connected(&client) {
                Err("not connected to NATS".into())
            } else if !ready.load(std::sync::atomic::Ordering::Relaxed) {
                Err("streams and buckets not ready yet".into())
            } else {
                Ok(())
            }
        })
    };
    let ops = igrelay_runtime::ops::router(Arc::new(registry), readiness);
    let ops_shutdown = shutdown.clone();
    let ops_task =
        tokio::spawn(
            async move { axum::serve(listener, ops).with_graceful_shutdown(ops_shutdown.cancelled_owned()).await },
        );

    let ctx = loop {
        match setup(&cfg, &graph, &bus, &js, keyring.clone(), metrics.clone()).await {
            Ok(ctx) => break Arc::new(ctx),
            Err(e) => {
                tracing::warn!(error = %e, "dispatch not ready yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    ready.store(true, std::sync::atomic::Ordering::Relaxed);

    let windows_task = tokio::spawn(learn_windows(ctx.clone(), shutdown.clone()));
    let leases = igrelay_bus::ensure_kv(&js, &bus.topology, KvDef::DispatchLeases).await?;
    let me = format!("{}-{}", hostname(), client.server_info().client_id);
    let ownership =
        lease::Ownership::new(leases, me, bus.topology.dispatch_lease_ttl, bus.topology.command_partitions.max(1));
    manage_partitions(ctx.clone(), ownership, shutdown.clone()).await;
    let _ = windows_task.await;
    let _ = ops_task.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    tracing::info!("dispatch stopped");
    Ok(())
}

async fn setup(
    cfg: &DispatchConfig,
    graph: &GraphConfig,
    bus: &BusConfig,
    js: &async_nats::jetstream::Context,
    keyring: Keyring,
    metrics: metrics::Metrics,
) -> anyhow::Result<Ctx> {
    igrelay_bus::ensure_streams(
        js,
        &bus.topology,
        &[StreamDef::Events, StreamDef::Commands, StreamDef::Outcomes, StreamDef::DeadLetters, StreamDef::Parked],
    )
    .await?;
    Ok(Ctx {
        cfg: cfg.clone(),
        js: js.clone(),
        publisher: Publisher::new(js.clone()),
        accounts: AccountStore::open(js, &bus.topology, keyring).await?,
        graph: GraphClient::new(graph.clone())?,
        windows: windows::Windows::new(igrelay_bus::ensure_kv(js, &bus.topology, KvDef::Windows).await?),
        idem: igrelay_bus::ensure_kv(js, &bus.topology, KvDef::Idempotency).await?,
        limiter: limiter::Limiter::new(cfg.limits.clone()),
        metrics,
    })
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| igrelay_core::ids::check_token(h).is_ok())
        .unwrap_or_else(|| "dispatch".into())
}

/// Learns messaging windows and comments from the events stream (shared by all replicas).
async fn learn_windows(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut def = ConsumerDef::new(StreamDef::Events, "dispatch-windows");
    for kind in
        [EventKind::Message, EventKind::Postback, EventKind::Referral, EventKind::Comment, EventKind::LiveComment]
    {
        def = def.filter(subjects::events_of_kind(kind));
    }
    let handler = |d: igrelay_bus::Delivery| {
        let ctx = ctx.clone();
        async move {
            let event = Event::decode(d.payload)
                .map_err(|e| HandlerError::Reject { reason: format!("not an igrelay.v1.Event: {e}") })?;
            ctx.windows
                .learn(&event)
                .await
                .map_err(|e| HandlerError::Retry { reason: e.to_string(), after: Duration::from_millis(500) })
        }
    };
    if let Err(e) = igrelay_bus::run_consumer(&ctx.js, &def, handler, shutdown).await {
        tracing::error!(error = %e, "windows consumer stopped");
    }
}

struct Held {
    lease: lease::Lease,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn manage_partitions(ctx: Arc<Ctx>, ownership: lease::Ownership, shutdown: CancellationToken) {
    let mut held: HashMap<u32, Held> = HashMap::new();
    loop {
        let leases: HashMap<u32, lease::Lease> = held.iter().map(|(p, h)| (*p, h.lease.clone())).collect();
        match ownership.round(&leases).await {
            Ok(round) => {
                for p in round.lost {
                    tracing::warn!(partition = p, "partition lease lost; stopping");
                    if let Some(h) = held.remove(&p) {
                        h.stop.cancel();
                        let _ = h.task.await;
                    }
                }
                for p in round.to_release {
                    if let Some(h) = held.remove(&p) {
                        h.stop.cancel();
                        let _ = h.task.await;
                        ownership.release(p).await;
                        tracing::info!(partition = p, "partition handed over");
                    }
                }
                for (p, lease) in round.acquired {
                    let stop = shutdown.child_token();
                    let task = tokio::spawn(worker::run(ctx.clone(), p, lease.clone(), stop.clone()));
                    held.insert(p, Held { lease, stop, task });
                }
                ctx.metrics.partitions.set(held.len() as i64);
            }
            Err(e) => tracing::warn!(error = %e, "partition round failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(ownership.interval()) => {}
        }
    }
    for (p, h) in held.drain() {
        h.stop.cancel();
        let _ = h.task.await;
        ownership.release(p).await;
    }
    ownership.leave().await;
}

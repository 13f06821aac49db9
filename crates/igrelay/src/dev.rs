//! `igrelay dev`: everything in one process for a laptop or a demo. Starts a nats-server (the
//! pinned one from deploy/local/setup.sh) unless `--nats-url` is given, fills in development
//! secrets where none are configured, and prints the URLs to use.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use igrelay_bus::local_server::LocalNatsServer;
use igrelay_runtime::Secret;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Used when no verify token / app secret is configured; printed at start.
pub const DEV_VERIFY_TOKEN: &str = "igrelay-dev-verify-token";
pub const DEV_APP_SECRET: &str = "igrelay-dev-app-secret";
/// Encrypts stored tokens in development only (32 bytes, base64); never use it elsewhere.
/// The gateway's API key in development only (every scope); printed at start.
pub const DEV_API_KEY: &str = "igrelay-dev-api-key";
const DEV_TOKEN_KEY: &str = "aWdyZWxheS1kZXYtb25seS10b2tlbi1rZXktMzJieXQ=";

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Use this NATS server instead of starting one.
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Port for the nats-server dev starts; a busy port falls back to a free one.
    #[arg(long, default_value_t = 4222)]
    pub nats_port: u16,
    /// Where that nats-server keeps its streams between runs.
    #[arg(long, default_value = ".tools/dev/nats")]
    pub nats_store: PathBuf,
    /// Do not start the Graph API emulator (use the `[graph]` base URLs as configured).
    #[arg(long)]
    pub no_emulator: bool,
}

pub async fn run(mut cfg: Config, args: DevArgs) -> anyhow::Result<()> {
    // The nats-server we start is stopped on a second signal too, when the process exits
    // without running destructors.
    let nats_server: Arc<Mutex<Option<LocalNatsServer>>> = Arc::default();
    let shutdown = {
        let server = nats_server.clone();
        igrelay_runtime::shutdown::on_signal_then(move || {
            if let Some(mut s) = server.lock().unwrap_or_else(|p| p.into_inner()).take() {
                s.kill();
            }
        })
    };
    match &args.nats_url {
        Some(url) => cfg.nats.url = url.clone(),
        None => {
            let server = match LocalNatsServer::start_with(args.nats_port, args.nats_store.clone()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, port = args.nats_port, "cannot start nats-server on that port; trying a free one");
                    LocalNatsServer::start_with(0, args.nats_store.clone())?
                }
            };
            cfg.nats.url = server.url();
            *nats_server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        }
    }
    let result = run_services(cfg, &args, shutdown).await;
    // Stopped before we return, whatever happened.
    drop(nats_server.lock().unwrap_or_else(|p| p.into_inner()).take());
    result
}

/// Runs every service until a signal or until one of them ends; a service that ends on its
/// own is a failure that stops the others and names it.
async fn run_services(mut cfg: Config, args: &DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if cfg.ingest.verify_token.is_empty() {
        cfg.ingest.verify_token = Secret::new(DEV_VERIFY_TOKEN);
    }
    if cfg.ingest.app_secrets.is_empty() {
        cfg.ingest.app_secrets = vec![Secret::new(DEV_APP_SECRET)];
    }
    cfg.ingest.validate()?;
    let mut services: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();

    let default = igrelay_ingest::IngestConfig::default().listen;
    let listener = bind(&mut cfg.ingest.listen, default, 8080, "ingest.listen").await?;
    let ingest_addr = listener.local_addr()?;
    let ingest_ops = bind_ops(cfg.ingest.ops_listen, igrelay_ingest::IngestConfig::default().ops_listen).await?;
    let ingest_ops_addr = ingest_ops.local_addr()?;
    services.spawn(named(
        "ingest",
        igrelay_ingest::run_with_listeners(cfg.ingest.clone(), cfg.bus(), listener, ingest_ops, shutdown.clone()),
    ));

    let emulator = if args.no_emulator { None } else { Some(start_emulator(&mut cfg, ingest_addr).await?) };

    // Dispatch: a development token key when none is configured, and the emulator's accounts
    // registered so commands work out of the box.
    if cfg.accounts.token_keys.is_empty() {
        cfg.accounts.token_keys =
            vec![igrelay_accounts::TokenKeyConfig { id: "dev".into(), key: Secret::new(DEV_TOKEN_KEY) }];
    }
    if emulator.is_some() {
        register_emulator_accounts(&cfg).await?;
    }
    let default = igrelay_dispatch::DispatchConfig::default().listen;
    let dispatch_listener = bind(&mut cfg.dispatch.listen, default, 8081, "dispatch.listen").await?;
    let dispatch_addr = dispatch_listener.local_addr()?;
    services.spawn(named(
        "dispatch",
        igrelay_dispatch::run_with_listener(
            cfg.dispatch.clone(),
            cfg.graph.clone(),
            cfg.accounts.clone(),
            cfg.bus(),
            dispatch_listener,
            shutdown.clone(),
        ),
    ));

    // Enrich: Meta's data deletion callback is signed with the same app secret as webhooks.
    if cfg.enrich.app_secrets.is_empty() {
        cfg.enrich.app_secrets = cfg.ingest.app_secrets.clone();
    }
    let default = igrelay_enrich::EnrichConfig::default().listen;
    let enrich_listener = bind(&mut cfg.enrich.listen, default, 8082, "enrich.listen").await?;
    let enrich_addr = enrich_listener.local_addr()?;
    if cfg.enrich.status_base_url == igrelay_enrich::EnrichConfig::default().status_base_url {
        cfg.enrich.status_base_url = format!("http://{enrich_addr}");
    }
    let enrich_ops = bind_ops(cfg.enrich.ops_listen, igrelay_enrich::EnrichConfig::default().ops_listen).await?;
    let enrich_ops_addr = enrich_ops.local_addr()?;
    services.spawn(named(
        "enrich",
        igrelay_enrich::run_with_listeners(
            cfg.enrich.clone(),
            cfg.bus(),
            cfg.graph.clone(),
            cfg.accounts.clone(),
            enrich_listener,
            enrich_ops,
            shutdown.clone(),
        ),
    ));

    // The gRPC gateway, with a development API key when none is configured.
    if cfg.gateway.api_keys.is_empty() {
        cfg.gateway.api_keys = vec![igrelay_gateway::ApiKeyConfig::all_scopes("dev", DEV_API_KEY)];
    }
    let gateway_defaults = igrelay_gateway::GatewayConfig::default();
    if cfg.gateway.ops_listen == gateway_defaults.ops_listen {
        // Its ops endpoints on a free port: the gRPC health service is the one to probe here.
        cfg.gateway.ops_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    }
    // Validated once bound: `bind` moves the production default (0.0.0.0, which needs TLS) to
    // the laptop's loopback, where plaintext is fine.
    let gateway_listener = bind(&mut cfg.gateway.listen, gateway_defaults.listen, 50051, "gateway.listen").await?;
    cfg.gateway.validate()?;
    let gateway_addr = gateway_listener.local_addr()?;
    services.spawn(named(
        "gateway",
        igrelay_gateway::run_with_listener(
            cfg.gateway.clone(),
            cfg.bus(),
            cfg.accounts.clone(),
            cfg.graph.clone(),
            gateway_listener,
            shutdown.clone(),
        ),
    ));

    banner(&cfg, ingest_addr, ingest_ops_addr, dispatch_addr, emulator.as_ref().map(|e| e.base_url.as_str()))?;
    println_enrich(enrich_addr, enrich_ops_addr)?;
    println_gateway(&cfg, gateway_addr)?;

    let result = wait_for_services(&mut services, &shutdown).await;
    if let Some(e) = emulator {
        e.shutdown().await;
    }
    result
}

/// Waits for a signal or for a service to end on its own (a crash: then the others stop too),
/// then for every service to finish. The first failure is the result.
async fn wait_for_services(
    services: &mut JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let first = tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        ended = services.join_next() => ended,
    };
    // A service that ended before any signal crashed (even with Ok: it is meant to run); one
    // that ended cleanly because the signal came meanwhile did not.
    let stopping = shutdown.is_cancelled();
    shutdown.cancel();
    let mut failure = first.and_then(|ended| match ended {
        Ok((_, Ok(()))) if stopping => None,
        Ok((name, Ok(()))) => Some(anyhow::anyhow!("{name} stopped on its own; stopping the others")),
        Ok((name, Err(e))) => Some(e.context(format!("{name} failed; stopping the others"))),
        Err(e) => Some(anyhow::anyhow!("a service task failed: {e}")),
    });
    if let Some(e) = &failure {
        tracing::error!(error = %format!("{e:#}"), "a service ended");
    }
    while let Some(ended) = services.join_next().await {
        let e = match ended {
            Ok((_, Ok(()))) => continue,
            Ok((name, Err(e))) => e.context(format!("{name} failed")),
            Err(e) => anyhow::anyhow!("a service task failed: {e}"),
        };
        tracing::error!(error = %format!("{e:#}"), "a service failed while stopping");
        failure.get_or_insert(e);
    }
    failure.map_or(Ok(()), Err)
}

/// The emulator plays Meta: its webhooks go to ingest, signed with ingest's secret, and the
/// Graph API client talks to it.
async fn start_emulator(cfg: &mut Config, ingest_addr: SocketAddr) -> anyhow::Result<igrelay_emulator::EmulatorHandle> {
    let mut em = cfg.emulator.clone();
    if em.webhooks.callback_url.is_none() {
        em.webhooks.callback_url = Some(format!("http://{ingest_addr}{}", cfg.ingest.path));
    }
    if let Some(secret) = cfg.ingest.app_secrets.first() {
        em.app_secret = secret.expose().to_owned();
    }
    em.verify_token = cfg.ingest.verify_token.expose().to_owned();
    let dev_default = em.listen == igrelay_emulator::EmulatorConfig::default().listen;
    let handle = match igrelay_emulator::spawn(em.clone()).await {
        Ok(h) => h,
        // The laptop default may be taken (another dev running): any free port will do.
        Err(e) if dev_default => {
            tracing::warn!(error = %e, "the emulator's default port is busy; it takes a free one");
            igrelay_emulator::spawn(igrelay_emulator::EmulatorConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..em
            })
            .await?
        }
        Err(e) => return Err(e.context("emulator.listen")),
    };
    cfg.graph.instagram_base_url = handle.base_url.clone();
    cfg.graph.facebook_base_url = handle.base_url.clone();
    Ok(handle)
}

async fn named(
    name: &'static str,
    service: impl Future<Output = anyhow::Result<()>>,
) -> (&'static str, anyhow::Result<()>) {
    (name, service.await)
}

/// Binds a service's listener. A listen address left at its production default becomes the
/// laptop's loopback `dev_port`, and a busy `dev_port` falls back to a free one (another dev
/// may be running); an address set explicitly is bound as given (port 0: a free one).
async fn bind(
    listen: &mut SocketAddr,
    production_default: SocketAddr,
    dev_port: u16,
    key: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    if *listen != production_default {
        let listener = tokio::net::TcpListener::bind(*listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen} ({key}): {e}"))?;
        *listen = listener.local_addr()?;
        return Ok(listener);
    }
    let dev = SocketAddr::from(([127, 0, 0, 1], dev_port));
    let listener = match tokio::net::TcpListener::bind(dev).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, %key, "{dev} is busy; taking a free port");
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?
        }
    };
    *listen = listener.local_addr()?;
    Ok(listener)
}

/// An ops listener: on a free loopback port when the setting is the (public) default.
async fn bind_ops(configured: SocketAddr, default: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = if configured == default { SocketAddr::from(([127, 0, 0, 1], 0)) } else { configured };
    tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} (ops_listen): {e}"))
}

fn banner(
    cfg: &Config,
    ingest: SocketAddr,
    ops: SocketAddr,
    dispatch: SocketAddr,
    emulator: Option<&str>,
) -> anyhow::Result<()> {
    let dev_secret = cfg.ingest.app_secrets.iter().any(|s| s.expose() == DEV_APP_SECRET);
    let mut out = std::io::stdout().lock();
    writeln!(out, "igrelay dev is running (Ctrl-C to stop)")?;
    writeln!(out, "  NATS                 {}", cfg.nats.display_url())?;
    writeln!(out, "  webhook callback     http://{ingest}{}", cfg.ingest.path)?;
    writeln!(out, "  health / metrics     http://{ops}/readyz  http://{ops}/metrics")?;
    if cfg.ingest.verify_token.expose() == DEV_VERIFY_TOKEN {
        writeln!(out, "  verify token         {DEV_VERIFY_TOKEN} (development default)")?;
    }
    if dev_secret {
        writeln!(out, "  app secret           {DEV_APP_SECRET} (development default; sign test webhooks with it)")?;
    }
    writeln!(out, "  events               subscribe to ig.v1.evt.> (stream IGRELAY_EVENTS)")?;
    writeln!(out, "  dispatch             http://{dispatch}/readyz  http://{dispatch}/metrics")?;
    if let Some(em) = emulator {
        writeln!(out, "  graph API emulator   {em} (admin API: crates/emulator/README.md)")?;
        writeln!(
            out,
            "  simulate a DM        curl -s -XPOST {em}/_admin/simulate/message -d '{{\"text\":\"hello\"}}'"
        )?;
    }
    out.flush()?;
    Ok(())
}

fn println_enrich(addr: SocketAddr, ops: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "  enriched events      subscribe to ig.v1.enr.> (stream IGRELAY_ENRICHED)")?;
    writeln!(out, "  data deletion        http://{addr}/meta/data-deletion (enrich)")?;
    writeln!(out, "  enrich health        http://{ops}/readyz  http://{ops}/metrics")?;
    out.flush()?;
    Ok(())
}

fn println_gateway(cfg: &Config, addr: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "  gRPC gateway         {addr} (reflection on; docs/gateway.md)")?;
    if cfg.gateway.api_keys.iter().any(|k| k.sha256 == igrelay_gateway::config::sha256_hex(DEV_API_KEY)) {
        writeln!(out, "  gateway API key      {DEV_API_KEY} (development default; every scope)")?;
    }
    out.flush()?;
    Ok(())
}

/// Registers the emulator's seeded accounts (their tokens are the emulator's, not Meta's).
async fn register_emulator_accounts(cfg: &Config) -> anyhow::Result<()> {
    let client = igrelay_bus::connect(&cfg.nats).await?;
    let js = igrelay_bus::connect::jetstream(client, cfg.nats.request_timeout);
    let keyring = igrelay_accounts::Keyring::from_config(&cfg.accounts)?;
    let store = igrelay_accounts::AccountStore::open(&js, &cfg.topology, keyring).await?;
    for seed in &cfg.emulator.accounts {
        let account = igrelay_core::v1::Account {
            account_id: seed.ig_id.clone(),
            login_type: igrelay_core::v1::LoginType::Instagram as i32,
            page_id: seed.page_id.clone(),
            username: seed.username.clone(),
            ..Default::default()
        };
        store.put(account, &seed.token).await?;
    }
    Ok(())
}

//! `igrelay dev`: everything in one process for a laptop or a demo. Starts a nats-server (the
//! pinned one from deploy/local/setup.sh) unless `--nats-url` is given, fills in development
//! secrets where none are configured, and prints the URLs to use.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use igrelay_bus::local_server::LocalNatsServer;
use igrelay_runtime::Secret;

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
    let _server = match &args.nats_url {
        Some(url) => {
            cfg.nats.url = url.clone();
            None
        }
        None => {
            let server = match LocalNatsServer::start_with(args.nats_port, args.nats_store.clone()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, port = args.nats_port, "cannot start nats-server on that port; trying a free one");
                    LocalNatsServer::start_with(0, args.nats_store.clone())?
                }
            };
            cfg.nats.url = server.url();
            Some(server)
        }
    };
    if cfg.ingest.verify_token.is_empty() {
        cfg.ingest.verify_token = Secret::new(DEV_VERIFY_TOKEN);
    }
    if cfg.ingest.app_secrets.is_empty() {
        cfg.ingest.app_secrets = vec![Secret::new(DEV_APP_SECRET)];
    }
    if cfg.ingest.listen == igrelay_ingest::IngestConfig::default().listen {
        // A laptop default: not reachable from the network.
        cfg.ingest.listen = SocketAddr::from(([127, 0, 0, 1], 8080));
    }
    cfg.ingest.validate()?;

    let shutdown = igrelay_runtime::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(cfg.ingest.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (ingest.listen): {e}", cfg.ingest.listen))?;
    let ingest_addr = listener.local_addr()?;
    let ingest_ops = bind_ops(cfg.ingest.ops_listen, igrelay_ingest::IngestConfig::default().ops_listen).await?;
    let ingest_ops_addr = ingest_ops.local_addr()?;
    let ingest = tokio::spawn(igrelay_ingest::run_with_listeners(
        cfg.ingest.clone(),
        cfg.bus(),
        listener,
        ingest_ops,
        shutdown.clone(),
    ));

    // The emulator plays Meta: its webhooks go to ingest, signed with ingest's secret, and the
    // Graph API client talks to it.
    let emulator = if args.no_emulator {
        None
    } else {
        let mut em = cfg.emulator.clone();
        if em.webhooks.callback_url.is_none() {
            em.webhooks.callback_url = Some(format!("http://{ingest_addr}{}", cfg.ingest.path));
        }
        if let Some(secret) = cfg.ingest.app_secrets.first() {
            em.app_secret = secret.expose().to_owned();
        }
        em.verify_token = cfg.ingest.verify_token.expose().to_owned();
        let handle = igrelay_emulator::spawn(em).await?;
        cfg.graph.instagram_base_url = handle.base_url.clone();
        cfg.graph.facebook_base_url = handle.base_url.clone();
        Some(handle)
    };

    // Dispatch: a development token key when none is configured, and the emulator's accounts
    // registered so commands work out of the box.
    if cfg.accounts.token_keys.is_empty() {
        cfg.accounts.token_keys =
            vec![igrelay_accounts::TokenKeyConfig { id: "dev".into(), key: Secret::new(DEV_TOKEN_KEY) }];
    }
    if emulator.is_some() {
        register_emulator_accounts(&cfg).await?;
    }
    if cfg.dispatch.listen == igrelay_dispatch::DispatchConfig::default().listen {
        cfg.dispatch.listen = SocketAddr::from(([127, 0, 0, 1], 8081));
    }
    let dispatch_listener = tokio::net::TcpListener::bind(cfg.dispatch.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (dispatch.listen): {e}", cfg.dispatch.listen))?;
    let dispatch = tokio::spawn(igrelay_dispatch::run_with_listener(
        cfg.dispatch.clone(),
        cfg.graph.clone(),
        cfg.accounts.clone(),
        cfg.bus(),
        dispatch_listener,
        shutdown.clone(),
    ));

    // Enrich: Meta's data deletion callback is signed with the same app secret as webhooks.
    if cfg.enrich.app_secrets.is_empty() {
        cfg.enrich.app_secrets = cfg.ingest.app_secrets.clone();
    }
    if cfg.enrich.listen == igrelay_enrich::EnrichConfig::default().listen {
        cfg.enrich.listen = SocketAddr::from(([127, 0, 0, 1], 8082));
    }
    let enrich_listener = match tokio::net::TcpListener::bind(cfg.enrich.listen).await {
        Ok(l) => l,
        // The laptop default may be taken (another dev running): any free port will do.
        Err(e) if cfg.enrich.listen == SocketAddr::from(([127, 0, 0, 1], 8082)) => {
            tracing::warn!(error = %e, "cannot listen on 127.0.0.1:8082; enrich takes a free port");
            tokio::net::TcpListener::bind("127.0.0.1:0").await?
        }
        Err(e) => anyhow::bail!("cannot listen on {} (enrich.listen): {e}", cfg.enrich.listen),
    };
    let enrich_addr = enrich_listener.local_addr()?;
    let enrich_ops = bind_ops(cfg.enrich.ops_listen, igrelay_enrich::EnrichConfig::default().ops_listen).await?;
    let enrich_ops_addr = enrich_ops.local_addr()?;
    if cfg.enrich.status_base_url == igrelay_enrich::EnrichConfig::default().status_base_url {
        cfg.enrich.status_base_url = format!("http://{enrich_addr}");
    }
    let enrich = tokio::spawn(igrelay_enrich::run_with_listeners(
        cfg.enrich.clone(),
        cfg.bus(),
        cfg.graph.clone(),
        cfg.accounts.clone(),
        enrich_listener,
        enrich_ops,
        shutdown.clone(),
    ));

    // The gRPC gateway, with a development API key when none is configured.
    if cfg.gateway.api_keys.is_empty() {
        cfg.gateway.api_keys = vec![igrelay_gateway::ApiKeyConfig::all_scopes("dev", DEV_API_KEY)];
    }
    let gateway_defaults = igrelay_gateway::GatewayConfig::default();
    let dev_grpc = cfg.gateway.listen == gateway_defaults.listen;
    if dev_grpc {
        cfg.gateway.listen = SocketAddr::from(([127, 0, 0, 1], 50051));
    }
    if cfg.gateway.ops_listen == gateway_defaults.ops_listen {
        // Its ops endpoints on a free port: the gRPC health service is the one to probe here.
        cfg.gateway.ops_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    }
    cfg.gateway.validate()?;
    let gateway_listener = match tokio::net::TcpListener::bind(cfg.gateway.listen).await {
        Ok(l) => l,
        Err(e) if dev_grpc => {
            tracing::warn!(error = %e, "port 50051 is busy; the gateway takes a free port");
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?
        }
        Err(e) => anyhow::bail!("cannot listen on {} (gateway.listen): {e}", cfg.gateway.listen),
    };
    let gateway_addr = gateway_listener.local_addr()?;
    let gateway = tokio::spawn(igrelay_gateway::run_with_listener(
        cfg.gateway.clone(),
        cfg.bus(),
        cfg.accounts.clone(),
        cfg.graph.clone(),
        gateway_listener,
        shutdown.clone(),
    ));

    banner(&cfg, ingest_addr, ingest_ops_addr, emulator.as_ref().map(|e| e.base_url.as_str()))?;
    println_enrich(enrich_addr, enrich_ops_addr)?;
    println_gateway(&cfg, gateway_addr)?;
    let result = ingest.await;
    shutdown.cancel();
    if let Ok(Err(e)) = dispatch.await {
        tracing::error!(error = %e, "dispatch failed");
    }
    if let Ok(Err(e)) = enrich.await {
        tracing::error!(error = %e, "enrich failed");
    }
    if let Ok(Err(e)) = gateway.await {
        tracing::error!(error = %e, "gateway failed");
    }
    if let Some(e) = emulator {
        e.shutdown().await;
    }
    result.map_err(|e| anyhow::anyhow!("ingest task failed: {e}"))?
}

/// An ops listener: on a free loopback port when the setting is the (public) default.
async fn bind_ops(configured: SocketAddr, default: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = if configured == default { SocketAddr::from(([127, 0, 0, 1], 0)) } else { configured };
    tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} (ops_listen): {e}"))
}

fn banner(cfg: &Config, ingest: SocketAddr, ops: SocketAddr, emulator: Option<&str>) -> anyhow::Result<()> {
    let dev_secret = cfg.ingest.app_secrets.iter().any(|s| s.expose() == DEV_APP_SECRET);
    let mut out = std::io::stdout().lock();
    writeln!(out, "igrelay dev is running (Ctrl-C to stop)")?;
    writeln!(out, "  NATS                 {}", cfg.nats.url)?;
    writeln!(out, "  webhook callback     http://{ingest}{}", cfg.ingest.path)?;
    writeln!(out, "  health / metrics     http://{ops}/readyz  http://{ops}/metrics")?;
    if cfg.ingest.verify_token.expose() == DEV_VERIFY_TOKEN {
        writeln!(out, "  verify token         {DEV_VERIFY_TOKEN} (development default)")?;
    }
    if dev_secret {
        writeln!(out, "  app secret           {DEV_APP_SECRET} (development default; sign test webhooks with it)")?;
    }
    writeln!(out, "  events               subscribe to ig.v1.evt.> (stream IGRELAY_EVENTS)")?;
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

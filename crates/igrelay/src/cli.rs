//! Command line: which service to run, and where its configuration comes from.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "igrelay",
    version,
    about = "Instagram webhooks in, typed events on NATS out; commands carried out within Meta's limits."
)]
pub struct Cli {
    /// TOML configuration file (layered: defaults, then this file, then IGRELAY_<SECTION>__<KEY>
    /// environment variables, then --set).
    #[arg(long, short = 'c', global = true, env = "IGRELAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. --set ingest.listen=127.0.0.1:9000 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub sets: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Webhook ingest: Meta's webhooks in, typed events on NATS out.
    Ingest,
    /// Profile enrichment: inbound user events republished with the sender's profile; Meta's data deletion callback.
    Enrich,
    /// Message dispatch: send commands carried out against the Graph API within Meta's limits.
    Dispatch,
    /// The gRPC gateway: accounts, messaging, conversations and live events for internal callers.
    Gateway,
    /// The Graph API emulator: a stand-in for Meta (Graph API + webhook sender), see crates/emulator/README.md.
    Emulator,
    /// Everything in one process, with a nats-server it starts itself when --nats-url is not given.
    Dev(crate::dev::DevArgs),
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Benchmarks; each prints one JSON object.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref(), &cli.sets)?;
    match cli.command {
        Command::Config => {
            let text = cfg.redacted_toml()?;
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Command::Dispatch => {
            let _telemetry = igrelay_runtime::telemetry::init("igrelay-dispatch", cfg.log.format)?;
            let shutdown = igrelay_runtime::shutdown::on_signal();
            let bus = cfg.bus();
            igrelay_dispatch::run(cfg.dispatch, cfg.graph, cfg.accounts, bus, shutdown).await
        }
        Command::Gateway => {
            let _telemetry = igrelay_runtime::telemetry::init("igrelay-gateway", cfg.log.format)?;
            cfg.gateway.validate()?;
            let shutdown = igrelay_runtime::shutdown::on_signal();
            let bus = cfg.bus();
            igrelay_gateway::run(cfg.gateway, bus, cfg.accounts, cfg.graph, shutdown).await
        }
        Command::Ingest => {
            let _telemetry = igrelay_runtime::telemetry::init("igrelay-ingest", cfg.log.format)?;
            cfg.ingest.validate()?;
            let shutdown = igrelay_runtime::shutdown::on_signal();
            let bus = cfg.bus();
            igrelay_ingest::run(cfg.ingest, bus, shutdown).await
        }
        Command::Enrich => {
            let _telemetry = igrelay_runtime::telemetry::init("igrelay-enrich", cfg.log.format)?;
            cfg.enrich.validate()?;
            let shutdown = igrelay_runtime::shutdown::on_signal();
            let bus = cfg.bus();
            igrelay_enrich::run(cfg.enrich, bus, cfg.graph, cfg.accounts, shutdown).await
        }
        Command::Emulator => {
            let _telemetry = igrelay_runtime::telemetry::init("igrelay-emulator", cfg.log.format)?;
            let shutdown = igrelay_runtime::shutdown::on_signal();
            igrelay_emulator::run(cfg.emulator, shutdown).await
        }
        Command::Dev(args) => {
            let _telemetry = igrelay_runtime::telemetry::init("igrelay-dev", cfg.log.format)?;
            crate::dev::run(cfg, args).await
        }
        Command::Bench(b) => crate::bench::run(cfg, b).await,
    }
}

/// Prints an error chain for a person and returns the failure exit code.
pub fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "igrelay: {e}");
    for cause in e.chain().skip(1) {
        let _ = writeln!(err, "  caused by: {cause}");
    }
    std::process::ExitCode::FAILURE
}

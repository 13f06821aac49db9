//! `igrelay bench <what>`: measurements that print one JSON object, each compared with a
//! baseline measured in the same run on the same machine.

mod dispatch;
mod dispatch_pause;
mod enrich;
mod ingest;
mod load;
mod measure;

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Webhook ingest against the least a durable ingest can do (see docs/benchmarks.md).
    Ingest(ingest::IngestBenchArgs),
    /// Dispatch against Meta's per-account limit, enforced by the emulator (see docs/benchmarks.md).
    Dispatch(dispatch::DispatchBenchArgs),
    /// Enriched events/s with a warm cache, and the latency enrich adds (see docs/enrich.md).
    Enrich(enrich::EnrichBenchArgs),
    /// The baseline server of `bench ingest` (started by it; not for direct use).
    #[command(hide = true)]
    BaselineServer(ingest::BaselineArgs),
}

pub async fn run(cfg: Config, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => ingest::run(args).await,
        BenchCommand::Dispatch(args) => dispatch::run(args).await,
        BenchCommand::Enrich(args) => enrich::run(args).await,
        BenchCommand::BaselineServer(args) => ingest::baseline_server(cfg, args).await,
    }
}

//! `igrelay`: one binary for every service. See `igrelay --help` and README.md.

mod bench;
mod cli;
mod config;
mod dev;

use clap::Parser;

// Request handling allocates many small short-lived buffers; mimalloc measured faster than the
// system allocator for that (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return cli::fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => cli::fail(&e),
    }
}

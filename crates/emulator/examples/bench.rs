//! `cargo run -p igrelay-emulator --release --example bench [requests] [concurrency]`
//! prints the emulator's POST /messages throughput on loopback as JSON.
// An example's whole job is to print its result.
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let requests = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let concurrency = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let report = igrelay_emulator::bench_requests_per_s(requests, concurrency).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

//! Generates the `igrelay.v1` types from `proto/` with protox: no system `protoc` needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "igrelay/v1/events.proto",
        "igrelay/v1/commands.proto",
        "igrelay/v1/outcomes.proto",
        "igrelay/v1/profiles.proto",
        "igrelay/v1/audit.proto",
        "igrelay/v1/gateway.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    let mut config = prost_build::Config::new();
    config.compile_fds(fds)?;
    // Re-run when any contract changes.
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}

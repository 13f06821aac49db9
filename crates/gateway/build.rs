//! Generates only the tonic service code for `proto/igrelay/v1/gateway.proto`; the messages
//! themselves are generated once, in igrelay-core (`extern_path`). Also writes the file
//! descriptor set that server reflection serves. protox: no system `protoc` needed.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(["igrelay/v1/gateway.proto"], [&root])?;
    std::fs::write(out.join("gateway_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".igrelay.v1", "::igrelay_core::v1")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}

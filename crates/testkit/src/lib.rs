//! Test support for igrelay: real dependencies, never mocks.
//!
//! - [`Nats`]: a real nats-server per test (random port, temporary store, kill and restart on
//!   demand) with a connected client.
//! - [`webhook`]: Meta-shaped webhook payloads and correctly signed requests.
//! - [`http`]: a tiny HTTP/1 client for talking to services on loopback.
//! - [`events`]: reading what landed in the events stream.
//! - [`wire`]: every message published on a subject, duplicates included.

pub mod events;
pub mod http;
pub mod webhook;
pub mod wire;

pub use igrelay_bus::local_server::LocalNatsServer;

/// A nats-server started for one test, and a client connected to it.
#[derive(Debug)]
pub struct Nats {
    pub server: LocalNatsServer,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
}

impl Nats {
    /// Starts a server and connects. Fails with the set-up hint when nats-server is missing.
    pub async fn start() -> anyhow::Result<Self> {
        let server = LocalNatsServer::start()?;
        let cfg = igrelay_bus::ConnectConfig { url: server.url(), name: "testkit".into(), ..Default::default() };
        let client = igrelay_bus::connect(&cfg).await?;
        let js = igrelay_bus::connect::jetstream(client.clone(), std::time::Duration::from_secs(5));
        Ok(Self { server, client, js })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Creates every igrelay stream with test-friendly settings.
    pub async fn ensure_streams(&self) -> anyhow::Result<()> {
        igrelay_bus::ensure_streams(&self.js, &igrelay_bus::TopologyConfig::default(), &igrelay_bus::StreamDef::ALL)
            .await?;
        Ok(())
    }
}

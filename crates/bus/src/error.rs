use std::time::Duration;

/// Failures of the NATS layer, named by what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("NATS at {url} refused our credentials ({source}); check {method}")]
    Auth { url: String, method: &'static str, source: async_nats::ConnectError },
    #[error(
        "TLS with NATS at {url} failed ({source}); check nats.tls_ca_file (the CA that signed the server's certificate), nats.tls_cert_file/tls_key_file and nats.require_tls"
    )]
    Tls { url: String, source: async_nats::ConnectError },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot create or update stream {stream}: {source}")]
    Stream { stream: String, source: async_nats::jetstream::context::CreateStreamError },
    #[error("cannot create or update KV bucket {bucket}: {source}")]
    Kv { bucket: String, source: async_nats::jetstream::context::CreateKeyValueError },
    #[error("cannot create consumer {consumer} on stream {stream}: {reason}")]
    Consumer { stream: String, consumer: String, reason: String },
    #[error("publish to {subject} failed: {reason}")]
    Publish { subject: String, reason: String },
    #[error("JetStream did not acknowledge within {0:?}")]
    AckTimeout(Duration),
    #[error("invalid subject token {token:?}: {source}")]
    Token { token: String, source: igrelay_core::IdError },
}

//! Webhook ingest (design flow 1).
//!
//! `GET /webhooks/instagram` answers Meta's subscription challenge. `POST` verifies
//! `X-Hub-Signature-256` over the raw body, turns every item of every entry into a typed event,
//! publishes each to JetStream with a deduplication id, and answers 200 only after every publish
//! was acknowledged. NATS unavailable or slow → 503 with `Retry-After`, so Meta delivers again
//! and nothing is acknowledged that was not stored. A signed body that cannot be understood is
//! stored raw as an `unknown` event and answered 200; a replay older than the duplicate window is
//! answered 200 and dropped. `/healthz`, `/readyz` and `/metrics` are on a separate ops listener.

pub mod config;
mod json;
mod metrics;
pub mod parse;
mod server;

pub use config::IngestConfig;
pub use server::{run, run_with_listeners};

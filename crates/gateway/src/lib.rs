//! The gRPC gateway (design flow 7): igrelay's single door for internal systems that do not
//! speak NATS.
//!
//! - `igrelay.v1.AccountsService`: register, list, inspect and remove accounts (tokens encrypted
//!   at rest through `igrelay_accounts`, never returned, never logged); a background task
//!   refreshes long-lived Instagram tokens and marks accounts whose refresh Meta refuses.
//! - `igrelay.v1.MessagingService`: validates commands, publishes them for dispatch with the
//!   caller's identity and an audit record, answers with the command id at once or waits for the
//!   outcome; outcomes can be fetched later by command id.
//! - `igrelay.v1.ConversationsService`: the account's inbox through the Graph API, within Meta's
//!   Conversations API rate per account.
//! - `igrelay.v1.EventsService`: live, filtered, resumable event streams with per-caller flow
//!   control.
//! - `igrelay.v1.ProfilesService`: users' profiles on demand and forgetting a user, forwarded to
//!   the enrich service over NATS request/reply.
//! - `grpc.health.v1.Health` (serving only while NATS is connected) and server reflection.
//!
//! Callers authenticate with API keys carrying scopes and optionally a list of accounts. See
//! docs/gateway.md.

mod accounts;
pub mod auth;
pub mod config;
mod conversations;
mod events;
mod messaging;
mod metrics;
mod outcomes;
mod profiles;
mod quota;
mod refresh;
mod server;
mod status;

pub mod limiter;

pub use config::{ApiKeyConfig, GatewayConfig, TokenRefreshConfig};
pub use server::{run, run_with_listener};

/// The generated gRPC service and client code (messages live in `igrelay_core::v1`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/igrelay.v1.rs"));

    /// Encoded `FileDescriptorSet` of gateway.proto and everything it imports (for reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));
}

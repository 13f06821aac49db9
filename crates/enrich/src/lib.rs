//! Profile enrichment (design flow 2): who is writing, on every inbound user event.
//!
//! Consumes `message`, `postback`, `reaction` and `referral` events from IGRELAY_EVENTS (one
//! durable consumer; by default one replica at a time consumes, the others stand by) and
//! republishes each on `ig.v1.enr.<account>.<kind>` as an `EnrichedEvent` carrying the sender's
//! User Profile, or the reason it carries none.
//!
//! - Profiles are cached in KV bucket `igrelay_profiles` (shared by replicas) for
//!   `enrich.cache_ttl`; one Graph call per (account, user) is in flight per process.
//! - Users are looked up only after consent (a message, an ice breaker or menu tap seen); a
//!   refusal (230, blocked or unknown user) is remembered for `enrich.negative_ttl`.
//! - No event waits longer than `enrich.deadline` for a profile.
//! - Events of one (account, sender) are processed one after another, different senders
//!   concurrently: order per conversation holds on the enriched subjects (docs/enrich.md).
//! - `ig.v1.req.profile` / `ig.v1.req.forget_user` (NATS request/reply) and Meta's data deletion
//!   callback `POST /meta/data-deletion` on enrich's own listener.

pub mod cache;
pub mod config;
pub mod deletion;
pub mod lookup;
mod metrics;
mod service;

pub use config::{ConfigError, EnrichConfig};
pub use service::{CONSUMED_KINDS, run, run_with_listeners};

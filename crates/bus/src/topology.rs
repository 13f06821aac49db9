//! Streams and KV buckets: their definitions, and their creation at start-up.
//!
//! Creation is idempotent (`create_or_update`), so every service may ensure what it uses each
//! time it starts, and a changed limit in configuration is applied on the next start.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::connect::humantime_ms;
use crate::{BusError, subjects};

/// Durability and retention choices a deployment makes. Defaults suit one nats-server; on a
/// cluster set `replicas = 3` (see docs/operations.md for the durability trade-off).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    /// Copies of every stream and bucket (1 for a single server, 3 on a cluster).
    pub replicas: usize,
    /// `file` (durable) or `memory` (tests and throw-away set-ups only).
    pub storage: Storage,
    /// How long events are kept.
    #[serde(with = "humantime_ms")]
    pub events_max_age: Duration,
    /// Upper bound on the events stream's size; oldest events go first. 0 = unbounded.
    pub events_max_bytes: i64,
    /// How long a repeated `Nats-Msg-Id` is recognised as a duplicate. Meta usually redelivers
    /// within minutes; longer windows cost server memory (about 100 bytes per stored id).
    #[serde(with = "humantime_ms")]
    pub duplicate_window: Duration,
    /// How long outcomes are kept.
    #[serde(with = "humantime_ms")]
    pub outcomes_max_age: Duration,
    /// How long dead letters are kept.
    #[serde(with = "humantime_ms")]
    pub dead_letters_max_age: Duration,
    /// Partitions of the commands stream: each is served by one dispatch process at a time, so
    /// per-account order and rate limits hold without coordination per message. Fixed once the
    /// stream exists (changing it re-maps accounts to partitions; drain commands first).
    pub command_partitions: u32,
    /// How long a dispatch process keeps a partition after its last heartbeat: a killed process's
    /// partitions are taken over after at most this long.
    #[serde(with = "humantime_ms")]
    pub dispatch_lease_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    File,
    Memory,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            storage: Storage::File,
            events_max_age: Duration::from_secs(7 * 86_400),
            events_max_bytes: 10 * 1024 * 1024 * 1024,
            duplicate_window: Duration::from_secs(2 * 3600),
            outcomes_max_age: Duration::from_secs(7 * 86_400),
            dead_letters_max_age: Duration::from_secs(30 * 86_400),
            command_partitions: 16,
            dispatch_lease_ttl: Duration::from_secs(5),
        }
    }
}

/// One stream igrelay owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamDef {
    /// Every webhook event. Limits retention: many consumers read it independently.
    Events,
    /// Commands waiting to be carried out. Work queue: removed once acknowledged.
    Commands,
    /// One outcome per command.
    Outcomes,
    /// Messages a consumer gave up on, with the reason in headers.
    DeadLetters,
    /// Who asked igrelay to do what (kept as long as outcomes).
    Audit,
    /// Inbound user events with the sender's profile (enrich). Limits retention, like events.
    Enriched,
    /// Commands of accounts that cannot call Meta now, moved there by dispatch so they do not
    /// hold the commands partition's ack budget. Work queue: removed once carried out.
    Parked,
}

impl StreamDef {
    pub const ALL: [StreamDef; 7] =
        [Self::Events, Self::Commands, Self::Outcomes, Self::DeadLetters, Self::Audit, Self::Enriched, Self::Parked];

    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "IGRELAY_EVENTS",
            Self::Commands => "IGRELAY_COMMANDS",
            Self::Outcomes => "IGRELAY_OUTCOMES",
            Self::DeadLetters => "IGRELAY_DLQ",
            Self::Audit => "IGRELAY_AUDIT",
            Self::Enriched => "IGRELAY_ENRICHED",
            Self::Parked => "IGRELAY_PARKED",
        }
    }

    /// The wildcard covering the stream's subjects (for filters and look-ups). The commands
    /// stream itself stores a narrower list: [`subjects::command_stream_subjects`].
    pub fn subjects(self) -> &'static str {
        match self {
            Self::Events => subjects::EVENTS_ALL,
            Self::Commands => subjects::COMMANDS_ALL,
            Self::Outcomes => subjects::OUTCOMES_ALL,
            Self::DeadLetters => subjects::DLQ_ALL,
            Self::Audit => subjects::AUDIT_ALL,
            Self::Enriched => subjects::ENRICHED_ALL,
            Self::Parked => subjects::PARKED_ALL,
        }
    }

    /// The server-side configuration of this stream under `cfg`.
    pub fn config(self, cfg: &TopologyConfig) -> stream::Config {
        let (retention, max_age, max_bytes, description) = match self {
            Self::Events => {
                (stream::RetentionPolicy::Limits, cfg.events_max_age, cfg.events_max_bytes, "Instagram webhook events")
            }
            Self::Commands => (stream::RetentionPolicy::WorkQueue, Duration::ZERO, 0, "commands to carry out"),
            Self::Outcomes => (stream::RetentionPolicy::Limits, cfg.outcomes_max_age, 0, "one outcome per command"),
            Self::DeadLetters => {
                (stream::RetentionPolicy::Limits, cfg.dead_letters_max_age, 0, "messages consumers gave up on")
            }
            Self::Audit => (stream::RetentionPolicy::Limits, cfg.outcomes_max_age, 0, "who asked igrelay to do what"),
            Self::Enriched => (
                stream::RetentionPolicy::Limits,
                cfg.events_max_age,
                cfg.events_max_bytes,
                "inbound user events with the sender's profile",
            ),
            Self::Parked => (
                stream::RetentionPolicy::WorkQueue,
                Duration::ZERO,
                0,
                "commands of accounts that cannot call Meta now",
            ),
        };
        stream::Config {
            name: self.name().into(),
            description: Some(description.into()),
            // Commands: only the subjects dispatch consumes (one per command kind); everything
            // else under ig.v1.cmd. is refused by the server instead of being stored forever.
            subjects: match self {
                Self::Commands => subjects::command_stream_subjects(),
                _ => vec![self.subjects().into()],
            },
            retention,
            max_age,
            max_bytes: if max_bytes > 0 { max_bytes } else { -1 },
            storage: match cfg.storage {
                Storage::File => stream::StorageType::File,
                Storage::Memory => stream::StorageType::Memory,
            },
            num_replicas: cfg.replicas,
            // The server refuses a duplicate window longer than the stream keeps messages.
            duplicate_window: if max_age.is_zero() { cfg.duplicate_window } else { cfg.duplicate_window.min(max_age) },
            discard: stream::DiscardPolicy::Old,
            // Commands are stored as ig.v1.cmd.<kind>.<partition>.<account>: one account always
            // lands in the same partition (see subjects::command_partition_filter).
            subject_transform: (self == Self::Commands).then(|| stream::SubjectTransform {
                source: "ig.v1.cmd.*.*".into(),
                destination: format!(
                    "ig.v1.cmd.{{{{wildcard(1)}}}}.{{{{partition({},2)}}}}.{{{{wildcard(2)}}}}",
                    cfg.command_partitions.max(1)
                ),
            }),
            ..Default::default()
        }
    }
}

/// Creates or updates `streams`.
pub async fn ensure_streams(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
    streams: &[StreamDef],
) -> Result<(), BusError> {
    for def in streams {
        js.create_or_update_stream(def.config(cfg))
            .await
            .map_err(|source| BusError::Stream { stream: def.name().into(), source })?;
    }
    Ok(())
}

/// One KV bucket igrelay owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDef {
    /// Accounts and their (encrypted) tokens.
    Accounts,
    /// Cached user profiles.
    Profiles,
    /// Messaging windows learned from ingested events.
    Windows,
    /// Idempotency records of commands.
    Idempotency,
    /// Moderation rules.
    Rules,
    /// The outcome of each command by `<account>.<command id>` (written by the gateway from
    /// stream IGRELAY_OUTCOMES), for look-ups and waits by command id.
    Outcomes,
    /// Short leases that keep replicas from doing the same periodic work at once.
    Leases,
    /// Dispatch membership and partition ownership; entries age out after
    /// `topology.dispatch_lease_ttl` unless their owner renews them.
    DispatchLeases,
    /// Data deletion requests by confirmation code (their status page); no user ids.
    Deletions,
}

impl KvDef {
    pub const ALL: [KvDef; 9] = [
        Self::Accounts,
        Self::Profiles,
        Self::Windows,
        Self::Idempotency,
        Self::Rules,
        Self::Outcomes,
        Self::Leases,
        Self::DispatchLeases,
        Self::Deletions,
    ];

    pub fn bucket(self) -> &'static str {
        match self {
            Self::Accounts => "igrelay_accounts",
            Self::Profiles => "igrelay_profiles",
            Self::Windows => "igrelay_windows",
            Self::Idempotency => "igrelay_idempotency",
            Self::Rules => "igrelay_rules",
            Self::Deletions => "igrelay_deletions",
            Self::Outcomes => "igrelay_outcomes",
            Self::Leases => "igrelay_leases",
            Self::DispatchLeases => "igrelay_dispatch",
        }
    }

    pub fn config(self, cfg: &TopologyConfig) -> kv::Config {
        let (history, max_age) = match self {
            Self::Accounts => (5, Duration::ZERO),
            // Profile pictures expire in days: cache for less.
            Self::Profiles => (1, Duration::from_secs(86_400)),
            // The longest window is 7 days (HUMAN_AGENT, private replies).
            Self::Windows => (1, Duration::from_secs(8 * 86_400)),
            Self::Idempotency => (1, Duration::from_secs(8 * 86_400)),
            Self::Rules => (5, Duration::ZERO),
            // Long enough for a user to check the status page Meta links to.
            Self::Deletions => (1, Duration::from_secs(90 * 86_400)),
            Self::Outcomes => (1, cfg.outcomes_max_age),
            // A lease is held until its entry ages out.
            Self::Leases => (1, Duration::from_secs(120)),
            Self::DispatchLeases => (1, cfg.dispatch_lease_ttl),
        };
        kv::Config {
            bucket: self.bucket().into(),
            history,
            max_age,
            storage: match cfg.storage {
                Storage::File => stream::StorageType::File,
                Storage::Memory => stream::StorageType::Memory,
            },
            num_replicas: cfg.replicas,
            ..Default::default()
        }
    }
}

/// Key in [`KvDef::Idempotency`] under which dispatch records which command sent message `mid`,
/// so ingest can tell echoes of igrelay's own messages from messages typed in the Instagram app.
pub fn sent_message_key(mid: &str) -> String {
    use sha2::Digest;
    format!("mid.{}", hex::encode(&sha2::Sha256::digest(mid.as_bytes())[..16]))
}

/// Creates or updates a KV bucket and returns it.
pub async fn ensure_kv(js: &jetstream::Context, cfg: &TopologyConfig, def: KvDef) -> Result<kv::Store, BusError> {
    js.create_or_update_key_value(def.config(cfg))
        .await
        .map_err(|source| BusError::Kv { bucket: def.bucket().into(), source })
}

//! igrelay's shared contracts and domain types.
//!
//! - [`v1`]: the protobuf messages of `proto/igrelay/v1` (events, commands, outcomes).
//! - [`ids`]: validated identifiers that are safe to place in NATS subjects.
//! - [`time`]: conversions between Meta's timestamps and protobuf timestamps.

pub mod ids;
pub mod time;
pub mod webhook;

/// Generated from `proto/igrelay/v1/*.proto`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/igrelay.v1.rs"));

    /// Full protobuf name of a message type, sent in the `Igrelay-Type` header of every NATS message.
    pub trait TypeName {
        const TYPE_NAME: &'static str;
    }
    macro_rules! type_names {
        ($($t:ident),*) => {$(impl TypeName for $t { const TYPE_NAME: &'static str = concat!("igrelay.v1.", stringify!($t)); })*};
    }
    type_names!(
        Event,
        SendCommand,
        UploadAttachmentCommand,
        CommandOutcome,
        StoredAccount,
        Account,
        AuditRecord,
        EnrichedEvent,
        UserProfile,
        GetUserProfileRequest,
        GetUserProfileResponse,
        ForgetUserRequest,
        ForgetUserResponse
    );
}

pub use ids::{AccountId, IdError};

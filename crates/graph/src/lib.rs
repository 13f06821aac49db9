//! Graph API client for the Instagram Platform.
//!
//! - Both hosts: Instagram Login (`graph.instagram.com`, Instagram User tokens) and Facebook Login
//!   (`graph.facebook.com`, Page tokens); each call says which through its [`AccountAuth`].
//! - Every error becomes a [`GraphError`] whose [`GraphError::class`] says what to do next
//!   (wait, retry, re-authorise, give up); `X-App-Usage` and `X-Business-Use-Case-Usage` are
//!   parsed into [`Usage`] after every call, success or error.
//! - Tokens are an [`AccessToken`] that redacts itself; they travel in the `Authorization` header
//!   (marked sensitive), never in a URL that could end up in a log line.

mod client;
mod config;
mod error;
mod token;
mod usage;

pub mod accounts;
pub mod comments;
pub mod conversations;
pub mod insights;
pub mod messaging;
pub mod moderation;
pub mod paging;
pub mod profile;
pub mod publishing;

pub use client::{AccountAuth, GraphClient, Host, Response};
pub use config::GraphConfig;
pub use error::{ApiError, ErrorClass, GraphError, TransportKind};
pub use paging::{Page, Paging};
pub use token::AccessToken;
pub use usage::{AppUsage, BusinessUsage, Usage};

/// `{"success": true}`, the answer of most write calls.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Success {
    pub success: bool,
}

/// `{"id": "..."}`, the answer of create calls.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Created {
    pub id: String,
}

//! Moderate Conversations API (`POST /<PAGE_ID>/moderate_conversations`, Facebook Login host).

use crate::client::{AccountAuth, GraphClient, Response, seg};
use crate::error::GraphError;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationAction {
    BlockUser,
    UnblockUser,
    MoveToSpam,
}

/// Meta's limits for one call: at most 10 users, at most 2 actions, never block with unblock.
pub const MAX_USERS: usize = 10;
pub const MAX_ACTIONS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationResult {
    /// Meta answers `"success": "true"` (a string); booleans are accepted too.
    #[serde(deserialize_with = "bool_or_string")]
    pub success: bool,
}

fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    Ok(match B::deserialize(d)? {
        B::Bool(b) => b,
        B::Str(s) => s == "true",
    })
}

/// Checks Meta's batching rules before any call, so a bad batch never reaches Meta.
pub fn validate_moderation(user_ids: &[String], actions: &[ModerationAction]) -> Result<(), GraphError> {
    if user_ids.is_empty() || user_ids.len() > MAX_USERS {
        return Err(GraphError::InvalidArgument(format!("moderate_conversations takes 1 to {MAX_USERS} user ids")));
    }
    if actions.is_empty() || actions.len() > MAX_ACTIONS {
        return Err(GraphError::InvalidArgument(format!("moderate_conversations takes 1 to {MAX_ACTIONS} actions")));
    }
    if actions.contains(&ModerationAction::BlockUser) && actions.contains(&ModerationAction::UnblockUser) {
        return Err(GraphError::InvalidArgument("block_user and unblock_user cannot be in one request".into()));
    }
    Ok(())
}

impl GraphClient {
    /// `POST /<PAGE_ID>/moderate_conversations` with a Page token. Set `check` to false to send
    /// a batch that breaks Meta's rules anyway (to see Meta's own answer).
    pub async fn moderate_conversations(
        &self,
        auth: &AccountAuth,
        page_id: &str,
        user_ids: &[String],
        actions: &[ModerationAction],
        check: bool,
    ) -> Result<Response<ModerationResult>, GraphError> {
        if check {
            validate_moderation(user_ids, actions)?;
        }
        let body = serde_json::json!({
            "user_ids": user_ids.iter().map(|id| serde_json::json!({"id": id})).collect::<Vec<_>>(),
            "actions": actions,
        });
        self.post("moderate_conversations", auth, &format!("{}/moderate_conversations", seg(page_id)?), &[], body).await
    }
}

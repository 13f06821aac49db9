//! Conversations API: list conversations, their messages, and message details.

use crate::client::{AccountAuth, GraphClient, Response, seg};
use crate::error::GraphError;
use crate::paging::{Listing, Page};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ConversationSummary {
    pub id: String,
    #[serde(default)]
    pub updated_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct MessageRef {
    pub id: String,
    #[serde(default)]
    pub created_time: Option<String>,
    #[serde(default)]
    pub is_unsupported: Option<bool>,
}

/// `GET /<CONVERSATION_ID>?fields=messages`: the first page of message ids, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ConversationMessages {
    pub id: String,
    pub messages: Page<MessageRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Participant {
    pub id: String,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Participants {
    pub data: Vec<Participant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ReceivedAttachment {
    #[serde(default)]
    pub image_data: Option<serde_json::Value>,
    #[serde(default)]
    pub video_data: Option<serde_json::Value>,
    #[serde(default)]
    pub file_url: Option<String>,
}

/// `GET /<MESSAGE_ID>?fields=id,created_time,from,to,message`. Only the 20 most recent
/// messages of a conversation have details; older ones answer an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct MessageDetails {
    pub id: String,
    #[serde(default)]
    pub created_time: Option<String>,
    #[serde(default)]
    pub from: Option<Participant>,
    #[serde(default)]
    pub to: Option<Participants>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub attachments: Option<Page<ReceivedAttachment>>,
    #[serde(default)]
    pub is_unsupported: Option<bool>,
}

pub const MESSAGE_FIELDS: &str = "id,created_time,from,to,message,attachments";

impl GraphClient {
    fn conversations_listing(ig_id: &str, user_id: Option<&str>) -> Result<Listing, GraphError> {
        let mut query = vec![("platform", "instagram".to_owned()), ("fields", "id,updated_time".to_owned())];
        if let Some(u) = user_id {
            query.push(("user_id", u.to_owned()));
        }
        Ok(Listing { endpoint: "conversations", path: format!("{}/conversations", seg(ig_id)?), query })
    }

    /// `GET /<IG_ID>/conversations?platform=instagram`, one page.
    pub async fn conversations_page(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        user_id: Option<&str>,
        after: Option<&str>,
    ) -> Result<Response<Page<ConversationSummary>>, GraphError> {
        self.list_page(auth, &Self::conversations_listing(ig_id, user_id)?, after).await
    }

    /// Every conversation of the account (or the one with `user_id`), following the cursors.
    pub fn conversations(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        user_id: Option<&str>,
    ) -> BoxStream<'static, Result<ConversationSummary, GraphError>> {
        let listing = Self::conversations_listing(ig_id, user_id);
        self.list_or_err(auth, listing)
    }

    /// The conversation with one user, if there is one.
    pub async fn conversation_with(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        user_id: &str,
    ) -> Result<Response<Option<ConversationSummary>>, GraphError> {
        let page = self.conversations_page(auth, ig_id, Some(user_id), None).await?;
        Ok(page.map(|p| p.data.into_iter().next()))
    }

    /// `GET /<CONVERSATION_ID>?fields=messages`: the conversation with its first page of message ids.
    pub async fn conversation_messages(
        &self,
        auth: &AccountAuth,
        conversation_id: &str,
    ) -> Result<Response<ConversationMessages>, GraphError> {
        let q = [("fields", "messages{id,created_time,is_unsupported}".to_owned())];
        self.get("conversation", auth, seg(conversation_id)?, &q).await
    }

    fn conversation_messages_listing(conversation_id: &str, limit: Option<u32>) -> Result<Listing, GraphError> {
        let mut query = vec![("fields", "id,created_time,is_unsupported".to_owned())];
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        Ok(Listing { endpoint: "conversation_messages", path: format!("{}/messages", seg(conversation_id)?), query })
    }

    /// `GET /<CONVERSATION_ID>/messages?fields=…&after=<cursor>&limit=…`: one page of a
    /// conversation's message ids, newest first. `after` is the cursor of the previous page
    /// ([`Page::next_cursor`], also the one of [`GraphClient::conversation_messages`]'s first
    /// page); `limit` unset = Meta's default page size.
    pub async fn conversation_messages_page(
        &self,
        auth: &AccountAuth,
        conversation_id: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Response<Page<MessageRef>>, GraphError> {
        self.list_page(auth, &Self::conversation_messages_listing(conversation_id, limit)?, after).await
    }

    /// Every message id of a conversation, newest first, through the `/messages` edge.
    pub fn all_conversation_messages(
        &self,
        auth: &AccountAuth,
        conversation_id: &str,
    ) -> BoxStream<'static, Result<MessageRef, GraphError>> {
        let listing = Self::conversation_messages_listing(conversation_id, None);
        self.list_or_err(auth, listing)
    }

    /// `GET /<MESSAGE_ID>?fields=…`.
    pub async fn message_details(
        &self,
        auth: &AccountAuth,
        message_id: &str,
    ) -> Result<Response<MessageDetails>, GraphError> {
        self.get("message", auth, seg(message_id)?, &[("fields", MESSAGE_FIELDS.to_owned())]).await
    }
}

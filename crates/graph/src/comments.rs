//! Comment moderation: list, replies, reply, hide/unhide, delete, enable/disable comments.

use crate::client::{AccountAuth, GraphClient, Response, seg};
use crate::error::GraphError;
use crate::paging::Listing;
use crate::{Created, Success};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CommentAuthor {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Comment {
    pub id: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub from: Option<CommentAuthor>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub hidden: Option<bool>,
}

pub const COMMENT_FIELDS: &str = "id,text,from,timestamp,hidden";

impl GraphClient {
    fn listing_stream(
        &self,
        auth: &AccountAuth,
        endpoint: &'static str,
        node: &str,
        edge: &str,
    ) -> BoxStream<'static, Result<Comment, GraphError>> {
        let listing = seg(node).map(|n| Listing {
            endpoint,
            path: format!("{n}/{edge}"),
            query: vec![("fields", COMMENT_FIELDS.to_owned())],
        });
        self.list_or_err(auth, listing)
    }

    /// `GET /<MEDIA_ID>/comments`: top-level comments, every page.
    pub fn comments(&self, auth: &AccountAuth, media_id: &str) -> BoxStream<'static, Result<Comment, GraphError>> {
        self.listing_stream(auth, "comments", media_id, "comments")
    }

    /// `GET /<COMMENT_ID>/replies`, every page.
    pub fn replies(&self, auth: &AccountAuth, comment_id: &str) -> BoxStream<'static, Result<Comment, GraphError>> {
        self.listing_stream(auth, "replies", comment_id, "replies")
    }

    /// `POST /<COMMENT_ID>/replies` (top-level, visible comments only).
    pub async fn reply_to_comment(
        &self,
        auth: &AccountAuth,
        comment_id: &str,
        message: &str,
    ) -> Result<Response<Created>, GraphError> {
        let body = serde_json::json!({ "message": message });
        self.post("reply", auth, &format!("{}/replies", seg(comment_id)?), &[], body).await
    }

    /// `POST /<COMMENT_ID>?hide=true|false`.
    pub async fn set_comment_hidden(
        &self,
        auth: &AccountAuth,
        comment_id: &str,
        hidden: bool,
    ) -> Result<Response<Success>, GraphError> {
        self.post("comment_update", auth, seg(comment_id)?, &[("hide", hidden.to_string())], serde_json::json!({}))
            .await
    }

    /// `DELETE /<COMMENT_ID>`.
    pub async fn delete_comment(&self, auth: &AccountAuth, comment_id: &str) -> Result<Response<Success>, GraphError> {
        self.delete("comment_delete", auth, seg(comment_id)?, &[]).await
    }

    /// `POST /<MEDIA_ID>?comment_enabled=true|false`.
    pub async fn set_comments_enabled(
        &self,
        auth: &AccountAuth,
        media_id: &str,
        enabled: bool,
    ) -> Result<Response<Success>, GraphError> {
        self.post(
            "media_update",
            auth,
            seg(media_id)?,
            &[("comment_enabled", enabled.to_string())],
            serde_json::json!({}),
        )
        .await
    }
}

//! Content publishing: containers (image, reels, stories, carousel), status, publish, quota.

use crate::client::{AccountAuth, GraphClient, Response, seg};
use crate::error::GraphError;
use crate::{Created, Page};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MediaType {
    /// Omitted on the wire: a single image is the default.
    Image,
    Reels,
    Stories,
    Carousel,
    Video,
}

/// The parameters of `POST /<IG_ID>/media`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_carousel_item: Option<bool>,
    /// Carousel children: 2 to 10 container ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_to_feed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_type: Option<String>,
}

impl ContainerRequest {
    pub fn image(url: impl Into<String>, caption: Option<String>) -> Self {
        Self { image_url: Some(url.into()), caption, ..Self::default() }
    }
    pub fn reel(video_url: impl Into<String>, caption: Option<String>, share_to_feed: bool) -> Self {
        Self {
            media_type: Some(MediaType::Reels),
            video_url: Some(video_url.into()),
            caption,
            share_to_feed: Some(share_to_feed),
            ..Self::default()
        }
    }
    pub fn story_image(url: impl Into<String>) -> Self {
        Self { media_type: Some(MediaType::Stories), image_url: Some(url.into()), ..Self::default() }
    }
    pub fn carousel_item(image_url: impl Into<String>) -> Self {
        Self { image_url: Some(image_url.into()), is_carousel_item: Some(true), ..Self::default() }
    }
    pub fn carousel(children: Vec<String>, caption: Option<String>) -> Self {
        Self { media_type: Some(MediaType::Carousel), children, caption, ..Self::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerStatusCode {
    Expired,
    Error,
    Finished,
    InProgress,
    Published,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub id: String,
    pub status_code: ContainerStatusCode,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaConfig {
    pub quota_total: u32,
    pub quota_duration: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishingLimit {
    pub quota_usage: u32,
    #[serde(default)]
    pub config: Option<QuotaConfig>,
}

impl GraphClient {
    /// `POST /<IG_ID>/media`: creates a container.
    pub async fn create_container(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        request: &ContainerRequest,
    ) -> Result<Response<Created>, GraphError> {
        let mut body = serde_json::to_value(request).map_err(|e| GraphError::InvalidArgument(e.to_string()))?;
        // Meta takes `children` as a comma-separated list.
        if let Some(obj) = body.as_object_mut()
            && !request.children.is_empty()
        {
            obj.insert("children".into(), serde_json::Value::String(request.children.join(",")));
        }
        self.post("media", auth, &format!("{}/media", seg(ig_id)?), &[], body).await
    }

    /// `GET /<CONTAINER_ID>?fields=status_code,status`.
    pub async fn container_status(
        &self,
        auth: &AccountAuth,
        container_id: &str,
    ) -> Result<Response<ContainerStatus>, GraphError> {
        self.get("container", auth, seg(container_id)?, &[("fields", "id,status_code,status".to_owned())]).await
    }

    /// `POST /<IG_ID>/media_publish?creation_id=…`: publishes a FINISHED container.
    pub async fn publish_container(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        creation_id: &str,
    ) -> Result<Response<Created>, GraphError> {
        let body = serde_json::json!({ "creation_id": creation_id });
        self.post("media_publish", auth, &format!("{}/media_publish", seg(ig_id)?), &[], body).await
    }

    /// `GET /<IG_ID>/content_publishing_limit?fields=quota_usage,config`.
    pub async fn content_publishing_limit(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
    ) -> Result<Response<PublishingLimit>, GraphError> {
        let q = [("fields", "quota_usage,config".to_owned())];
        let page: Response<Page<PublishingLimit>> = self
            .get("content_publishing_limit", auth, &format!("{}/content_publishing_limit", seg(ig_id)?), &q)
            .await?;
        let usage = page.usage;
        let value = page
            .value
            .data
            .into_iter()
            .next()
            .ok_or(GraphError::Decode { endpoint: "content_publishing_limit", message: "empty data".into() })?;
        Ok(Response { value, usage })
    }
}

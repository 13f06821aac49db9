//! Send API (`POST /<IG_ID>/messages`) and Attachment Upload (`POST /<IG_ID>/message_attachments`).

use crate::client::{AccountAuth, GraphClient, Response, seg};
use crate::error::GraphError;
use serde::{Deserialize, Serialize};

/// Who receives: a user (IGSID) or, for a private reply, the author of a comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Recipient {
    User { id: String },
    Comment { comment_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderAction {
    TypingOn,
    TypingOff,
    MarkSeen,
    React,
    Unreact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageTag {
    /// A human agent answers within 7 days of the user's last message.
    #[serde(rename = "HUMAN_AGENT")]
    HumanAgent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionPayload {
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<String>,
}

/// Where an attachment's bytes come from: a public URL or an uploaded asset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_reusable: Option<bool>,
}

impl MediaSource {
    pub fn url(url: impl Into<String>) -> Self {
        Self { url: Some(url.into()), ..Self::default() }
    }
    pub fn attachment_id(id: impl Into<String>) -> Self {
        Self { attachment_id: Some(id.into()), ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaShare {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Button {
    WebUrl { title: String, url: String },
    Postback { title: String, payload: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenericElement {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template_type", rename_all = "snake_case")]
pub enum Template {
    Generic { elements: Vec<GenericElement> },
    Button { text: String, buttons: Vec<Button> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Attachment {
    #[serde(rename = "image")]
    Image { payload: MediaSource },
    #[serde(rename = "audio")]
    Audio { payload: MediaSource },
    #[serde(rename = "video")]
    Video { payload: MediaSource },
    #[serde(rename = "file")]
    File { payload: MediaSource },
    /// The heart sticker.
    #[serde(rename = "like_heart")]
    LikeHeart,
    /// A post published by the account.
    #[serde(rename = "MEDIA_SHARE")]
    MediaShare { payload: MediaShare },
    #[serde(rename = "template")]
    Template { payload: Template },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    pub content_type: String,
    pub title: String,
    pub payload: String,
}

impl QuickReply {
    pub fn text(title: impl Into<String>, payload: impl Into<String>) -> Self {
        Self { content_type: "text".into(), title: title.into(), payload: payload.into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// Several images in one message (up to 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<QuickReply>,
}

/// The body of `POST /<IG_ID>/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    pub recipient: Recipient,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<OutgoingMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_action: Option<SenderAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<ReactionPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<MessageTag>,
}

impl SendRequest {
    fn to_user(igsid: impl Into<String>) -> Self {
        Self {
            recipient: Recipient::User { id: igsid.into() },
            messaging_type: None,
            message: None,
            sender_action: None,
            payload: None,
            tag: None,
        }
    }

    pub fn text(igsid: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            message: Some(OutgoingMessage { text: Some(text.into()), ..Default::default() }),
            ..Self::to_user(igsid)
        }
    }

    pub fn attachment(igsid: impl Into<String>, attachment: Attachment) -> Self {
        Self {
            message: Some(OutgoingMessage { attachment: Some(attachment), ..Default::default() }),
            ..Self::to_user(igsid)
        }
    }

    /// Up to 10 images in one message.
    pub fn images(igsid: impl Into<String>, urls: &[&str]) -> Self {
        let attachments = urls.iter().map(|u| Attachment::Image { payload: MediaSource::url(*u) }).collect();
        Self { message: Some(OutgoingMessage { attachments, ..Default::default() }), ..Self::to_user(igsid) }
    }

    /// A private reply to the author of a comment (one per comment, within 7 days).
    pub fn private_reply(comment_id: impl Into<String>, text: impl Into<String>) -> Self {
        Self { recipient: Recipient::Comment { comment_id: comment_id.into() }, ..Self::text(String::new(), text) }
    }

    pub fn action(igsid: impl Into<String>, action: SenderAction) -> Self {
        Self { sender_action: Some(action), ..Self::to_user(igsid) }
    }

    pub fn react(igsid: impl Into<String>, message_id: impl Into<String>, reaction: impl Into<String>) -> Self {
        Self {
            payload: Some(ReactionPayload { message_id: message_id.into(), reaction: Some(reaction.into()) }),
            ..Self::action(igsid, SenderAction::React)
        }
    }

    pub fn unreact(igsid: impl Into<String>, message_id: impl Into<String>) -> Self {
        Self {
            payload: Some(ReactionPayload { message_id: message_id.into(), reaction: None }),
            ..Self::action(igsid, SenderAction::Unreact)
        }
    }

    pub fn with_quick_replies(mut self, replies: Vec<QuickReply>) -> Self {
        if let Some(m) = self.message.as_mut() {
            m.quick_replies = replies;
        }
        self.messaging_type = Some("RESPONSE".into());
        self
    }

    /// Tags the message `HUMAN_AGENT` (the 7-day window; human agents only).
    pub fn human_agent(mut self) -> Self {
        self.tag = Some(MessageTag::HumanAgent);
        self
    }

    /// True for audio and video, which Meta limits separately (10/s instead of 300/s).
    pub fn is_audio_or_video(&self) -> bool {
        matches!(
            self.message.as_ref().and_then(|m| m.attachment.as_ref()),
            Some(Attachment::Audio { .. } | Attachment::Video { .. })
        )
    }
}

/// `{"recipient_id","message_id"}`; sender actions answer without `message_id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SendResponse {
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    Image,
    Audio,
    Video,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AttachmentUploaded {
    pub attachment_id: String,
}

impl GraphClient {
    /// `POST /<IG_ID>/messages`.
    pub async fn send_message(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        request: &SendRequest,
    ) -> Result<Response<SendResponse>, GraphError> {
        let body = serde_json::to_value(request).map_err(|e| GraphError::InvalidArgument(e.to_string()))?;
        self.post("messages", auth, &format!("{}/messages", seg(ig_id)?), &[], body).await
    }

    /// `POST /<IG_ID>/message_attachments`: saves an asset from a URL for later sends.
    pub async fn upload_attachment(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        kind: AttachmentKind,
        url: &str,
        is_reusable: bool,
    ) -> Result<Response<AttachmentUploaded>, GraphError> {
        let body = serde_json::json!({
            "platform": "instagram",
            "message": {"attachment": {"type": kind, "payload": {"url": url, "is_reusable": is_reusable}}}
        });
        self.post("message_attachments", auth, &format!("{}/message_attachments", seg(ig_id)?), &[], body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_the_seed_examples() {
        let v = serde_json::to_value(SendRequest::react("1", "m", "love")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"recipient":{"id":"1"},"sender_action":"react","payload":{"message_id":"m","reaction":"love"}})
        );
        let v = serde_json::to_value(SendRequest::private_reply("c1", "It is cool")).unwrap();
        assert_eq!(v, serde_json::json!({"recipient":{"comment_id":"c1"},"message":{"text":"It is cool"}}));
        let v = serde_json::to_value(SendRequest::attachment("1", Attachment::LikeHeart)).unwrap();
        assert_eq!(v, serde_json::json!({"recipient":{"id":"1"},"message":{"attachment":{"type":"like_heart"}}}));
        let v = serde_json::to_value(SendRequest::attachment(
            "1",
            Attachment::MediaShare { payload: MediaShare { id: "p".into() } },
        ))
        .unwrap();
        assert_eq!(v["message"]["attachment"], serde_json::json!({"type":"MEDIA_SHARE","payload":{"id":"p"}}));
        let t = Template::Button {
            text: "t".into(),
            buttons: vec![Button::Postback { title: "a".into(), payload: "b".into() }],
        };
        let v = serde_json::to_value(Attachment::Template { payload: t }).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"template","payload":{"template_type":"button","text":"t","buttons":[{"type":"postback","title":"a","payload":"b"}]}})
        );
        let v = serde_json::to_value(SendRequest::text("1", "x").human_agent()).unwrap();
        assert_eq!(v["tag"], "HUMAN_AGENT");
    }
}

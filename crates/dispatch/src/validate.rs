//! Checks a command against Meta's limits (platform facts §3) before any call, and builds the
//! Graph API request. Every refusal names the field and says what to change.

use igrelay_core::v1::{
    self, ButtonType, MediaKind, MessageTag, RejectReason, SendCommand, recipient::Target, send_command::Content,
};
use igrelay_graph::messaging::{
    Attachment, Button, GenericElement, MediaShare, MediaSource, QuickReply, SendRequest, SenderAction, Template,
};

use crate::limiter::Class;

pub const MAX_TEXT_BYTES: usize = 1000;
pub const MAX_QUICK_REPLIES: usize = 13;
pub const MAX_GENERIC_ELEMENTS: usize = 10;
pub const MAX_BUTTONS: usize = 3;
pub const MAX_TEMPLATE_TITLE: usize = 80;
pub const MAX_BUTTON_TEXT: usize = 640;

/// A validated command: what to call and which limit it counts against.
#[derive(Debug, Clone)]
pub struct Plan {
    pub request: SendRequest,
    pub class: Class,
    /// Who receives, for the window check: a user or a comment.
    pub target: PlanTarget,
    pub human_agent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanTarget {
    User(String),
    Comment(String),
}

pub fn reject(reason: RejectReason, field: &str, detail: impl Into<String>) -> v1::Rejected {
    v1::Rejected { reason: reason as i32, field: field.into(), detail: detail.into() }
}

fn invalid(field: &str, detail: impl Into<String>) -> v1::Rejected {
    reject(RejectReason::Invalid, field, detail)
}

fn too_big(field: &str, detail: impl Into<String>) -> v1::Rejected {
    reject(RejectReason::LimitExceeded, field, detail)
}

fn check_url(field: &str, url: &str) -> Result<(), v1::Rejected> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(invalid(field, format!("must be an http(s) URL, got {url:?}")))
    }
}

fn buttons(field: &str, list: &[v1::TemplateButton]) -> Result<Vec<Button>, v1::Rejected> {
    if list.len() > MAX_BUTTONS {
        return Err(too_big(field, format!("at most {MAX_BUTTONS} buttons, got {}", list.len())));
    }
    list.iter()
        .enumerate()
        .map(|(i, b)| {
            let f = format!("{field}[{i}]");
            if b.title.is_empty() {
                return Err(invalid(&format!("{f}.title"), "a button needs a title"));
            }
            match ButtonType::try_from(b.r#type) {
                Ok(ButtonType::Postback) => Ok(Button::Postback { title: b.title.clone(), payload: b.payload.clone() }),
                Ok(ButtonType::WebUrl) => {
                    check_url(&format!("{f}.url"), &b.url)?;
                    Ok(Button::WebUrl { title: b.title.clone(), url: b.url.clone() })
                }
                _ => Err(invalid(&format!("{f}.type"), "must be BUTTON_TYPE_POSTBACK or BUTTON_TYPE_WEB_URL")),
            }
        })
        .collect()
}

fn media_attachment(field: &str, kind: i32, source: MediaSource) -> Result<(Attachment, Class), v1::Rejected> {
    match MediaKind::try_from(kind) {
        Ok(MediaKind::Image) => Ok((Attachment::Image { payload: source }, Class::Send)),
        Ok(MediaKind::File) => Ok((Attachment::File { payload: source }, Class::Send)),
        Ok(MediaKind::Audio) => Ok((Attachment::Audio { payload: source }, Class::Media)),
        Ok(MediaKind::Video) => Ok((Attachment::Video { payload: source }, Class::Media)),
        _ => Err(invalid(field, "must be MEDIA_KIND_IMAGE, _AUDIO, _VIDEO or _FILE")),
    }
}

/// Validates `cmd` and plans its Graph API call.
pub fn plan(cmd: &SendCommand) -> Result<Plan, v1::Rejected> {
    if cmd.command_id.is_empty() {
        return Err(invalid("command_id", "every command needs an id"));
    }
    let target = match cmd.recipient.as_ref().and_then(|r| r.target.as_ref()) {
        Some(Target::Igsid(id)) if !id.is_empty() => PlanTarget::User(id.clone()),
        Some(Target::CommentId(id)) if !id.is_empty() => PlanTarget::Comment(id.clone()),
        _ => {
            return Err(invalid("recipient", "set recipient.igsid (a user) or recipient.comment_id (a private reply)"));
        }
    };
    let human_agent = cmd.tag == MessageTag::HumanAgent as i32;
    let user = match &target {
        PlanTarget::User(u) => Some(u.clone()),
        PlanTarget::Comment(_) => None,
    };
    let only_user = |what: &str| -> Result<String, v1::Rejected> {
        user.clone().ok_or_else(|| {
            invalid("recipient", format!("{what} can only be sent to a user (recipient.igsid), not as a private reply"))
        })
    };
    let content = cmd.content.as_ref().ok_or_else(|| invalid("content", "the command has no content"))?;
    let (mut request, mut class) = match content {
        Content::Text(t) => {
            if t.text.is_empty() {
                return Err(invalid("text.text", "text is empty"));
            }
            if t.text.len() > MAX_TEXT_BYTES {
                return Err(too_big(
                    "text.text",
                    format!("at most {MAX_TEXT_BYTES} bytes of UTF-8, got {}", t.text.len()),
                ));
            }
            if t.quick_replies.len() > MAX_QUICK_REPLIES {
                return Err(too_big(
                    "text.quick_replies",
                    format!("at most {MAX_QUICK_REPLIES} quick replies, got {}", t.quick_replies.len()),
                ));
            }
            if let Some(i) = t.quick_replies.iter().position(|q| q.title.is_empty() || q.payload.is_empty()) {
                return Err(invalid(&format!("text.quick_replies[{i}]"), "a quick reply needs a title and a payload"));
            }
            let req = match &target {
                PlanTarget::User(u) => SendRequest::text(u.clone(), t.text.clone()),
                PlanTarget::Comment(c) => SendRequest::private_reply(c.clone(), t.text.clone()),
            };
            let req = if t.quick_replies.is_empty() {
                req
            } else {
                // Meta cuts titles at 20 characters itself; they are passed on unchanged.
                req.with_quick_replies(
                    t.quick_replies.iter().map(|q| QuickReply::text(q.title.clone(), q.payload.clone())).collect(),
                )
            };
            (req, Class::Send)
        }
        Content::Media(m) => {
            check_url("media.url", &m.url)?;
            let (a, class) = media_attachment("media.kind", m.kind, MediaSource::url(m.url.clone()))?;
            (SendRequest::attachment(only_user("media")?, a), class)
        }
        Content::Attachment(a) => {
            if a.attachment_id.is_empty() {
                return Err(invalid("attachment.attachment_id", "attachment_id is empty"));
            }
            let (att, class) =
                media_attachment("attachment.kind", a.kind, MediaSource::attachment_id(a.attachment_id.clone()))?;
            (SendRequest::attachment(only_user("an uploaded attachment")?, att), class)
        }
        Content::Sticker(_) => (SendRequest::attachment(only_user("a sticker")?, Attachment::LikeHeart), Class::Send),
        Content::PostShare(p) => {
            if p.media_id.is_empty() {
                return Err(invalid("post_share.media_id", "media_id is empty"));
            }
            (
                SendRequest::attachment(
                    only_user("a post share")?,
                    Attachment::MediaShare { payload: MediaShare { id: p.media_id.clone() } },
                ),
                Class::Send,
            )
        }
        Content::GenericTemplate(g) => {
            if g.elements.is_empty() || g.elements.len() > MAX_GENERIC_ELEMENTS {
                return Err(too_big(
                    "generic_template.elements",
                    format!("1 to {MAX_GENERIC_ELEMENTS} elements, got {}", g.elements.len()),
                ));
            }
            let mut elements = Vec::new();
            for (i, e) in g.elements.iter().enumerate() {
                let f = format!("generic_template.elements[{i}]");
                if e.title.is_empty() || e.title.chars().count() > MAX_TEMPLATE_TITLE {
                    return Err(too_big(&format!("{f}.title"), format!("1 to {MAX_TEMPLATE_TITLE} characters")));
                }
                if e.subtitle.chars().count() > MAX_TEMPLATE_TITLE {
                    return Err(too_big(&format!("{f}.subtitle"), format!("at most {MAX_TEMPLATE_TITLE} characters")));
                }
                if !e.image_url.is_empty() {
                    check_url(&format!("{f}.image_url"), &e.image_url)?;
                }
                elements.push(GenericElement {
                    title: e.title.clone(),
                    subtitle: (!e.subtitle.is_empty()).then(|| e.subtitle.clone()),
                    image_url: (!e.image_url.is_empty()).then(|| e.image_url.clone()),
                    default_action: (!e.default_action_url.is_empty())
                        .then(|| serde_json::json!({"type": "web_url", "url": e.default_action_url})),
                    buttons: buttons(&format!("{f}.buttons"), &e.buttons)?,
                });
            }
            let t = Attachment::Template { payload: Template::Generic { elements } };
            (SendRequest::attachment(only_user("a template")?, t), Class::Send)
        }
        Content::ButtonTemplate(b) => {
            if b.text.is_empty() || b.text.chars().count() > MAX_BUTTON_TEXT {
                return Err(too_big("button_template.text", format!("1 to {MAX_BUTTON_TEXT} characters")));
            }
            if b.buttons.is_empty() {
                return Err(invalid("button_template.buttons", "1 to 3 buttons"));
            }
            let t = Attachment::Template {
                payload: Template::Button {
                    text: b.text.clone(),
                    buttons: buttons("button_template.buttons", &b.buttons)?,
                },
            };
            (SendRequest::attachment(only_user("a template")?, t), Class::Send)
        }
        Content::React(r) => {
            if r.message_id.is_empty() {
                return Err(invalid("react.message_id", "message_id is empty"));
            }
            let u = only_user("a reaction")?;
            let req = if r.unreact {
                SendRequest::unreact(u, r.message_id.clone())
            } else {
                let reaction = if r.reaction.is_empty() { "love".to_owned() } else { r.reaction.clone() };
                SendRequest::react(u, r.message_id.clone(), reaction)
            };
            (req, Class::Send)
        }
        Content::SenderAction(a) => {
            let action = match v1::SenderAction::try_from(a.action) {
                Ok(v1::SenderAction::TypingOn) => SenderAction::TypingOn,
                Ok(v1::SenderAction::TypingOff) => SenderAction::TypingOff,
                Ok(v1::SenderAction::MarkSeen) => SenderAction::MarkSeen,
                _ => return Err(invalid("sender_action.action", "must be TYPING_ON, TYPING_OFF or MARK_SEEN")),
            };
            (SendRequest::action(only_user("a sender action")?, action), Class::Send)
        }
    };
    if let PlanTarget::Comment(_) = &target {
        class = Class::PrivateReply;
        if human_agent {
            return Err(invalid("tag", "HUMAN_AGENT does not apply to private replies"));
        }
    }
    if human_agent {
        request = request.human_agent();
    }
    Ok(Plan { request, class, target, human_agent })
}

//! `igrelay.v1.MessagingService`.

use igrelay_bus::OutgoingMessage;
use igrelay_bus::subjects::{self, AuditAction};
use igrelay_core::AccountId;
use igrelay_core::v1::recipient::Target;
use igrelay_core::v1::send_command::Content;
use igrelay_core::v1::{
    AuditRecord, ButtonType, Caller, CommandOutcome, GetOutcomeRequest, GetOutcomeResponse, MediaKind, SendCommand,
    SendMessageRequest, SendMessageResponse, SenderAction, TemplateButton, UploadAttachmentCommand,
    UploadAttachmentRequest, UploadAttachmentResponse, WaitOptions,
};
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use crate::auth::{Principal, Scope};
use crate::metrics::KindLabel;
use crate::outcomes;
use crate::proto::messaging_service_server::MessagingService;
use crate::server::Gateway;
use crate::status::{self, Violations};

const SEND: &str = "/igrelay.v1.MessagingService/SendMessage";
const UPLOAD: &str = "/igrelay.v1.MessagingService/UploadAttachment";

/// Checks the parts of a SendCommand every command needs; Meta's size and count limits are
/// dispatch's to check (it answers with a Rejected outcome).
pub(crate) fn validate_send(c: &SendCommand, v: &mut Violations) {
    v.id("command.account_id", &c.account_id);
    if !c.command_id.is_empty() {
        v.id("command.command_id", &c.command_id);
    }
    v.timestamp("command.deadline", c.deadline.as_ref());
    match c.recipient.as_ref().and_then(|r| r.target.as_ref()) {
        None => v.add("command.recipient", "is required: igsid or comment_id"),
        Some(Target::Igsid(id)) => v.graph_id("command.recipient.igsid", id),
        Some(Target::CommentId(id)) => v.graph_id("command.recipient.comment_id", id),
    }
    let media_kind = |v: &mut Violations, field: &str, kind: i32| {
        if MediaKind::try_from(kind).unwrap_or(MediaKind::Unspecified) == MediaKind::Unspecified {
            v.add(field, "is required: IMAGE, AUDIO, VIDEO or FILE");
        }
    };
    let buttons = |v: &mut Violations, field: &str, buttons: &[TemplateButton]| {
        for (i, b) in buttons.iter().enumerate() {
            v.required(&format!("{field}[{i}].title"), &b.title);
            match ButtonType::try_from(b.r#type).unwrap_or(ButtonType::Unspecified) {
                ButtonType::Postback => v.required(&format!("{field}[{i}].payload"), &b.payload),
                ButtonType::WebUrl => url(v, &format!("{field}[{i}].url"), &b.url),
                ButtonType::Unspecified => v.add(format!("{field}[{i}].type"), "is required: POSTBACK or WEB_URL"),
            }
        }
    };
    match &c.content {
        None => v.add(
            "command.content",
            "is required: text, media, attachment, sticker, post_share, generic_template, button_template, react or sender_action",
        ),
        Some(Content::Text(t)) => {
            v.required("command.text.text", &t.text);
            for (i, q) in t.quick_replies.iter().enumerate() {
                v.required(&format!("command.text.quick_replies[{i}].title"), &q.title);
                v.required(
                    &format!("command.text.quick_replies[{i}].payload"),
                    &q.payload,
                );
            }
        }
        Some(Content::Media(m)) => {
            media_kind(v, "command.media.kind", m.kind);
            url(v, "command.media.url", &m.url);
        }
        Some(Content::Attachment(a)) => {
            media_kind(v, "command.attachment.kind", a.kind);
            v.graph_id("command.attachment.attachment_id", &a.attachment_id);
        }
        Some(Content::Sticker(_)) => {}
        Some(Content::PostShare(p)) => v.graph_id("command.post_share.media_id", &p.media_id),
        Some(Content::GenericTemplate(g)) => {
            if g.elements.is_empty() {
                v.add("command.generic_template.elements", "at least one element");
            }
            for (i, e) in g.elements.iter().enumerate() {
                v.required(&format!("command.generic_template.elements[{i}].title"), &e.title);
                buttons(
                    v,
                    &format!("command.generic_template.elements[{i}].buttons"),
                    &e.buttons,
                );
            }
        }
        Some(Content::ButtonTemplate(b)) => {
            v.required("command.button_template.text", &b.text);
            if b.buttons.is_empty() {
                v.add("command.button_template.buttons", "at least one button");
            }
            buttons(v, "command.button_template.buttons", &b.buttons);
        }
        Some(Content::React(r)) => {
            v.graph_id("command.react.message_id", &r.message_id);
            if !r.unreact && r.reaction.is_empty() {
                v.add("command.react.reaction", "is required unless unreact");
            }
        }
        Some(Content::SenderAction(a)) => {
            if SenderAction::try_from(a.action).unwrap_or(SenderAction::Unspecified)
                == SenderAction::Unspecified
            {
                v.add(
                    "command.sender_action.action",
                    "is required: TYPING_ON, TYPING_OFF or MARK_SEEN",
                );
            }
        }
    }
}

fn url(v: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        v.add(field, "is required");
    } else if !(value.starts_with("https://") || value.starts_with("http://")) {
        v.add(field, "must be an http(s) URL");
    }
}

fn describe(c: &SendCommand) -> String {
    let content = match &c.content {
        Some(Content::Text(_)) => "text",
        Some(Content::Media(_)) => "media",
        Some(Content::Attachment(_)) => "attachment",
        Some(Content::Sticker(_)) => "sticker",
        Some(Content::PostShare(_)) => "post_share",
        Some(Content::GenericTemplate(_)) => "generic_template",
        Some(Content::ButtonTemplate(_)) => "button_template",
        Some(Content::React(_)) => "react",
        Some(Content::SenderAction(_)) => "sender_action",
        None => "nothing",
    };
    let to = match c.recipient.as_ref().and_then(|r| r.target.as_ref()) {
        Some(Target::Igsid(id)) => format!("igsid {id}"),
        Some(Target::CommentId(id)) => format!("comment {id}"),
        None => "nobody".into(),
    };
    format!("{content} to {to}")
}

/// A command id as a deduplication key: `<account>:<command id>`. Command ids are chosen by
/// callers, so two tenants may use the same one; scoped by account, one tenant's id never makes
/// another's command a duplicate (nor reveals that the id was used elsewhere).
pub(crate) fn scoped_id(account: &AccountId, command_id: &str) -> String {
    format!("{account}:{command_id}")
}

/// What accepting a command produced.
struct Accepted {
    command_id: String,
    accepted_time: Timestamp,
    duplicate: bool,
    outcome: Option<CommandOutcome>,
}

/// A command the gateway accepts: it names its account, and gets an id (when the caller gave
/// none), its acceptance time and its caller. Its type decides the method it is audited under,
/// the audit action and the subject it is published to.
trait Command: prost::Message + igrelay_core::v1::TypeName {
    const METHOD: &'static str;
    const ACTION: AuditAction;
    fn subject(account: &AccountId) -> String;
    fn account_id(&self) -> &str;
    fn command_id(&mut self) -> &mut String;
    fn stamp(&mut self, accepted_time: Timestamp, caller: Caller);
}

/// Both command types carry the same envelope fields.
macro_rules! impl_command {
    ($($t:ty => $method:expr, $action:expr, $subject:path;)*) => {$(
        impl Command for $t {
            const METHOD: &'static str = $method;
            const ACTION: AuditAction = $action;
            fn subject(account: &AccountId) -> String {
                $subject(account)
            }
            fn account_id(&self) -> &str {
                &self.account_id
            }
            fn command_id(&mut self) -> &mut String {
                &mut self.command_id
            }
            fn stamp(&mut self, accepted_time: Timestamp, caller: Caller) {
                self.accepted_time = Some(accepted_time);
                self.caller = Some(caller);
            }
        }
    )*};
}

impl_command!(
    SendCommand => SEND, AuditAction::Send, subjects::send_command;
    UploadAttachmentCommand => UPLOAD, AuditAction::Upload, subjects::upload_command;
);

impl Gateway {
    /// Checks the caller may use the account and that it is registered, stamps the command,
    /// audits, publishes, and waits for the outcome when asked. `command` is validated already.
    async fn accept<C: Command>(
        &self,
        p: &Principal,
        mut command: C,
        detail: String,
        wait: Option<&WaitOptions>,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Accepted, Status> {
        p.require_account(command.account_id())?;
        let account =
            AccountId::parse(command.account_id()).map_err(|e| status::invalid("command.account_id", e.to_string()))?;
        if command.command_id().is_empty() {
            *command.command_id() = status::random_id()?;
        }
        let command_id = command.command_id().clone();
        let accepted_time = igrelay_core::time::now();
        command.stamp(accepted_time, p.caller());
        let action = C::ACTION;
        // A caller at its bound of waits is refused before the command is accepted.
        let wait = wait.filter(|w| w.wait);
        let wait_slot = wait.map(|_| self.waits.take(&p.key_id)).transpose()?;
        self.ensure_connected()?;
        if self.store.get(account.as_str()).await.map_err(status::accounts)?.is_none() {
            return Err(Status::not_found(format!("account {account} is not registered")));
        }
        // The audit record first: a command is never accepted without one.
        self.audit(
            &account,
            action,
            AuditRecord {
                audit_id: format!("{}:{}", action.token(), scoped_id(&account, &command_id)),
                account_id: account.to_string(),
                action: action.token().into(),
                caller: Some(p.caller()),
                time: Some(accepted_time),
                command_id: command_id.clone(),
                method: C::METHOD.into(),
                detail,
            },
        )
        .await?;
        let subject = C::subject(&account);
        let ack = self
            .publisher
            .publish(
                OutgoingMessage::proto(subject, scoped_id(&account, &command_id), &command),
                &igrelay_bus::trace::current(),
                self.cfg.publish_deadline,
            )
            .await
            .map_err(status::nats_unavailable)?;
        self.metrics.commands.get_or_create(&KindLabel { kind: action.token() }).inc();
        if ack.duplicate {
            self.metrics.duplicates.inc();
        }
        tracing::info!(account = %account, command_id = command_id.as_str(), caller = %p.key_id, duplicate = ack.duplicate, kind = action.token(), "command accepted");
        let outcome = match wait {
            Some(w) => {
                let budget = outcomes::wait_budget(w.timeout.as_ref(), metadata, self.cfg.max_wait);
                Some(outcomes::wait(self, account.as_str(), &command_id, budget).await?)
            }
            None => None,
        };
        drop(wait_slot);
        Ok(Accepted { command_id, accepted_time, duplicate: ack.duplicate, outcome })
    }
}

#[tonic::async_trait]
impl MessagingService for Gateway {
    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let p = self.principal(&request, Scope::MessagesSend)?;
        let metadata = request.metadata().clone();
        let r = request.into_inner();
        let Some(cmd) = r.command else {
            return Err(status::invalid("command", "is required"));
        };
        let mut v = Violations::new();
        validate_send(&cmd, &mut v);
        v.duration("wait.timeout", r.wait.as_ref().and_then(|w| w.timeout.as_ref()));
        v.check()?;
        let detail = describe(&cmd);
        let a = self.accept(&p, cmd, detail, r.wait.as_ref(), &metadata).await?;
        Ok(Response::new(SendMessageResponse {
            command_id: a.command_id,
            accepted_time: Some(a.accepted_time),
            duplicate: a.duplicate,
            outcome: a.outcome,
        }))
    }

    async fn upload_attachment(
        &self,
        request: Request<UploadAttachmentRequest>,
    ) -> Result<Response<UploadAttachmentResponse>, Status> {
        let p = self.principal(&request, Scope::MessagesSend)?;
        let metadata = request.metadata().clone();
        let r = request.into_inner();
        let Some(cmd): Option<UploadAttachmentCommand> = r.command else {
            return Err(status::invalid("command", "is required"));
        };
        let mut v = Violations::new();
        v.id("command.account_id", &cmd.account_id);
        if !cmd.command_id.is_empty() {
            v.id("command.command_id", &cmd.command_id);
        }
        if MediaKind::try_from(cmd.kind).unwrap_or(MediaKind::Unspecified) == MediaKind::Unspecified {
            v.add("command.kind", "is required: IMAGE, AUDIO, VIDEO or FILE");
        }
        url(&mut v, "command.url", &cmd.url);
        v.timestamp("command.deadline", cmd.deadline.as_ref());
        v.duration("wait.timeout", r.wait.as_ref().and_then(|w| w.timeout.as_ref()));
        v.check()?;
        let detail = "upload attachment".to_owned();
        let a = self.accept(&p, cmd, detail, r.wait.as_ref(), &metadata).await?;
        Ok(Response::new(UploadAttachmentResponse {
            command_id: a.command_id,
            accepted_time: Some(a.accepted_time),
            duplicate: a.duplicate,
            outcome: a.outcome,
        }))
    }

    async fn get_outcome(&self, request: Request<GetOutcomeRequest>) -> Result<Response<GetOutcomeResponse>, Status> {
        let p = self.principal(&request, Scope::MessagesSend)?;
        let metadata = request.metadata().clone();
        let r = request.into_inner();
        let mut v = Violations::new();
        v.id("account_id", &r.account_id);
        v.id("command_id", &r.command_id);
        v.duration("wait.timeout", r.wait.as_ref().and_then(|w| w.timeout.as_ref()));
        v.check()?;
        p.require_account(&r.account_id)?;
        self.ensure_connected()?;
        if let Some(o) = outcomes::get(self, &r.account_id, &r.command_id).await? {
            return Ok(Response::new(GetOutcomeResponse { outcome: Some(o) }));
        }
        match r.wait.as_ref().filter(|w| w.wait) {
            Some(w) => {
                let _slot = self.waits.take(&p.key_id)?;
                let budget = outcomes::wait_budget(w.timeout.as_ref(), &metadata, self.cfg.max_wait);
                let o = outcomes::wait(self, &r.account_id, &r.command_id, budget).await?;
                Ok(Response::new(GetOutcomeResponse { outcome: Some(o) }))
            }
            None => Err(Status::not_found(format!(
                "no outcome for command {} of account {} (unknown id, or not carried out yet)",
                r.command_id, r.account_id
            ))),
        }
    }
}

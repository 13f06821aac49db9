//! Send API: messages, private replies, attachment uploads.

use super::*;

impl State {
    // ---------- Send API ----------

    pub(crate) fn validate_buttons(buttons: &[Value], max: usize) -> Result<(), MetaError> {
        if buttons.len() > max {
            return Err(MetaError::param(format!("param buttons must have a maximum of {max} elements")));
        }
        for b in buttons {
            let title = b.get("title").and_then(Value::as_str).unwrap_or("");
            if title.is_empty() {
                return Err(MetaError::param("param buttons[title] must be non-empty"));
            }
            match b.get("type").and_then(Value::as_str) {
                Some("web_url") if b.get("url").and_then(Value::as_str).is_some_and(|u| u.starts_with("http")) => {}
                Some("postback") if b.get("payload").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) => {}
                _ => {
                    return Err(MetaError::param(
                        "Invalid button: type must be web_url (with url) or postback (with payload)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Meta's limits on a message: text ≤ 1000 bytes, ≤ 13 quick replies, attachment and
    /// template rules.
    pub fn validate_message(&self, account: &str, msg: &Value) -> Result<(), MetaError> {
        let text = msg.get("text");
        let attachment = msg.get("attachment");
        if let Some(list) = msg.get("attachments") {
            // Several images in one message: up to 10, images only.
            let list =
                list.as_array().ok_or_else(|| MetaError::param("param message[attachments] must be an array"))?;
            if list.is_empty() || list.len() > 10 {
                return Err(MetaError::param("param message[attachments] must have between 1 and 10 elements"));
            }
            for a in list {
                if a.get("type").and_then(Value::as_str) != Some("image") {
                    return Err(MetaError::param("Only images can be sent several in one message"));
                }
                self.validate_message(account, &json!({"attachment": a}))?;
            }
            return Ok(());
        }
        if text.is_none() && attachment.is_none() {
            return Err(MetaError::param("param message must contain text or attachment"));
        }
        if let Some(t) = text {
            let t = t.as_str().ok_or_else(|| MetaError::param("param message[text] must be a string"))?;
            if t.len() > 1000 {
                return Err(MetaError::param("Length of param message[text] must be less than or equal to 1000"));
            }
            if t.is_empty() {
                return Err(MetaError::param("param message[text] must be non-empty"));
            }
        }
        if let Some(qr) = msg.get("quick_replies") {
            let qr = qr.as_array().ok_or_else(|| MetaError::param("param message[quick_replies] must be an array"))?;
            if qr.len() > 13 {
                return Err(MetaError::param("param message[quick_replies] must have a maximum of 13 elements"));
            }
            for q in qr {
                if q.get("content_type").and_then(Value::as_str) != Some("text") {
                    return Err(MetaError::param("Only text quick replies are supported"));
                }
                if q.get("title").and_then(Value::as_str).is_none_or(str::is_empty) || q.get("payload").is_none() {
                    return Err(MetaError::param("Quick replies need a title and a payload"));
                }
            }
        }
        let Some(a) = attachment else { return Ok(()) };
        let payload = a.get("payload");
        match a.get("type").and_then(Value::as_str) {
            Some("image" | "audio" | "video" | "file") => {
                let url = payload.and_then(|p| p.get("url")).and_then(Value::as_str);
                let att = payload.and_then(|p| p.get("attachment_id")).and_then(Value::as_str);
                match (url, att) {
                    (Some(u), _) if u.starts_with("http://") || u.starts_with("https://") => Ok(()),
                    (_, Some(id)) if self.attachments.get(id).is_some_and(|x| x.account == account) => Ok(()),
                    (_, Some(_)) => Err(MetaError::param("Invalid attachment_id")),
                    _ => Err(MetaError::param(
                        "param message[attachment][payload] must contain a url or an attachment_id",
                    )),
                }
            }
            Some("like_heart") => Ok(()),
            Some("MEDIA_SHARE") => {
                let id = payload.and_then(|p| p.get("id")).and_then(Value::as_str).unwrap_or("");
                if self.media.get(id).is_some_and(|m| m.account == account) {
                    Ok(())
                } else {
                    Err(MetaError::param("The media to share must be a post published by this account"))
                }
            }
            Some("template") => {
                let p = payload.ok_or_else(|| MetaError::param("param message[attachment][payload] is required"))?;
                match p.get("template_type").and_then(Value::as_str) {
                    Some("generic") => {
                        let els = p
                            .get("elements")
                            .and_then(Value::as_array)
                            .ok_or_else(|| MetaError::param("param elements is required"))?;
                        if els.is_empty() || els.len() > 10 {
                            return Err(MetaError::param("param elements must have between 1 and 10 elements"));
                        }
                        for e in els {
                            let title = e.get("title").and_then(Value::as_str).unwrap_or("");
                            if title.is_empty() || title.chars().count() > 80 {
                                return Err(MetaError::param("param elements[title] must be 1 to 80 characters"));
                            }
                            if e.get("subtitle").and_then(Value::as_str).is_some_and(|s| s.chars().count() > 80) {
                                return Err(MetaError::param("param elements[subtitle] must be at most 80 characters"));
                            }
                            let buttons = e.get("buttons").and_then(Value::as_array).cloned().unwrap_or_default();
                            Self::validate_buttons(&buttons, 3)?;
                        }
                        Ok(())
                    }
                    Some("button") => {
                        let text = p.get("text").and_then(Value::as_str).unwrap_or("");
                        if text.is_empty() || text.chars().count() > 640 {
                            return Err(MetaError::param("param text must be 1 to 640 characters"));
                        }
                        let buttons = p.get("buttons").and_then(Value::as_array).cloned().unwrap_or_default();
                        if buttons.is_empty() {
                            return Err(MetaError::param("param buttons must have between 1 and 3 elements"));
                        }
                        Self::validate_buttons(&buttons, 3)
                    }
                    _ => Err(MetaError::param("Unsupported template_type")),
                }
            }
            _ => Err(MetaError::param("Invalid attachment type")),
        }
    }

    pub(crate) fn window_open(&self, account: &str, user: &str, tag: Option<&str>) -> Result<(), MetaError> {
        let last = self
            .conv_index
            .get(&(account.to_owned(), user.to_owned()))
            .and_then(|c| self.conversations.get(c))
            .and_then(|c| c.last_inbound_ms);
        let Some(last) = last else {
            return Err(MetaError::outside_window());
        };
        let age = self.now() - last;
        match tag {
            _ if age <= DAY_MS => Ok(()),
            Some("HUMAN_AGENT") if age <= 7 * DAY_MS => Ok(()),
            _ => Err(MetaError::outside_window()),
        }
    }

    /// The echo Meta sends for a message the app sent.
    pub(crate) fn echo(&mut self, account: &str, user: &str, mid: &str, msg: &Value) {
        let mut m = json!({"mid": mid, "is_echo": true});
        if let Some(t) = msg.get("text") {
            m["text"] = t.clone();
        }
        if let Some(list) = msg.get("attachments") {
            m["attachments"] = list.clone();
        }
        if let Some(a) = msg.get("attachment") {
            let mut a = a.clone();
            if let Some(id) = a.pointer("/payload/attachment_id").and_then(Value::as_str).map(str::to_owned)
                && let Some(up) = self.attachments.get(&id)
            {
                a["payload"] = json!({"url": up.url});
            }
            m["attachments"] = json!([a]);
        }
        let now = self.now();
        let item = json!({"sender": {"id": account}, "recipient": {"id": user}, "timestamp": now, "message": m});
        self.emit(account, "messages", item, false);
    }

    pub(crate) fn send(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let recipient = p.json("recipient").ok_or_else(|| MetaError::param("param recipient must be non-empty."))?;
        let tag = p.str("tag");
        if let Some(t) = tag.as_deref()
            && t != "HUMAN_AGENT"
        {
            return Err(MetaError::param("Param tag must be HUMAN_AGENT on Instagram"));
        }
        if let Some(cid) = recipient.get("comment_id").and_then(Value::as_str) {
            return self.private_reply(account, cid, p);
        }
        let user = recipient
            .get("id")
            .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())))
            .ok_or_else(|| MetaError::param("param recipient[id] must be non-empty."))?;
        if !self.users.contains_key(&user) {
            return Err(MetaError::no_user());
        }
        if self.accounts.get(account).is_some_and(|a| a.blocked.contains(&user)) {
            return Err(MetaError::user_unavailable());
        }
        if let Some(action) = p.str("sender_action") {
            self.window_open(account, &user, tag.as_deref())?;
            match action.as_str() {
                "typing_on" | "typing_off" | "mark_seen" => {}
                "react" | "unreact" => {
                    let payload = p.json("payload").unwrap_or(Value::Null);
                    let mid = payload.get("message_id").and_then(Value::as_str).unwrap_or("");
                    let conv = self.conv_index.get(&(account.to_owned(), user.clone())).cloned();
                    let msg = self.messages.get_mut(mid).filter(|m| Some(&m.conversation) == conv.as_ref());
                    let Some(msg) = msg else {
                        return Err(MetaError::param(
                            "param payload[message_id] is not a message of this conversation",
                        ));
                    };
                    if action == "react" {
                        let reaction = payload.get("reaction").and_then(Value::as_str).unwrap_or("love");
                        msg.reactions.insert(account.to_owned(), reaction.to_owned());
                    } else {
                        msg.reactions.remove(account);
                    }
                }
                _ => {
                    return Err(MetaError::param(
                        "param sender_action must be one of typing_on, typing_off, mark_seen, react, unreact",
                    ));
                }
            }
            return Ok(json!({"recipient_id": user}));
        }
        let msg = p.json("message").ok_or_else(|| MetaError::param("param message must be non-empty."))?;
        self.validate_message(account, &msg)?;
        self.window_open(account, &user, tag.as_deref())?;
        let (mid, _) = self.store_message(account, &user, false, msg.clone(), tag, None);
        self.echo(account, &user, &mid, &msg);
        Ok(json!({"recipient_id": user, "message_id": mid}))
    }

    pub(crate) fn private_reply(&mut self, account: &str, comment_id: &str, p: &Params) -> Result<Value, MetaError> {
        let msg = p.json("message").ok_or_else(|| MetaError::param("param message must be non-empty."))?;
        let Some(c) = self.comments.get(comment_id).filter(|c| c.account == account && !c.deleted) else {
            return Err(MetaError::param_sub(
                2534014,
                "Invalid comment_id: the comment does not exist on this account's media",
            ));
        };
        if c.from_id == account {
            return Err(MetaError::param_sub(2534014, "Cannot send a private reply to the account's own comment"));
        }
        if c.private_replied {
            return Err(MetaError::param_sub(2534025, "Only one private reply can be sent per comment"));
        }
        if self.now() - c.created_ms > 7 * DAY_MS {
            return Err(MetaError::outside_window());
        }
        let user = c.from_id.clone();
        self.validate_message(account, &msg)?;
        if self.accounts.get(account).is_some_and(|a| a.blocked.contains(&user)) {
            return Err(MetaError::user_unavailable());
        }
        if let Some(c) = self.comments.get_mut(comment_id) {
            c.private_replied = true;
        }
        let (mid, _) = self.store_message(account, &user, false, msg.clone(), None, Some(comment_id.to_owned()));
        self.echo(account, &user, &mid, &msg);
        Ok(json!({"recipient_id": user, "message_id": mid}))
    }

    pub(crate) fn upload_attachment(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let msg = p.json("message").ok_or_else(|| MetaError::param("param message must be non-empty."))?;
        let kind = msg.pointer("/attachment/type").and_then(Value::as_str).unwrap_or("");
        if !matches!(kind, "image" | "audio" | "video" | "file") {
            return Err(MetaError::param("param message[attachment][type] must be image, audio, video or file"));
        }
        let url = msg.pointer("/attachment/payload/url").and_then(Value::as_str).unwrap_or("");
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(MetaError::param("param message[attachment][payload][url] must be a URL"));
        }
        let id = self.new_id("182");
        self.attachments.insert(
            id.clone(),
            UploadedAttachment {
                id: id.clone(),
                account: account.to_owned(),
                kind: kind.to_owned(),
                url: url.to_owned(),
            },
        );
        Ok(json!({"attachment_id": id}))
    }
}

//! Conversations API: conversations, their messages, message details.

use super::*;

impl State {
    // ---------- Conversations API ----------

    /// A thread the business never answered stays in the Requests folder; Meta stops returning
    /// it after 30 idle days.
    pub(crate) fn idle_request(&self, c: &crate::state::Conversation, now: i64) -> bool {
        let answered = c.messages.iter().any(|m| self.messages.get(m).is_some_and(|m| !m.inbound));
        !answered && now - c.updated_ms > 30 * DAY_MS
    }

    pub(crate) fn list_conversations(&self, account: &str, req: &GraphRequest) -> Result<Value, MetaError> {
        let now = self.now();
        let user = req.params.str("user_id");
        if let Some(u) = &user
            && !self.users.contains_key(u)
        {
            return Err(MetaError::no_user());
        }
        let mut convs: Vec<_> = self
            .conversations
            .values()
            .filter(|c| {
                c.account == account
                    && user.as_ref().is_none_or(|u| *u == c.user)
                    && !c.messages.is_empty()
                    && !self.idle_request(c, now)
            })
            .collect();
        convs.sort_by(|a, b| b.updated_ms.cmp(&a.updated_ms).then(b.id.cmp(&a.id)));
        let fields = req.params.str("fields");
        let items = convs
            .into_iter()
            .map(|c| {
                let mut o = Map::new();
                o.insert("id".into(), json!(c.id));
                o.insert("updated_time".into(), json!(self.time(c.updated_ms)));
                select(o, fields.as_deref(), &["id", "updated_time"])
            })
            .collect();
        Ok(self.paginate(items, req))
    }

    pub(crate) fn message_refs(&self, conv: &str) -> Vec<Value> {
        let Some(c) = self.conversations.get(conv) else {
            return Vec::new();
        };
        c.messages
            .iter()
            .rev()
            .filter_map(|m| self.messages.get(m))
            .map(|m| json!({"id": m.mid, "created_time": self.time(m.created_ms), "is_unsupported": false}))
            .collect()
    }

    pub(crate) fn conversation_messages_page(&self, conv: &str, req: &GraphRequest) -> Value {
        self.paginate(self.message_refs(conv), req)
    }

    pub(crate) fn get_conversation(&self, conv: &str, req: &GraphRequest) -> Result<Value, MetaError> {
        let c = self.conversations.get(conv).ok_or_else(|| MetaError::no_object(conv, "get"))?;
        let fields = req.params.str("fields");
        let mut o = Map::new();
        o.insert("id".into(), json!(c.id));
        o.insert("updated_time".into(), json!(self.time(c.updated_ms)));
        let wanted = fields.as_deref().map(crate::state::field_names).unwrap_or_default();
        if wanted.iter().any(|f| f == "messages") {
            let mut sub = req.clone();
            sub.self_url = format!("{}/messages", req.self_url);
            sub.query.retain(|(k, _)| k != "fields");
            o.insert("messages".into(), self.paginate(self.message_refs(conv), &sub));
        }
        if wanted.iter().any(|f| f == "participants") {
            o.insert("participants".into(), json!({"data": [self.participant(&c.account), self.participant(&c.user)]}));
        }
        Ok(select(o, fields.as_deref(), &["id", "updated_time"]))
    }

    pub(crate) fn participant(&self, id: &str) -> Value {
        let username = self
            .accounts
            .get(id)
            .map(|a| a.username.clone())
            .or_else(|| self.users.get(id).map(|u| u.username.clone()))
            .unwrap_or_default();
        json!({"username": username, "id": id})
    }

    pub(crate) fn get_message(&self, mid: &str, p: &Params) -> Result<Value, MetaError> {
        let m = self.messages.get(mid).ok_or_else(|| MetaError::no_object(mid, "get"))?;
        let conv = self.conversations.get(&m.conversation).ok_or_else(|| MetaError::no_object(mid, "get"))?;
        let pos_from_end = conv.messages.iter().rev().position(|x| x == mid).unwrap_or(usize::MAX);
        // Meta keeps details for the 20 most recent messages only.
        if pos_from_end >= 20 {
            return Err(MetaError::message_deleted());
        }
        let mut o = Map::new();
        o.insert("id".into(), json!(m.mid));
        o.insert("created_time".into(), json!(self.time(m.created_ms)));
        o.insert("from".into(), self.participant(&m.from));
        o.insert("to".into(), json!({"data": [self.participant(&m.to)]}));
        o.insert("message".into(), json!(m.text.clone().unwrap_or_default()));
        o.insert("is_unsupported".into(), json!(false));
        if !m.attachments.is_empty() {
            let data: Vec<Value> = m
                .attachments
                .iter()
                .map(|a| {
                    let url = a.pointer("/payload/url").cloned().unwrap_or(Value::Null);
                    match a.get("type").and_then(Value::as_str) {
                        Some("image") => json!({"image_data": {"url": url, "preview_url": url}}),
                        Some("video") => json!({"video_data": {"url": url, "preview_url": url}}),
                        _ => json!({"file_url": url}),
                    }
                })
                .collect();
            o.insert("attachments".into(), json!({"data": data}));
        }
        Ok(select(o, p.str("fields").as_deref(), &["id", "created_time"]))
    }
}

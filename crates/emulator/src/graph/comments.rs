//! Comments: listing, replies, hiding, deleting.

use super::*;

impl State {
    // ---------- Comments ----------

    pub(crate) fn comment_json(&self, c: &Comment) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("id".into(), json!(c.id));
        o.insert("text".into(), json!(c.text));
        o.insert("timestamp".into(), json!(self.time(c.created_ms)));
        o.insert("from".into(), json!({"id": c.from_id, "username": c.from_username}));
        o.insert("username".into(), json!(c.from_username));
        o.insert("hidden".into(), json!(c.hidden));
        o.insert("like_count".into(), json!(0));
        o.insert("media".into(), json!({"id": c.media}));
        if let Some(p) = &c.parent {
            o.insert("parent_id".into(), json!(p));
        }
        o
    }

    pub(crate) fn list_comments(&self, node: &str, req: &GraphRequest, replies: bool) -> Result<Value, MetaError> {
        let ids: Vec<String> = if replies {
            self.comments.get(node).map(|c| c.replies.clone()).unwrap_or_default()
        } else {
            self.media.get(node).map(|m| m.comments.clone()).unwrap_or_default()
        };
        let fields = req.params.str("fields");
        let items = ids
            .iter()
            .filter_map(|id| self.comments.get(id))
            .filter(|c| !c.deleted)
            .map(|c| select(self.comment_json(c), fields.as_deref(), &["id", "text", "timestamp"]))
            .collect();
        Ok(self.paginate(items, req))
    }

    pub(crate) fn get_comment(&self, id: &str, p: &Params) -> Result<Value, MetaError> {
        let c = self.comments.get(id).ok_or_else(|| MetaError::no_object(id, "get"))?;
        Ok(select(self.comment_json(c), p.str("fields").as_deref(), &["id", "text", "timestamp"]))
    }

    pub(crate) fn reply(&mut self, comment_id: &str, p: &Params) -> Result<Value, MetaError> {
        let text = p
            .str("message")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| MetaError::param("The parameter message is required"))?;
        let c = self.comments.get(comment_id).ok_or_else(|| MetaError::no_object(comment_id, "post"))?.clone();
        if c.parent.is_some() {
            return Err(MetaError::param("Replies can only be made to top-level comments"));
        }
        if c.hidden {
            return Err(MetaError::param("Cannot reply to a hidden comment"));
        }
        if c.live {
            return Err(MetaError::param("Cannot reply to a live comment"));
        }
        if self.media.get(&c.media).is_some_and(|m| !m.comment_enabled) {
            return Err(MetaError::param("Comments are disabled on this media"));
        }
        let username = self.accounts.get(&c.account).map(|a| a.username.clone()).unwrap_or_default();
        let id = self.new_id("180");
        let now = self.now();
        self.comments.insert(
            id.clone(),
            Comment {
                id: id.clone(),
                media: c.media.clone(),
                account: c.account.clone(),
                parent: Some(comment_id.to_owned()),
                from_id: c.account.clone(),
                from_username: username,
                text,
                hidden: false,
                deleted: false,
                live: false,
                created_ms: now,
                replies: Vec::new(),
                private_replied: false,
            },
        );
        if let Some(parent) = self.comments.get_mut(comment_id) {
            parent.replies.push(id.clone());
        }
        Ok(json!({"id": id}))
    }

    pub(crate) fn hide_comment(&mut self, account: &str, id: &str, p: &Params) -> Result<Value, MetaError> {
        let hide = p.bool("hide").ok_or_else(|| MetaError::param("The parameter hide is required"))?;
        let c = self.comments.get_mut(id).ok_or_else(|| MetaError::no_object(id, "post"))?;
        if c.from_id == account {
            return Err(MetaError::param("Comments made by the media owner cannot be hidden"));
        }
        c.hidden = hide;
        Ok(json!({"success": true}))
    }
}

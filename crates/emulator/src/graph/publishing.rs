//! Media objects and content publishing: containers, status, media_publish, the publishing limit.

use super::*;

impl State {
    pub(crate) fn media_object(&self, id: &str, p: &Params) -> Value {
        let Some(m) = self.media.get(id) else {
            return json!({"id": id});
        };
        let mut o = Map::new();
        o.insert("id".into(), json!(m.id));
        o.insert("caption".into(), json!(m.caption));
        o.insert("media_type".into(), json!(m.media_type));
        o.insert("media_product_type".into(), json!(m.media_product_type));
        o.insert("timestamp".into(), json!(self.time(m.created_ms)));
        o.insert(
            "comments_count".into(),
            json!(m.comments.iter().filter(|c| self.comments.get(*c).is_some_and(|c| !c.deleted)).count()),
        );
        o.insert("like_count".into(), json!(0));
        o.insert("comment_enabled".into(), json!(m.comment_enabled));
        o.insert("permalink".into(), json!(format!("https://www.instagram.com/p/emu{}/", m.id)));
        select(o, p.str("fields").as_deref(), &["id", "media_type", "caption", "timestamp"])
    }

    // ---------- Content publishing ----------

    pub(crate) fn create_container(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let now = self.now();
        let limit = self.cfg.rate_limits.containers_per_24h as usize;
        if let Some(a) = self.accounts.get_mut(account) {
            a.containers_created.retain(|t| now - *t < DAY_MS);
            if a.containers_created.len() >= limit {
                return Err(MetaError::new(
                    4,
                    None,
                    "(#4) Application request limit reached: too many media containers created in 24 hours",
                ));
            }
        }
        let media_type = p.str("media_type").unwrap_or_else(|| "IMAGE".into()).to_uppercase();
        let caption = p.str("caption");
        if let Some(c) = &caption {
            if c.chars().count() > 2200 {
                return Err(MetaError::new(36004, Some(2207010), "The caption is too long: at most 2200 characters"));
            }
            if c.split_whitespace().filter(|w| w.starts_with('@')).count() > 20 {
                return Err(MetaError::new(100, Some(2207040), "(#100) Too many tags: at most 20 @mentions"));
            }
        }
        let is_url =
            |u: &Option<String>| u.as_deref().is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"));
        let image_url = p.str("image_url");
        let video_url = p.str("video_url");
        let carousel_item = p.bool("is_carousel_item").unwrap_or(false);
        let mut children = Vec::new();
        match media_type.as_str() {
            "IMAGE" => {
                if !is_url(&image_url) {
                    return Err(MetaError::new(
                        9004,
                        Some(2207052),
                        "The media could not be fetched from this URI: image_url is missing or invalid",
                    ));
                }
            }
            "REELS" | "STORIES" => {
                let resumable = p.str("upload_type").as_deref() == Some("resumable");
                if !(is_url(&video_url) || resumable || (media_type == "STORIES" && is_url(&image_url))) {
                    return Err(MetaError::new(
                        9004,
                        Some(2207052),
                        "The media could not be fetched from this URI: video_url is missing or invalid",
                    ));
                }
            }
            "VIDEO" => {
                if !carousel_item {
                    return Err(MetaError::param(
                        "The VIDEO media type is no longer supported for feed posts; use REELS",
                    ));
                }
                if !is_url(&video_url) {
                    return Err(MetaError::new(9004, Some(2207052), "The media could not be fetched from this URI"));
                }
            }
            "CAROUSEL" => {
                let raw = p.json("children").unwrap_or(Value::Null);
                children = match raw {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())))
                        .collect(),
                    Value::String(s) => s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect(),
                    Value::Number(n) => vec![n.to_string()],
                    _ => Vec::new(),
                };
                if children.len() < 2 || children.len() > 10 {
                    return Err(MetaError::new(100, Some(2207028), "(#100) Carousels need between 2 and 10 children"));
                }
                for ch in &children {
                    let ok = self.containers.get(ch).is_some_and(|c| c.account == account && c.is_carousel_item);
                    if !ok {
                        return Err(MetaError::param(format!(
                            "The carousel child {ch} is not a carousel item container of this account"
                        )));
                    }
                }
            }
            other => {
                return Err(MetaError::param(format!("media_type {other} is not supported")));
            }
        }
        let id = self.new_id("181");
        self.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                account: account.to_owned(),
                media_type,
                created_ms: now,
                forced: None,
                published: None,
                children,
                is_carousel_item: carousel_item,
                caption,
            },
        );
        if let Some(a) = self.accounts.get_mut(account) {
            a.containers_created.push(now);
        }
        Ok(json!({"id": id}))
    }

    /// IN_PROGRESS for the configured delay, then FINISHED; EXPIRED after 24 h unpublished;
    /// a carousel is as far as its least advanced child.
    pub fn status_of(&self, id: &str) -> &'static str {
        let Some(c) = self.containers.get(id) else {
            return "ERROR";
        };
        if c.published.is_some() {
            return "PUBLISHED";
        }
        if let Some(f) = c.forced.as_deref() {
            return match f {
                "ERROR" => "ERROR",
                "EXPIRED" => "EXPIRED",
                "FINISHED" => "FINISHED",
                _ => "IN_PROGRESS",
            };
        }
        let age = self.now() - c.created_ms;
        if age >= DAY_MS {
            return "EXPIRED";
        }
        if !c.children.is_empty() {
            let kids: Vec<&str> = c.children.iter().map(|ch| self.status_of(ch)).collect();
            if kids.contains(&"ERROR") {
                return "ERROR";
            }
            if kids.contains(&"EXPIRED") {
                return "EXPIRED";
            }
            if kids.contains(&"IN_PROGRESS") {
                return "IN_PROGRESS";
            }
        }
        if age < self.cfg.container_delay_ms as i64 { "IN_PROGRESS" } else { "FINISHED" }
    }

    pub(crate) fn container_status(&self, id: &str, p: &Params) -> Result<Value, MetaError> {
        let code = self.status_of(id);
        let status = match code {
            "FINISHED" => "Finished: Media has been uploaded and it is ready to be published.",
            "IN_PROGRESS" => "In Progress: Media is still being processed.",
            "PUBLISHED" => "Published: Media has been published.",
            "EXPIRED" => "Expired: The container was not published within 24 hours and has expired.",
            _ => "Error: Media upload has failed with error code 2207052.",
        };
        let mut o = Map::new();
        o.insert("id".into(), json!(id));
        o.insert("status_code".into(), json!(code));
        o.insert("status".into(), json!(status));
        Ok(select(o, p.str("fields").as_deref(), &["id"]))
    }

    pub(crate) fn publish(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let cid = p.str("creation_id").ok_or_else(|| MetaError::param("The parameter creation_id is required"))?;
        let Some(c) = self.containers.get(&cid).filter(|c| c.account == account).cloned() else {
            return Err(MetaError::new(
                24,
                Some(2207008),
                "The media container does not exist or is not available yet",
            ));
        };
        if c.is_carousel_item {
            return Err(MetaError::param("A carousel item cannot be published on its own"));
        }
        match self.status_of(&cid) {
            "FINISHED" => {}
            "IN_PROGRESS" => {
                return Err(MetaError::new(
                    9007,
                    Some(2207027),
                    "Media ID is not available: the media is not ready for publishing, please wait",
                ));
            }
            "EXPIRED" => {
                return Err(MetaError::new(-2, Some(2207020), "The media container has expired; create a new one"));
            }
            "PUBLISHED" => {
                return Err(MetaError::param("The media container has already been published"));
            }
            _ => {
                return Err(MetaError::new(9004, Some(2207052), "The media could not be fetched from this URI"));
            }
        }
        let now = self.now();
        let quota = self.cfg.rate_limits.publishes_per_24h as usize;
        let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "post"))?;
        a.publishes.retain(|t| now - *t < DAY_MS);
        if a.publishes.len() >= quota {
            return Err(MetaError::publish_limit());
        }
        a.publishes.push(now);
        let id = self.new_id("179");
        let product = match c.media_type.as_str() {
            "REELS" => "REELS",
            "STORIES" => "STORY",
            _ => "FEED",
        };
        let media_type = match c.media_type.as_str() {
            "REELS" => "VIDEO",
            "CAROUSEL" => "CAROUSEL_ALBUM",
            "STORIES" if c.caption.is_none() => "IMAGE",
            other => other,
        }
        .to_owned();
        self.media.insert(
            id.clone(),
            Media {
                id: id.clone(),
                account: account.to_owned(),
                media_type,
                media_product_type: product.into(),
                caption: c.caption.clone(),
                comment_enabled: true,
                created_ms: now,
                comments: Vec::new(),
                carousel_child: false,
            },
        );
        if let Some(c) = self.containers.get_mut(&cid) {
            c.published = Some(id.clone());
        }
        Ok(json!({"id": id}))
    }

    pub(crate) fn publishing_limit(&self, account: &str, p: &Params) -> Value {
        let now = self.now();
        let used =
            self.accounts.get(account).map(|a| a.publishes.iter().filter(|t| now - **t < DAY_MS).count()).unwrap_or(0);
        let mut o = Map::new();
        o.insert("quota_usage".into(), json!(used));
        o.insert(
            "config".into(),
            json!({"quota_total": self.cfg.rate_limits.publishes_per_24h, "quota_duration": 86400}),
        );
        let fields = p.str("fields");
        let item = match fields.as_deref() {
            Some(f) if !f.is_empty() => {
                let names = crate::state::field_names(f);
                Value::Object(o.into_iter().filter(|(k, _)| names.contains(k)).collect())
            }
            _ => json!({"quota_usage": used}),
        };
        json!({"data": [item]})
    }
}

//! Webhook subscriptions, the account and Page objects, /me/accounts, token refresh.

use super::*;

impl State {
    pub(crate) fn subscribed_apps(&mut self, account: &str, method: &Method, p: &Params) -> Result<Value, MetaError> {
        let (app_id, app_name) = (self.cfg.app_id.clone(), self.cfg.app_name.clone());
        let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "get"))?;
        if method == Method::GET {
            return Ok(if a.subscribed_fields.is_empty() {
                json!({"data": []})
            } else {
                json!({"data": [{"subscribed_fields": a.subscribed_fields, "id": app_id, "name": app_name}]})
            });
        }
        if method == Method::DELETE {
            a.subscribed_fields.clear();
            return Ok(json!({"success": true}));
        }
        let fields: Vec<String> = match p.json("subscribed_fields") {
            Some(Value::Array(v)) => v.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            Some(Value::String(s)) => s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect(),
            _ => {
                return Err(MetaError::param("The parameter subscribed_fields is required"));
            }
        };
        if fields.is_empty() {
            return Err(MetaError::param("The parameter subscribed_fields is required"));
        }
        if let Some(bad) = fields.iter().find(|f| !WEBHOOK_FIELDS.contains(&f.as_str())) {
            return Err(MetaError::param(format!(
                "Param subscribed_fields[{bad}] must be one of {{{}}}",
                WEBHOOK_FIELDS.join(", ")
            )));
        }
        a.subscribed_fields = fields.into_iter().collect();
        Ok(json!({"success": true}))
    }

    // ---------- Accounts, Pages, tokens ----------

    pub(crate) fn account_object(&self, account: &str, p: &Params) -> Value {
        let Some(a) = self.accounts.get(account) else {
            return json!({"id": account});
        };
        let mut o = Map::new();
        o.insert("id".into(), json!(a.ig_id));
        o.insert("user_id".into(), json!(a.ig_id));
        o.insert("username".into(), json!(a.username));
        o.insert("name".into(), json!(a.name));
        o.insert("account_type".into(), json!("BUSINESS"));
        o.insert("followers_count".into(), json!(a.followers));
        o.insert("media_count".into(), json!(self.media.values().filter(|m| m.account == a.ig_id).count()));
        select(o, p.str("fields").as_deref(), &["id", "username"])
    }

    pub(crate) fn page_json(&self, page: &str) -> Map<String, Value> {
        let mut o = Map::new();
        if let Some(pg) = self.pages.get(page) {
            o.insert("name".into(), json!(pg.name));
            o.insert("access_token".into(), json!(pg.token));
            o.insert("instagram_business_account".into(), json!({"id": pg.ig_id}));
            o.insert("id".into(), json!(pg.id));
            o.insert(
                "tasks".into(),
                json!(["ANALYZE", "ADVERTISE", "MESSAGING", "MODERATE", "CREATE_CONTENT", "MANAGE"]),
            );
        }
        o
    }

    pub(crate) fn page_object(&self, page: &str, p: &Params) -> Value {
        select(self.page_json(page), p.str("fields").as_deref(), &["name", "id"])
    }

    pub(crate) fn me_accounts(&self, user: &str, req: &GraphRequest) -> Value {
        let fields = req.params.str("fields");
        let mut pages = self.fb_users.get(user).cloned().unwrap_or_default();
        pages.sort();
        let items = pages
            .iter()
            .map(|p| select(self.page_json(p), fields.as_deref(), &["name", "access_token", "id", "tasks"]))
            .collect();
        self.paginate(items, req)
    }

    pub(crate) fn refresh_token(&mut self, req: &GraphRequest) -> Result<Value, MetaError> {
        if req.params.str("grant_type").as_deref() != Some("ig_refresh_token") {
            return Err(MetaError::param("grant_type must be ig_refresh_token"));
        }
        let token = req.token.clone().unwrap_or_default();
        let t = self.check_token(&token)?;
        if t.kind != TokenKind::Instagram {
            return Err(MetaError::param("Only long-lived Instagram User tokens can be refreshed"));
        }
        let now = self.now();
        if now - t.issued_ms < DAY_MS {
            return Err(MetaError::param("The access token must be at least 24 hours old to be refreshed"));
        }
        let n = self.next_seq();
        let new = format!("IGAArefreshed{n:010}");
        let expires_in: i64 = 60 * 24 * 3600;
        self.tokens.insert(
            new.clone(),
            Token {
                kind: TokenKind::Instagram,
                subject: t.subject,
                state: TokenState::Valid,
                issued_ms: now,
                expires_ms: Some(now + expires_in * 1000),
            },
        );
        Ok(json!({"access_token": new, "token_type": "bearer", "expires_in": expires_in}))
    }
}

//! User Profile API, messenger profile (ice breakers, persistent menu) and welcome message flows.

use super::*;

impl State {
    // ---------- User Profile ----------

    pub(crate) fn user_profile(&self, account: &str, user: &str, p: &Params) -> Result<Value, MetaError> {
        let a = self.accounts.get(account).ok_or_else(|| MetaError::no_object(user, "get"))?;
        if a.blocked.contains(user) {
            return Err(MetaError::no_object(user, "get"));
        }
        if !a.consent.contains(user) {
            return Err(MetaError::consent_required());
        }
        let u = self.users.get(user).ok_or_else(|| MetaError::no_object(user, "get"))?;
        let mut o = Map::new();
        o.insert("id".into(), json!(u.id));
        o.insert("name".into(), json!(u.name));
        o.insert("username".into(), json!(u.username));
        o.insert("profile_pic".into(), json!(u.profile_pic));
        o.insert("follower_count".into(), json!(u.follower_count));
        o.insert("is_user_follow_business".into(), json!(u.is_user_follow_business));
        o.insert("is_business_follow_user".into(), json!(u.is_business_follow_user));
        o.insert("is_verified_user".into(), json!(u.is_verified_user));
        Ok(select(
            o,
            p.str("fields").as_deref(),
            &[
                "name",
                "username",
                "profile_pic",
                "follower_count",
                "is_user_follow_business",
                "is_business_follow_user",
            ],
        ))
    }

    // ---------- Messenger profile, welcome flows, subscriptions ----------

    pub(crate) fn profile_fields(p: &Params) -> Vec<String> {
        let raw = p.json("fields").unwrap_or(Value::Null);
        match raw {
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            Value::String(s) => s
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|x| x.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
                .filter(|x| !x.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn messenger_profile(&mut self, account: &str, method: &Method, p: &Params) -> Result<Value, MetaError> {
        let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "get"))?;
        if method == Method::GET {
            let fields = Self::profile_fields(p);
            if fields.is_empty() {
                return Err(MetaError::param("The parameter fields is required"));
            }
            if fields.len() == 1 && fields[0] == "ice_breakers" {
                return Ok(json!({"data": a.ice_breakers}));
            }
            let mut o = Map::new();
            for f in &fields {
                match f.as_str() {
                    "ice_breakers" if !a.ice_breakers.is_empty() => {
                        o.insert(f.clone(), json!(a.ice_breakers));
                    }
                    "persistent_menu" if !a.persistent_menu.is_empty() => {
                        o.insert(f.clone(), json!(a.persistent_menu));
                    }
                    "ice_breakers" | "persistent_menu" => {}
                    other => {
                        return Err(MetaError::param(format!("Unsupported messenger_profile field {other}")));
                    }
                }
            }
            return Ok(if o.is_empty() { json!({"data": []}) } else { json!({"data": [o]}) });
        }
        if method == Method::DELETE {
            let fields = Self::profile_fields(p);
            if fields.is_empty() {
                return Err(MetaError::param("The parameter fields is required"));
            }
            for f in fields {
                match f.as_str() {
                    "ice_breakers" => a.ice_breakers.clear(),
                    "persistent_menu" => a.persistent_menu.clear(),
                    other => {
                        return Err(MetaError::param(format!("Unsupported messenger_profile field {other}")));
                    }
                }
            }
            return Ok(json!({"result": "success"}));
        }
        let ib = p.json("ice_breakers");
        let pm = p.json("persistent_menu");
        if ib.is_none() && pm.is_none() {
            return Err(MetaError::param("Requires one of the params: ice_breakers, persistent_menu"));
        }
        if let Some(ib) = ib {
            let items =
                ib.as_array().cloned().ok_or_else(|| MetaError::param("param ice_breakers must be an array"))?;
            // The seed's short form (a list of questions) is the default locale.
            let locales: Vec<Value> = if items.iter().all(|i| i.get("question").is_some()) {
                vec![json!({"call_to_actions": items, "locale": "default"})]
            } else {
                items
            };
            for l in &locales {
                let qs = l
                    .get("call_to_actions")
                    .and_then(Value::as_array)
                    .ok_or_else(|| MetaError::param("ice_breakers need call_to_actions"))?;
                if qs.is_empty() || qs.len() > 4 {
                    return Err(MetaError::param("Ice breakers: between 1 and 4 questions per locale"));
                }
                for q in qs {
                    if q.get("question").and_then(Value::as_str).is_none_or(str::is_empty)
                        || q.get("payload").and_then(Value::as_str).is_none()
                    {
                        return Err(MetaError::param("Each ice breaker needs a question and a payload"));
                    }
                }
            }
            a.ice_breakers = locales;
        }
        if let Some(pm) = pm {
            let locales =
                pm.as_array().cloned().ok_or_else(|| MetaError::param("param persistent_menu must be an array"))?;
            for l in &locales {
                let buttons = l.get("call_to_actions").and_then(Value::as_array).cloned().unwrap_or_default();
                if buttons.is_empty() {
                    return Err(MetaError::param("persistent_menu needs call_to_actions"));
                }
                Self::validate_buttons(&buttons, 20)?;
            }
            a.persistent_menu = locales;
        }
        Ok(json!({"result": "success"}))
    }

    pub(crate) fn flow_json(&self, f: &Flow) -> Value {
        json!({
            "name": f.name,
            "eligible_platforms": f.platforms,
            "welcome_message_flow": f.flow.to_string(),
            "last_update_time": self.time(f.updated_ms),
            "is_used_in_ad": false,
            "id": f.id,
        })
    }

    pub(crate) fn validate_flow(&self, account: &str, flow: &Value) -> Result<(), MetaError> {
        let steps = flow
            .as_array()
            .ok_or_else(|| MetaError::param("param welcome_message_flow must be an array of messages"))?;
        if steps.is_empty() {
            return Err(MetaError::param("param welcome_message_flow must not be empty"));
        }
        for s in steps {
            let m =
                s.get("message").ok_or_else(|| MetaError::param("Each welcome_message_flow step needs a message"))?;
            self.validate_message(account, m)?;
        }
        Ok(())
    }

    pub(crate) fn welcome_flows(&mut self, account: &str, method: &Method, p: &Params) -> Result<Value, MetaError> {
        let flow_id = p.str("flow_id");
        let cursors = json!({"cursors": {"before": "QVFIUz0", "after": "QVFIUz0"}});
        let now = self.now();
        if method == Method::GET {
            let a = self.accounts.get(account).ok_or_else(|| MetaError::no_object(account, "get"))?;
            let data: Vec<Value> = match &flow_id {
                Some(id) => vec![
                    self.flow_json(a.flows.get(id).ok_or_else(|| MetaError::param(format!("Invalid flow_id {id}")))?),
                ],
                None => a.flows.values().map(|f| self.flow_json(f)).collect(),
            };
            return Ok(json!({"data": data, "paging": cursors}));
        }
        if method == Method::DELETE {
            let id = flow_id.ok_or_else(|| MetaError::param("The parameter flow_id is required"))?;
            let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "delete"))?;
            a.flows.remove(&id).ok_or_else(|| MetaError::param(format!("Invalid flow_id {id}")))?;
            return Ok(json!({"success": true}));
        }
        let flow = p.json("welcome_message_flow");
        if let Some(f) = &flow {
            self.validate_flow(account, f)?;
        }
        let name = p.str("name");
        let platforms: Vec<String> = p
            .json("eligible_platforms")
            .and_then(|v| v.as_array().cloned())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_uppercase)).collect())
            .unwrap_or_else(|| vec!["INSTAGRAM".into()]);
        if let Some(id) = flow_id {
            let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "post"))?;
            let f = a.flows.get_mut(&id).ok_or_else(|| MetaError::param(format!("Invalid flow_id {id}")))?;
            if let Some(n) = name {
                f.name = n;
            }
            if let Some(fl) = flow {
                f.flow = fl;
            }
            f.updated_ms = now;
            return Ok(json!({"success": true}));
        }
        let name = name.filter(|n| !n.is_empty()).ok_or_else(|| MetaError::param("The parameter name is required"))?;
        let flow = flow.ok_or_else(|| MetaError::param("The parameter welcome_message_flow is required"))?;
        let id = self.new_id("183");
        let a = self.accounts.get_mut(account).ok_or_else(|| MetaError::no_object(account, "post"))?;
        a.flows.insert(id.clone(), Flow { id: id.clone(), name, platforms, flow, updated_ms: now });
        Ok(json!({"flow_id": id}))
    }
}

//! moderate_conversations (block, unblock, spam).

use super::*;

impl State {
    // ---------- Moderation ----------

    pub(crate) fn moderate(&mut self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let ids = p
            .json("user_ids")
            .and_then(|v| v.as_array().cloned())
            .ok_or_else(|| MetaError::param("Invalid parameter: user_ids is required"))?;
        let actions = p
            .json("actions")
            .and_then(|v| v.as_array().cloned())
            .ok_or_else(|| MetaError::param("Invalid parameter: actions is required"))?;
        if ids.is_empty() || ids.len() > 10 {
            return Err(MetaError::param("Invalid parameter: up to 10 user ids can be provided in each request"));
        }
        if actions.is_empty() || actions.len() > 2 {
            return Err(MetaError::param("Invalid parameter: up to 2 actions can be specified in each request"));
        }
        let actions: Vec<String> = actions.iter().map(|a| a.as_str().unwrap_or("").to_owned()).collect();
        if actions.iter().any(|a| !matches!(a.as_str(), "block_user" | "unblock_user" | "move_to_spam")) {
            return Err(MetaError::param("Invalid parameter: Invalid actions"));
        }
        if actions.iter().any(|a| a == "block_user") && actions.iter().any(|a| a == "unblock_user") {
            return Err(MetaError::param(
                "Invalid parameter: unblock_user cannot be included in the same request as block_user",
            ));
        }
        let mut users = Vec::new();
        for id in &ids {
            let id =
                id.get("id").and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())));
            match id {
                Some(u) if self.users.contains_key(&u) => users.push(u),
                _ => {
                    return Err(MetaError::param("Invalid parameter: The user ID is not a valid PSID or IGSID"));
                }
            }
        }
        for u in &users {
            if !self.conv_index.contains_key(&(account.to_owned(), u.clone())) {
                return Err(MetaError::new(1, None, "Instagram Direct thread not found between business and consumer"));
            }
        }
        let Some(a) = self.accounts.get_mut(account) else {
            return Err(MetaError::new(1, None, "Failed to block Instagram user"));
        };
        for u in users {
            for action in &actions {
                match action.as_str() {
                    "block_user" => {
                        a.blocked.insert(u.clone());
                    }
                    "unblock_user" => {
                        a.blocked.remove(&u);
                    }
                    _ => {
                        a.spam.insert(u.clone());
                    }
                }
            }
        }
        Ok(json!({"success": "true"}))
    }
}

//! User Profile API, Messenger Profile (ice breakers, persistent menu), Welcome Message Flows,
//! and webhook subscriptions (`subscribed_apps`).

use crate::client::{AccountAuth, GraphClient, Response, seg};
use crate::error::GraphError;
use crate::messaging::Button;
use crate::{Page, Success};
use serde::{Deserialize, Serialize};

/// `GET /<IGSID>?fields=…`. Needs the user's consent (they messaged, or tapped an ice breaker or
/// a menu item); missing fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct UserProfile {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub profile_pic: Option<String>,
    #[serde(default)]
    pub follower_count: Option<u64>,
    #[serde(default)]
    pub is_user_follow_business: Option<bool>,
    #[serde(default)]
    pub is_business_follow_user: Option<bool>,
    #[serde(default)]
    pub is_verified_user: Option<bool>,
}

pub const PROFILE_FIELDS: &str =
    "name,username,profile_pic,follower_count,is_user_follow_business,is_business_follow_user,is_verified_user";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct IceBreaker {
    pub question: String,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct IceBreakers {
    pub call_to_actions: Vec<IceBreaker>,
    #[serde(default = "default_locale")]
    pub locale: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct MenuLocale {
    #[serde(default = "default_locale")]
    pub locale: String,
    pub call_to_actions: Vec<Button>,
}

fn default_locale() -> String {
    "default".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileField {
    IceBreakers,
    PersistentMenu,
}

/// `{"result":"success"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ProfileResult {
    pub result: String,
}

#[derive(Deserialize)]
struct MenuHolder {
    #[serde(default)]
    persistent_menu: Vec<MenuLocale>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WelcomeFlow {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub eligible_platforms: Vec<String>,
    /// The flow's messages as Meta returns them: a JSON array serialised into a string.
    #[serde(default)]
    pub welcome_message_flow: Option<String>,
    #[serde(default)]
    pub last_update_time: Option<String>,
    #[serde(default)]
    pub is_used_in_ad: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct FlowCreated {
    pub flow_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SubscribedApp {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub subscribed_fields: Vec<String>,
}

impl GraphClient {
    /// `GET /<IGSID>?fields=name,username,profile_pic,…`.
    pub async fn user_profile(&self, auth: &AccountAuth, igsid: &str) -> Result<Response<UserProfile>, GraphError> {
        self.get("user_profile", auth, seg(igsid)?, &[("fields", PROFILE_FIELDS.to_owned())]).await
    }

    /// `POST /<IG_ID>/messenger_profile` with `ice_breakers` (at most 4 questions per locale).
    pub async fn set_ice_breakers(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        ice_breakers: &[IceBreakers],
    ) -> Result<Response<ProfileResult>, GraphError> {
        let body = serde_json::json!({"platform": "instagram", "ice_breakers": ice_breakers});
        self.post("messenger_profile", auth, &format!("{}/messenger_profile", seg(ig_id)?), &[], body).await
    }

    /// `GET /<IG_ID>/messenger_profile?fields=ice_breakers`.
    pub async fn ice_breakers(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
    ) -> Result<Response<Vec<IceBreakers>>, GraphError> {
        let q = [("fields", "ice_breakers".to_owned()), ("platform", "instagram".to_owned())];
        let page: Response<Page<IceBreakers>> =
            self.get("messenger_profile", auth, &format!("{}/messenger_profile", seg(ig_id)?), &q).await?;
        Ok(page.map(|p| p.data))
    }

    /// `POST /<IG_ID>/messenger_profile` with `persistent_menu`.
    pub async fn set_persistent_menu(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        menu: &[MenuLocale],
    ) -> Result<Response<ProfileResult>, GraphError> {
        let body = serde_json::json!({"platform": "instagram", "persistent_menu": menu});
        self.post("messenger_profile", auth, &format!("{}/messenger_profile", seg(ig_id)?), &[], body).await
    }

    /// `GET /<IG_ID>/messenger_profile?fields=persistent_menu`.
    pub async fn persistent_menu(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
    ) -> Result<Response<Vec<MenuLocale>>, GraphError> {
        let q = [("fields", "persistent_menu".to_owned()), ("platform", "instagram".to_owned())];
        let page: Response<Page<MenuHolder>> =
            self.get("messenger_profile", auth, &format!("{}/messenger_profile", seg(ig_id)?), &q).await?;
        Ok(page.map(|p| p.data.into_iter().flat_map(|h| h.persistent_menu).collect()))
    }

    /// `DELETE /<IG_ID>/messenger_profile?fields=[…]`.
    pub async fn delete_messenger_profile(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        fields: &[ProfileField],
    ) -> Result<Response<ProfileResult>, GraphError> {
        let fields = serde_json::to_string(fields).map_err(|e| GraphError::InvalidArgument(e.to_string()))?;
        let q = [("fields", fields), ("platform", "instagram".to_owned())];
        self.delete("messenger_profile", auth, &format!("{}/messenger_profile", seg(ig_id)?), &q).await
    }

    /// `GET /<IG_ID>/welcome_message_flows`.
    pub async fn welcome_flows(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
    ) -> Result<Response<Vec<WelcomeFlow>>, GraphError> {
        let page: Response<Page<WelcomeFlow>> =
            self.get("welcome_message_flows", auth, &format!("{}/welcome_message_flows", seg(ig_id)?), &[]).await?;
        Ok(page.map(|p| p.data))
    }

    /// `GET /<IG_ID>/welcome_message_flows?flow_id=…`.
    pub async fn welcome_flow(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        flow_id: &str,
    ) -> Result<Response<Option<WelcomeFlow>>, GraphError> {
        let q = [("flow_id", flow_id.to_owned())];
        let page: Response<Page<WelcomeFlow>> =
            self.get("welcome_message_flows", auth, &format!("{}/welcome_message_flows", seg(ig_id)?), &q).await?;
        Ok(page.map(|p| p.data.into_iter().next()))
    }

    /// `POST /<IG_ID>/welcome_message_flows`: `flow` is the array of messages.
    pub async fn create_welcome_flow(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        name: &str,
        flow: &serde_json::Value,
    ) -> Result<Response<FlowCreated>, GraphError> {
        let body = serde_json::json!({"name": name, "welcome_message_flow": flow, "eligible_platforms": ["instagram"]});
        self.post("welcome_message_flows", auth, &format!("{}/welcome_message_flows", seg(ig_id)?), &[], body).await
    }

    /// `POST /<IG_ID>/welcome_message_flows?flow_id=…`.
    pub async fn update_welcome_flow(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        flow_id: &str,
        name: Option<&str>,
        flow: Option<&serde_json::Value>,
    ) -> Result<Response<Success>, GraphError> {
        let mut body = serde_json::Map::new();
        if let Some(n) = name {
            body.insert("name".into(), n.into());
        }
        if let Some(f) = flow {
            body.insert("welcome_message_flow".into(), f.clone());
        }
        let q = [("flow_id", flow_id.to_owned())];
        self.post("welcome_message_flows", auth, &format!("{}/welcome_message_flows", seg(ig_id)?), &q, body.into())
            .await
    }

    /// `DELETE /<IG_ID>/welcome_message_flows?flow_id=…`.
    pub async fn delete_welcome_flow(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        flow_id: &str,
    ) -> Result<Response<Success>, GraphError> {
        let q = [("flow_id", flow_id.to_owned())];
        self.delete("welcome_message_flows", auth, &format!("{}/welcome_message_flows", seg(ig_id)?), &q).await
    }

    /// `POST /<IG_ID>/subscribed_apps?subscribed_fields=…`: turns webhooks on for the account.
    pub async fn subscribe_app(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        fields: &[&str],
    ) -> Result<Response<Success>, GraphError> {
        let q = [("subscribed_fields", fields.join(","))];
        self.post("subscribed_apps", auth, &format!("{}/subscribed_apps", seg(ig_id)?), &q, serde_json::json!({})).await
    }

    /// `GET /<IG_ID>/subscribed_apps`.
    pub async fn subscribed_apps(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
    ) -> Result<Response<Vec<SubscribedApp>>, GraphError> {
        let page: Response<Page<SubscribedApp>> =
            self.get("subscribed_apps", auth, &format!("{}/subscribed_apps", seg(ig_id)?), &[]).await?;
        Ok(page.map(|p| p.data))
    }

    /// `DELETE /<IG_ID>/subscribed_apps`: stops webhooks for the account.
    pub async fn unsubscribe_app(&self, auth: &AccountAuth, ig_id: &str) -> Result<Response<Success>, GraphError> {
        self.delete("subscribed_apps", auth, &format!("{}/subscribed_apps", seg(ig_id)?), &[]).await
    }
}

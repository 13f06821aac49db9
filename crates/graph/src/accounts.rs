//! Tokens: refreshing Instagram User tokens, and the Page-token look-ups of Facebook Login.

use crate::client::{AccountAuth, Body, GraphClient, Host, Response, seg};
use crate::error::GraphError;
use crate::paging::Listing;
use crate::token::AccessToken;
use futures::stream::{BoxStream, StreamExt};
use http::Method;
use serde::Deserialize;

/// `{access_token, token_type, expires_in}`; the token redacts itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefreshedToken {
    pub access_token: AccessToken,
    #[serde(default)]
    pub token_type: Option<String>,
    /// Seconds until the new token expires (about 60 days).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IgAccountRef {
    pub id: String,
}

/// A Page the Facebook user manages, with its Page token and linked Instagram account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PageAccount {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub access_token: Option<AccessToken>,
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub instagram_business_account: Option<IgAccountRef>,
}

/// The professional account behind a token (`GET /me?fields=…`), e.g. right after login.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccountInfo {
    pub id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub account_type: Option<String>,
    #[serde(default)]
    pub followers_count: Option<u64>,
    #[serde(default)]
    pub media_count: Option<u64>,
}

impl GraphClient {
    /// `GET /<IG_ID or me>?fields=user_id,username,name,account_type,followers_count,media_count`.
    pub async fn account_info(&self, auth: &AccountAuth, ig_id: &str) -> Result<Response<AccountInfo>, GraphError> {
        let q = [("fields", "user_id,username,name,account_type,followers_count,media_count".to_owned())];
        self.get("account", auth, seg(ig_id)?, &q).await
    }

    /// `GET graph.instagram.com/refresh_access_token?grant_type=ig_refresh_token`: a new
    /// long-lived token (the current one must be at least 24 h old and unexpired).
    pub async fn refresh_access_token(&self, token: &AccessToken) -> Result<Response<RefreshedToken>, GraphError> {
        let auth = AccountAuth { host: Host::Instagram, token: token.clone() };
        let url = format!("{}/refresh_access_token", self.config().instagram_base_url.trim_end_matches('/'));
        // Meta documents the token as a query parameter here; it is sent in the header too. The
        // URL never reaches a log or an error (transport errors are stripped of it).
        let q = [("grant_type", "ig_refresh_token".to_owned()), ("access_token", token.expose().to_owned())];
        self.call_url("refresh_access_token", Method::GET, &auth, &url, &q, Body::None).await
    }

    /// `GET graph.facebook.com/me/accounts?fields=name,access_token,tasks,instagram_business_account`
    /// with a Facebook User token: every Page, its Page token and its Instagram account.
    pub fn pages(&self, user_token: &AccessToken) -> BoxStream<'static, Result<PageAccount, GraphError>> {
        let auth = AccountAuth::facebook(user_token.clone());
        let listing = Listing {
            endpoint: "accounts",
            path: "me/accounts".into(),
            query: vec![("fields", "name,access_token,tasks,instagram_business_account".to_owned())],
        };
        self.list_items::<PageAccount>(&auth, listing).boxed()
    }

    /// `GET graph.facebook.com/<PAGE_ID>?fields=name,access_token,instagram_business_account`.
    pub async fn page(&self, user_token: &AccessToken, page_id: &str) -> Result<Response<PageAccount>, GraphError> {
        let auth = AccountAuth::facebook(user_token.clone());
        let q = [("fields", "name,access_token,instagram_business_account".to_owned())];
        self.get("page", &auth, seg(page_id)?, &q).await
    }
}

use crate::config::GraphConfig;
use crate::error::{ApiError, ErrorEnvelope, GraphError, TransportKind};
use crate::token::AccessToken;
use crate::usage::Usage;
use http::{HeaderValue, Method};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// Which of Meta's two hosts an account is reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Host {
    /// Instagram API with Instagram Login: `graph.instagram.com`, Instagram User token.
    Instagram,
    /// Instagram API with Facebook Login: `graph.facebook.com`, Page (or Facebook User) token.
    Facebook,
}

/// How to call on behalf of one account: which host, with which token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAuth {
    pub host: Host,
    pub token: AccessToken,
}

impl AccountAuth {
    pub fn instagram(token: impl Into<AccessToken>) -> Self {
        Self { host: Host::Instagram, token: token.into() }
    }

    pub fn facebook(token: impl Into<AccessToken>) -> Self {
        Self { host: Host::Facebook, token: token.into() }
    }
}

/// A successful answer with the usage headers that came with it.
#[derive(Debug, Clone)]
pub struct Response<T> {
    pub value: T,
    pub usage: Usage,
}

impl<T> Response<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Response<U> {
        Response { value: f(self.value), usage: self.usage }
    }
}

pub(crate) enum Body {
    None,
    Json(serde_json::Value),
}

/// The Graph API client. Cheap to clone (one connection pool shared by all clones).
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    config: Arc<GraphConfig>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient").field("config", &self.config).finish()
    }
}

impl GraphClient {
    pub fn new(config: GraphConfig) -> Result<Self, GraphError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .user_agent(concat!("igrelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::InvalidArgument(format!("cannot build HTTP client: {}", e.without_url())))?;
        Ok(Self { http, config: Arc::new(config) })
    }

    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    fn base(&self, host: Host) -> &str {
        match host {
            Host::Instagram => self.config.instagram_base_url.trim_end_matches('/'),
            Host::Facebook => self.config.facebook_base_url.trim_end_matches('/'),
        }
    }

    /// One Graph call: `/{version}/{path}` on the account's host.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: Method,
        auth: &AccountAuth,
        path: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<Response<T>, GraphError> {
        let url = format!("{}/{}/{}", self.base(auth.host), self.config.api_version, path);
        self.call_url(endpoint, method, auth, &url, query, body).await
    }

    /// `url` must not contain the token: it is the one part of a request that may be logged.
    #[tracing::instrument(name = "graph.call", skip_all, fields(endpoint, http.method = %method, http.status_code, graph.code))]
    pub(crate) async fn call_url<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: Method,
        auth: &AccountAuth,
        url: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<Response<T>, GraphError> {
        let span = tracing::Span::current();
        span.record("endpoint", endpoint);
        let mut auth_value = HeaderValue::from_str(&format!("Bearer {}", auth.token.expose())).map_err(|_| {
            GraphError::InvalidArgument("access token contains characters not allowed in a header".into())
        })?;
        auth_value.set_sensitive(true);
        let mut req = self.http.request(method, url).header(http::header::AUTHORIZATION, auth_value).query(query);
        if let Some(secret) = &self.config.app_secret {
            let proof =
                igrelay_core::webhook::hmac_sha256_hex(secret.expose().as_bytes(), auth.token.expose().as_bytes());
            req = req.query(&[("appsecret_proof", proof)]);
        }
        if let Body::Json(v) = body {
            req = req.header(http::header::CONTENT_TYPE, "application/json").body(v.to_string());
        }
        let resp = req.send().await.map_err(|e| transport(endpoint, e))?;
        let status = resp.status().as_u16();
        span.record("http.status_code", status);
        let usage = Usage::from_headers(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| transport(endpoint, e))?;
        if (200..300).contains(&status) {
            let value = serde_json::from_slice::<T>(&bytes)
                .map_err(|e| GraphError::Decode { endpoint, message: e.to_string() })?;
            return Ok(Response { value, usage });
        }
        let err = match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(env) => {
                let e = env.error;
                span.record("graph.code", e.code);
                // Meta's messages do not quote tokens today; scrub anyway so a change on their
                // side cannot put one in our logs.
                let scrub = |s: String| s.replace(auth.token.expose(), "***");
                GraphError::Api(Box::new(ApiError {
                    endpoint,
                    status,
                    code: e.code,
                    subcode: e.error_subcode,
                    message: scrub(e.message),
                    error_type: e.error_type,
                    fbtrace_id: e.fbtrace_id,
                    is_transient: e.is_transient.unwrap_or(false),
                    user_title: e.error_user_title.map(scrub),
                    user_msg: e.error_user_msg.map(scrub),
                    usage,
                    default_wait: Duration::from_secs(self.config.default_throttle_wait_s),
                }))
            }
            Err(_) => GraphError::Http { endpoint, status, usage },
        };
        tracing::debug!(error = %err, "graph call failed");
        Err(err)
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        auth: &AccountAuth,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Response<T>, GraphError> {
        self.call(endpoint, Method::GET, auth, path, query, Body::None).await
    }

    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        auth: &AccountAuth,
        path: &str,
        query: &[(&str, String)],
        body: serde_json::Value,
    ) -> Result<Response<T>, GraphError> {
        self.call(endpoint, Method::POST, auth, path, query, Body::Json(body)).await
    }

    pub(crate) async fn delete<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        auth: &AccountAuth,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Response<T>, GraphError> {
        self.call(endpoint, Method::DELETE, auth, path, query, Body::None).await
    }
}

/// Validates an id before it becomes a path segment, so an id taken from a webhook cannot
/// redirect a call to another path (`../`, `?`, `#`).
pub(crate) fn seg(id: &str) -> Result<&str, GraphError> {
    let ok = !id.is_empty()
        && id.len() <= 512
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'.' | b':'))
        && id != "."
        && id != "..";
    if ok { Ok(id) } else { Err(GraphError::InvalidArgument(format!("not a Graph id: {id:?}"))) }
}

fn transport(endpoint: &'static str, e: reqwest::Error) -> GraphError {
    let kind = if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Interrupted
    };
    // reqwest puts the URL in its Display; strip it, then append the causes (which never hold it).
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    GraphError::Transport { endpoint, kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert!(seg("17841400000000001").is_ok());
        assert!(seg("aWdfZAG1faXRlbToxOklHTWVzc2FnZAZDZD").is_ok());
        for bad in ["", "..", "a/b", "a?x=1", "a#b", "a b", "%2e"] {
            assert!(seg(bad).is_err(), "{bad}");
        }
    }
}

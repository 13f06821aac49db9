//! A minimal HTTP/1 client for tests and benchmarks on loopback.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use ::http::Method;

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build_http()
}

/// Sends a request with `headers` and `body`.
pub async fn send(
    client: &HttpClient,
    method: http::Method,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> anyhow::Result<Response> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = client.request(req.body(Full::new(body))?).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Response { status, headers, body })
}

pub async fn get(client: &HttpClient, url: &str) -> anyhow::Result<Response> {
    send(client, http::Method::GET, url, &[], Bytes::new()).await
}

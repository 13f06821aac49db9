//! HTTP glue: the Graph API handler (faults, limits, usage headers, Meta's error bodies) and
//! the admin routes.

use crate::graph::{GraphRequest, Params, class_of};
use crate::meta::MetaError;
use crate::state::{Fault, FaultKind, FaultPick, LimitClass, State};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Shared handle on the emulator's state.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub state: Mutex<State>,
    pub http: reqwest::Client,
}

impl App {
    /// Locks the state. A panic while locked poisons the mutex; the data is still consistent
    /// enough for an emulator, so keep serving.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn router(app: App) -> Router {
    crate::admin::routes().fallback(graph_handler).with_state(app)
}

fn is_version(s: &str) -> bool {
    s.strip_prefix('v').is_some_and(|r| {
        let mut parts = r.split('.');
        let major = parts.next().is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
        let minor = parts.next().is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
        major && minor && parts.next().is_none()
    })
}

fn params_from(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> (Params, Vec<(String, String)>) {
    let query: Vec<(String, String)> =
        uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let mut map = Map::new();
    for (k, v) in &query {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    if !body.is_empty() {
        let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let as_json = ct.contains("json") || (!ct.contains("form") && body.first() == Some(&b'{'));
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) if as_json => map.extend(o),
            _ => {
                for (k, v) in form_urlencoded::parse(body) {
                    map.insert(k.into_owned(), Value::String(v.into_owned()));
                }
            }
        }
    }
    (Params(map), query)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    matches!(scheme.to_ascii_lowercase().as_str(), "bearer" | "oauth").then(|| token.trim().to_owned())
}

struct Answer {
    status: u16,
    body: Value,
    app_usage: String,
    buc_usage: Option<String>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut resp = (StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST), axum::Json(self.body))
            .into_response();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.app_usage) {
            h.insert("x-app-usage", v);
        }
        if let Some(Ok(v)) = self.buc_usage.as_deref().map(HeaderValue::from_str) {
            h.insert("x-business-use-case-usage", v);
        }
        resp
    }
}

fn error_answer(st: &mut State, err: &MetaError, account: Option<&str>) -> Answer {
    let trace = st.fbtrace_id();
    let (app_usage, buc_usage) = st.usage_headers(account);
    Answer { status: err.status, body: err.body(&trace), app_usage, buc_usage }
}

async fn graph_handler(
    AxState(app): AxState<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_matches('/');
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.first().is_some_and(|s| is_version(s)) {
        segs.remove(0);
    }
    let (params, query) = params_from(&uri, &headers, &body);
    if segs.is_empty() || segs.len() > 2 {
        let mut st = app.lock();
        return error_answer(&mut st, &MetaError::unknown_path(), None).into_response();
    }
    let token = params.str("access_token").or_else(|| bearer(&headers));
    let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let req = GraphRequest {
        method,
        node: segs[0].to_owned(),
        edge: segs.get(1).map(|s| (*s).to_owned()),
        params,
        token,
        self_url: format!("http://{host}{}", uri.path()),
        query,
    };

    // Faults are decided first (and latency added) without holding the lock while sleeping.
    let pick = {
        let mut st = app.lock();
        if st.faults.is_empty() {
            FaultPick::default()
        } else {
            match st.route(&req) {
                Ok(r) => st.pick_fault(r.endpoint, r.account.as_deref()),
                Err(e) => st.pick_fault(e.endpoint, e.account.as_deref()),
            }
        }
    };
    if pick.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(pick.latency_ms)).await;
    }
    let lose_answer = pick.fired.as_ref().is_some_and(|f| f.kind == FaultKind::DropAnswer);
    if let Some(f) = pick.fired.filter(|f| f.kind != FaultKind::DropAnswer) {
        return fault_answer(&app, &req, &f);
    }
    let answer = carry_out(&app, &req);
    // The call is done (stored, echoed, counted); only its answer is late or lost.
    if pick.answer_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(pick.answer_delay_ms)).await;
    }
    if lose_answer {
        return dropped_connection();
    }
    answer
}

/// A fault that fires instead of the call: nothing is carried out.
fn fault_answer(app: &App, req: &GraphRequest, f: &Fault) -> Response {
    let mut st = app.lock();
    let routed = st.route(req).ok();
    let endpoint = routed.as_ref().map(|r| r.endpoint).unwrap_or("unknown");
    let account = routed.as_ref().and_then(|r| r.account.clone());
    st.record_call(endpoint, account.as_deref(), true, false);
    match f.kind {
        FaultKind::Error => {
            let err = f.error.clone().unwrap_or_else(|| {
                MetaError::new(2, None, "An unexpected error has occurred. Please retry your request later.")
            });
            error_answer(&mut st, &err, account.as_deref()).into_response()
        }
        FaultKind::Http5xx => {
            let status = StatusCode::from_u16(f.status.unwrap_or(503)).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            (status, [(http::header::CONTENT_TYPE, "text/html")], "<html><body>Service Unavailable</body></html>")
                .into_response()
        }
        FaultKind::Drop | FaultKind::DropAnswer => dropped_connection(),
    }
}

/// An answer whose body fails: hyper aborts the connection, so the client gets no usable answer.
fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("dropped by fault injection"))
    });
    Response::new(Body::from_stream(stream))
}

/// Routes, rate-limits and executes the call, and records it.
fn carry_out(app: &App, req: &GraphRequest) -> Response {
    let mut st = app.lock();
    let routed = match st.route(req) {
        Ok(r) => r,
        Err(e) => {
            st.record_call(e.endpoint, e.account.as_deref(), true, false);
            tracing::debug!(endpoint = e.endpoint, code = e.error.code, "graph call rejected");
            return error_answer(&mut st, &e.error, e.account.as_deref()).into_response();
        }
    };
    st.take_app();
    let account = routed.account.clone();
    if let Some(a) = account.as_deref() {
        let class = class_of(routed.endpoint, &req.params);
        if !st.take(a, class) {
            st.record_call(routed.endpoint, Some(a), true, true);
            let err = if class == LimitClass::Buc { MetaError::buc_throttled() } else { MetaError::rate_limited() };
            return error_answer(&mut st, &err, Some(a)).into_response();
        }
    }
    let result = st.execute(req, &routed);
    st.record_call(routed.endpoint, account.as_deref(), result.is_err(), false);
    match result {
        Ok(body) => {
            let (app_usage, buc_usage) = st.usage_headers(account.as_deref());
            Answer { status: 200, body, app_usage, buc_usage }.into_response()
        }
        Err(e) => error_answer(&mut st, &e, account.as_deref()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(is_version("v23.0"));
        assert!(is_version("v9.10"));
        assert!(!is_version("v23"));
        assert!(!is_version("me"));
        assert!(!is_version("v.1"));
    }
}

//! Tokens never reach logs or traces, whatever happens to the call.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use igrelay_graph::messaging::SendRequest;
use igrelay_graph::{AccessToken, AccountAuth, GraphClient, GraphConfig};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_level_output_never_contains_the_token() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let c = start_with(|cfg| cfg.require_appsecret_proof = true).await;
    let secret = AccessToken::new("emulator-app-secret");
    let client =
        GraphClient::new(GraphConfig { app_secret: Some(secret), ..GraphConfig::single_host(c.emu.base_url.clone()) })
            .unwrap();
    let (user, _) = c.dm("6100000000003001", "hi").await;
    client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "ok")).await.unwrap();
    let bad = AccountAuth::instagram("IGAAsupersecretbadtoken");
    client.send_message(&bad, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();
    c.emu.admin.fault(&json!({"endpoint": "messages", "times": 1, "kind": "drop"})).await.unwrap();
    client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();
    let now = c.emu.admin.get("/_admin/clock").await.unwrap()["now_ms"].as_i64().unwrap();
    c.emu.admin.post("/_admin/tokens", &json!({"token": c.seed.token, "issued_ms": now - 90_000_000})).await.unwrap();
    client.refresh_access_token(&AccessToken::new(c.seed.token.clone())).await.unwrap();
    let nowhere = GraphClient::new(GraphConfig::single_host(closed_port_url().await)).unwrap();
    nowhere.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();

    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(out.contains("graph.call"), "the client traced its calls:\n{out}");
    for secret in [c.seed.token.as_str(), "IGAAsupersecretbadtoken", "emulator-app-secret"] {
        assert!(!out.contains(secret), "{secret} leaked into the trace output");
    }
}

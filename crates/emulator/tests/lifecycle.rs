// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use igrelay_emulator::EmulatorConfig;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn run_stops_cleanly_on_shutdown() {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(igrelay_emulator::run(EmulatorConfig::for_tests(), shutdown.clone()));
    tokio::task::yield_now().await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn config_deserialises_with_defaults() {
    let defaults = EmulatorConfig::default();
    // A value that differs from the default, so the assertion shows the key was read.
    assert_ne!(defaults.rate_limits.send_per_s, 100);
    let cfg: EmulatorConfig = serde_json::from_str(r#"{"listen":"127.0.0.1:0","rate_limits":{"send_per_s":100},"webhooks":{"callback_url":"http://127.0.0.1:8080/webhooks/instagram"}}"#).unwrap();
    assert_eq!(cfg.rate_limits.send_per_s, 100);
    assert_eq!(cfg.webhooks.callback_url.as_deref(), Some("http://127.0.0.1:8080/webhooks/instagram"));
    assert_eq!(cfg.listen.port(), 0);
    // Keys not given keep Meta's documented values (README table), not zero.
    assert_eq!(cfg.rate_limits.conversations_per_s, 2);
    assert_eq!(cfg.rate_limits.send_media_per_s, 10);
    assert_eq!(cfg.rate_limits.private_replies_per_h, 750);
    assert_eq!(cfg.webhooks.timeout_ms, 5000);
    assert_eq!(cfg.accounts.len(), 1);
    assert_eq!(cfg.accounts[0].ig_id, "17841400000000001");
    let err = serde_json::from_str::<EmulatorConfig>(r#"{"no_such_key":1}"#).unwrap_err().to_string();
    assert!(err.contains("no_such_key"), "the error names the unknown key: {err}");
}

#[tokio::test]
async fn meta_errors_for_unknown_paths_and_missing_tokens() {
    let emu = igrelay_emulator::spawn(EmulatorConfig::for_tests()).await.unwrap();
    let http = reqwest::Client::new();
    let v: serde_json::Value = serde_json::from_slice(
        &http.get(format!("{}/v23.0/me", emu.base_url)).send().await.unwrap().bytes().await.unwrap(),
    )
    .unwrap();
    assert_eq!(v["error"]["code"], 104);
    let v: serde_json::Value = serde_json::from_slice(
        &http
            .get(format!("{}/v23.0/a/b/c?access_token=IGAAemulatortoken1", emu.base_url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["error"]["code"], 2500);
    let v: serde_json::Value = serde_json::from_slice(
        &http
            .get(format!("{}/v23.0/me?fields=id,username&access_token=IGAAemulatortoken1", emu.base_url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["id"], "17841400000000001");
    assert_eq!(v["username"], "emulated.business");
    for path in ["/healthz", "/readyz"] {
        assert!(http.get(format!("{}{path}", emu.base_url)).send().await.unwrap().status().is_success());
    }
    let metrics = http.get(format!("{}/metrics", emu.base_url)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("igrelay_emulator_graph_calls_total{endpoint=\"account\",account=\"17841400000000001\"} 1"),
        "{metrics}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn bench_entry_point_reports_throughput() {
    let r = igrelay_emulator::bench_requests_per_s(200, 4).await.unwrap();
    assert_eq!(r.requests, 200);
    assert_eq!(r.errors, 0);
    assert!(r.requests_per_s > 0.0);
}

/// The admin API reads JSON whatever the content type says: `curl -d '{…}'`, as `igrelay dev`
/// suggests, sends a form content type.
#[tokio::test]
async fn admin_bodies_are_json_whatever_the_content_type() {
    let emu = igrelay_emulator::spawn(EmulatorConfig::for_tests()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/_admin/simulate/message", emu.base_url);
    let r = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"text":"hello"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(v["mid"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    let r = http.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("the body is not JSON"), "{v}");
}

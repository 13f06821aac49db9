//! The real binary, as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop the test loudly

use std::time::Duration;

use igrelay_e2e::{Running, free_port};
use igrelay_testkit::http;
use igrelay_testkit::{Nats, webhook};

const SECRET: &str = "e2e-secret";

async fn wait_ready(client: &http::HttpClient, base: &str) {
    for _ in 0..200 {
        if http::get(client, &format!("{base}/readyz")).await.is_ok_and(|r| r.status == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become ready");
}

#[tokio::test]
async fn ingest_binary_stores_a_signed_webhook_and_stops_cleanly_on_sigterm() {
    let nats = Nats::start().await.unwrap();
    let port = free_port().unwrap();
    let ops_port = free_port().unwrap();
    let mut igrelay = Running::start(
        &["ingest"],
        &[
            ("IGRELAY_NATS__URL", nats.url()),
            ("IGRELAY_INGEST__LISTEN", format!("127.0.0.1:{port}")),
            ("IGRELAY_INGEST__OPS_LISTEN", format!("127.0.0.1:{ops_port}")),
            ("IGRELAY_INGEST__VERIFY_TOKEN", "vt".into()),
            ("IGRELAY_INGEST__APP_SECRETS", format!("[\"{SECRET}\"]")),
        ],
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = http::client();
    wait_ready(&client, &format!("http://127.0.0.1:{ops_port}")).await;

    // A current time: a delivery older than the events stream's duplicate window is dropped.
    let now = igrelay_core::time::now_ms();
    let body = webhook::encode(&webhook::text_message("17841400000000001", "55", "m-e2e", "hello", now));
    let r = http::send(
        &client,
        http::Method::POST,
        &format!("{base}/webhooks/instagram"),
        &webhook::signed_headers(SECRET, &body),
        body,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let events = igrelay_testkit::events::read_all(&nats.js, "ig.v1.evt.17841400000000001.message").await.unwrap();
    assert_eq!(events.len(), 1);

    assert_eq!(igrelay.terminate(Duration::from_secs(10)).unwrap(), Some(0), "SIGTERM exits 0");
}

#[tokio::test]
async fn invalid_configuration_names_the_key() {
    let out = std::process::Command::new(igrelay_e2e::igrelay_bin().unwrap())
        .args(["ingest"])
        .env("IGRELAY_INGEST__VERIFY_TOKEN", "vt")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ingest.app_secrets"), "{stderr}");

    let out = std::process::Command::new(igrelay_e2e::igrelay_bin().unwrap())
        .args(["config", "--set", "ingest.nope=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[tokio::test]
async fn dev_starts_nats_and_ingest_and_prints_the_urls() {
    let store = tempfile::tempdir().unwrap();
    let mut dev = Running::start(
        &[
            "dev",
            "--nats-port",
            "0",
            "--nats-store",
            store.path().to_str().unwrap(),
            "--set",
            "ingest.listen=\"127.0.0.1:0\"",
        ],
        &[],
    )
    .unwrap();
    let line = dev.line_containing("webhook callback", Duration::from_secs(30)).expect("dev prints the webhook URL");
    let url = line.split_whitespace().last().unwrap().to_owned();
    // Printed right after the callback: the ops listener, not the webhook port.
    let ops = dev.line_containing("health / metrics", Duration::from_secs(5)).expect("dev prints the ops URLs");
    let readyz = ops.split_whitespace().find(|w| w.ends_with("/readyz")).expect("a /readyz URL").to_owned();
    assert!(!readyz.starts_with(url.trim_end_matches("/webhooks/instagram")), "ops on the webhook port: {ops}");
    assert!(
        dev.line_containing("app secret", Duration::from_secs(5)).is_some(),
        "dev prints the development app secret"
    );
    let client = http::client();
    wait_ready(&client, readyz.trim_end_matches("/readyz")).await;

    let body = webhook::encode(&webhook::text_message("17841400000000001", "55", "m-dev", "hello", 1_743_480_368_714));
    let r =
        http::send(&client, http::Method::POST, &url, &webhook::signed_headers("igrelay-dev-app-secret", &body), body)
            .await
            .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let challenge = http::get(
        &client,
        &format!("{url}?hub.mode=subscribe&hub.challenge=42&hub.verify_token=igrelay-dev-verify-token"),
    )
    .await
    .unwrap();
    assert_eq!(challenge.text(), "42");
    assert_eq!(dev.terminate(Duration::from_secs(15)).unwrap(), Some(0));
}

//! The real binary, as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop the test loudly

use std::time::Duration;

use igrelay_e2e::{Running, logged_addr, logged_field};
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
    // Port 0, read back from the log: a port picked beforehand may be taken by then.
    let mut igrelay = Running::start(
        &["ingest"],
        &[
            ("IGRELAY_NATS__URL", nats.url()),
            ("IGRELAY_INGEST__LISTEN", "127.0.0.1:0".into()),
            ("IGRELAY_INGEST__OPS_LISTEN", "127.0.0.1:0".into()),
            ("IGRELAY_INGEST__VERIFY_TOKEN", "vt".into()),
            ("IGRELAY_INGEST__APP_SECRETS", format!("[\"{SECRET}\"]")),
            ("RUST_LOG", "warn,igrelay_ingest=info".into()),
        ],
    )
    .unwrap();
    let line = igrelay.log_containing("ingest listening", Duration::from_secs(30)).expect("ingest logs its address");
    let base = format!("http://{}", logged_addr(&line).expect("an addr field"));
    let client = http::client();
    let ops = logged_field(&line, "ops_addr").expect("an ops_addr field");
    wait_ready(&client, &format!("http://{ops}")).await;

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
    let mut dev = start_dev(store.path(), &[], &[]);
    let line = dev.line_containing("webhook callback", Duration::from_secs(30)).expect("dev prints the webhook URL");
    let url = line.split_whitespace().last().unwrap().to_owned();
    let base = url.trim_end_matches("/webhooks/instagram").to_owned();
    // Printed right after the callback: the ops listener, not the webhook port.
    let ops = dev.line_containing("health / metrics", Duration::from_secs(5)).expect("dev prints the ops URLs");
    let readyz = ops.split_whitespace().find(|w| w.ends_with("/readyz")).expect("a /readyz URL").to_owned();
    assert!(!readyz.starts_with(&base), "ops on the webhook port: {ops}");
    assert!(
        dev.line_containing("app secret", Duration::from_secs(5)).is_some(),
        "dev prints the development app secret"
    );
    let client = http::client();
    wait_ready(&client, readyz.trim_end_matches("/readyz")).await;

    let body = webhook::encode(&webhook::text_message(
        "17841400000000001",
        "55",
        "m-dev",
        "hello",
        igrelay_core::time::now_ms(),
    ));
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
    let dispatch = dev.line_containing("dispatch ", Duration::from_secs(5)).expect("dev prints dispatch's address");
    let dispatch = dispatch.split_whitespace().nth(1).unwrap().trim_end_matches("/readyz").to_owned();
    wait_ready(&client, &dispatch).await;
    let emulator = dev.line_containing("graph API emulator", Duration::from_secs(5)).expect("dev prints the emulator");
    let emulator = emulator.split_whitespace().nth(3).unwrap().to_owned();
    // Every listener took the free port asked for, none a fixed laptop port.
    for addr in [&base, &dispatch, &emulator] {
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        assert!(![8080, 8081, 8082, 8089, 50051].contains(&port), "{addr} is a fixed port");
    }
    assert_eq!(dev.terminate(Duration::from_secs(15)).unwrap(), Some(0));
}

/// `igrelay dev` with every listener on a free port (nothing fixed that another test or a
/// running dev could hold).
fn start_dev(store: &std::path::Path, extra: &[&str], env: &[(&str, String)]) -> Running {
    let sets: Vec<String> = ["ingest.listen", "dispatch.listen", "enrich.listen", "gateway.listen", "emulator.listen"]
        .iter()
        .map(|key| format!("{key}=\"127.0.0.1:0\""))
        .collect();
    let mut args = vec!["dev", "--nats-port", "0", "--nats-store", store.to_str().unwrap()];
    for set in &sets {
        args.push("--set");
        args.push(set);
    }
    args.extend_from_slice(extra);
    Running::start(&args, env).unwrap()
}

/// `igrelay dev` exactly as `deploy/local/run.sh` starts it: no listener set, so every service
/// takes its laptop default (loopback; a busy port falls back to a free one).
#[tokio::test]
async fn dev_starts_with_its_defaults() {
    let store = tempfile::tempdir().unwrap();
    let mut dev =
        Running::start(&["dev", "--nats-port", "0", "--nats-store", store.path().to_str().unwrap()], &[]).unwrap();
    let gateway = dev.line_containing("gRPC gateway", Duration::from_secs(60));
    assert!(gateway.is_some(), "dev with its defaults did not start every service");
    assert!(gateway.unwrap().contains("127.0.0.1:"), "the gateway listens on loopback");
    assert_eq!(dev.terminate(Duration::from_secs(15)).unwrap(), Some(0));
}

#[tokio::test]
async fn dev_exits_non_zero_naming_a_service_that_crashed() {
    let store = tempfile::tempdir().unwrap();
    // The gateway's ops port is taken: the gateway fails once NATS is up; the rest would run.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ops = format!("gateway.ops_listen=\"{}\"", taken.local_addr().unwrap());
    let mut dev = start_dev(store.path(), &["--set", &ops], &[]);
    let code = dev.wait_exit(Duration::from_secs(60)).expect("dev exits when a service crashes");
    assert_ne!(code, Some(0));
    let named = dev.log_containing("gateway failed", Duration::from_secs(5));
    assert!(named.is_some(), "the error names the service");
}

#[tokio::test]
async fn dev_stops_its_nats_server_on_a_second_signal() {
    let store = tempfile::tempdir().unwrap();
    let mut dev = start_dev(store.path(), &[], &[("RUST_LOG", "warn,igrelay_runtime=info".into())]);
    let nats = dev.line_containing("NATS ", Duration::from_secs(30)).expect("dev prints the NATS URL");
    let nats_addr = nats.split_whitespace().last().unwrap().trim_start_matches("nats://").to_owned();
    dev.line_containing("gRPC gateway", Duration::from_secs(30)).expect("dev is up");
    assert!(std::net::TcpStream::connect(&nats_addr).is_ok(), "its nats-server runs");

    dev.signal_term().unwrap();
    dev.log_containing("shutdown requested", Duration::from_secs(10)).expect("the first signal is seen");
    // The second may find dev already gone (a graceful stop is quick): either way, no
    // nats-server may be left behind.
    let _ = dev.signal_term();
    let code = dev.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(matches!(code, Some(0) | Some(130)), "{code:?}");
    let mut closed = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(&nats_addr).is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the nats-server dev started at {nats_addr} still runs");
}

#[tokio::test]
async fn config_output_never_shows_a_secret() {
    let key = "c2VjcmV0LXRva2VuLWtleS1ieXRlcy0zMi1ieXRlcyE=";
    let out = std::process::Command::new(igrelay_e2e::igrelay_bin().unwrap())
        .args(["config"])
        .env("IGRELAY_ACCOUNTS__TOKEN_KEYS", format!("[{{id=\"k1\",key=\"{key}\"}}]"))
        .env("IGRELAY_NATS__URL", "nats://relay:nats-url-password@nats:4222")
        .env("IGRELAY_NATS__PASSWORD", "nats-password")
        .env("IGRELAY_NATS__USER", "relay")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("id = \"k1\""), "the key is there: {stdout}");
    for secret in [key, "c2VjcmV0", "nats-url-password", "nats-password"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
    }
}

#[tokio::test]
async fn a_malformed_secret_in_the_environment_is_named_never_echoed() {
    // Wrongly quoted: the closing quote and bracket are missing.
    let out = std::process::Command::new(igrelay_e2e::igrelay_bin().unwrap())
        .args(["config"])
        .env("IGRELAY_ACCOUNTS__TOKEN_KEYS", "[{id=\"k1\",key=\"c2VjcmV0LWtleS1ieXRlcw==")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Named as the variable is: ACCOUNTS.TOKEN_KEYS in IGRELAY_ environment variable(s).
    assert!(stderr.contains("TOKEN_KEYS") && stderr.contains("IGRELAY_"), "{stderr}");
    assert!(!stderr.contains("c2VjcmV0"), "{stderr}");
}

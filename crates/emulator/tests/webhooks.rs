//! The webhook sender against a real HTTP receiver on loopback.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use http::{HeaderMap, StatusCode};
use igrelay_emulator::{EmulatorConfig, EmulatorHandle, simulate_event};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (signature header, body) of each POST received.
type Received = Vec<(Option<String>, Vec<u8>)>;

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Received>>,
    fail_first: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()).map(str::to_owned);
    r.got.lock().unwrap().push((sig, body.to_vec()));
    if r.fail_first.load(Ordering::SeqCst) > 0 {
        r.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = Router::new().route("/webhooks/instagram", post(receive)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/instagram", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

/// Waits (bounded) until `n` POSTs arrived; the bound is a safety net, not an assertion on speed.
async fn wait_for(r: &Receiver, n: usize) -> Received {
    for _ in 0..500 {
        if r.got.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.got.lock().unwrap().clone()
}

async fn start(f: impl FnOnce(&mut EmulatorConfig), url: &str) -> (EmulatorHandle, String) {
    let mut cfg = EmulatorConfig::for_tests();
    cfg.webhooks.callback_url = Some(url.to_owned());
    f(&mut cfg);
    let ig = cfg.accounts[0].ig_id.clone();
    (igrelay_emulator::spawn(cfg).await.unwrap(), ig)
}

#[tokio::test]
async fn a_simulated_dm_arrives_signed_and_escaped_like_meta() {
    let (r, url) = receiver().await;
    let (emu, ig) = start(|_| {}, &url).await;
    let sent = emu.admin.simulate_dm(&ig, "6100000000001001", "äöå 😀").await.unwrap();
    let got = wait_for(&r, 1).await;
    assert_eq!(got.len(), 1);
    let (sig, body) = &got[0];
    // Signed over the exact bytes with the app secret.
    igrelay_core::webhook::verify([b"emulator-app-secret".as_slice()], sig.as_deref().map(str::as_bytes), body)
        .unwrap();
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.is_ascii(), "non-ASCII must be escaped");
    assert!(text.contains(r"\u00e4\u00f6\u00e5 \ud83d\ude00"));
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["object"], "instagram");
    let entry = &v["entry"][0];
    assert_eq!(entry["id"], ig);
    let item = &entry["messaging"][0];
    assert_eq!(item["sender"]["id"], "6100000000001001");
    assert_eq!(item["recipient"]["id"], ig);
    assert_eq!(item["message"]["mid"], sent["mid"]);
    assert_eq!(item["message"]["text"], "äöå 😀");
    assert!(item["timestamp"].as_i64().unwrap() > 1_000_000_000_000, "messaging timestamps are in ms");
    let d = emu.admin.deliveries().await.unwrap();
    assert_eq!(d["deliveries"][0]["status"], 200);
    assert_eq!(d["deliveries"][0]["ok"], true);
}

#[tokio::test]
async fn every_simulated_user_action_has_metas_payload() {
    let (r, url) = receiver().await;
    let (emu, ig) = start(|_| {}, &url).await;
    let u = "6100000000001002";
    let dm = emu
        .admin
        .simulate(
            "message",
            &json!({"from": u, "attachments": [{"type": "image", "url": "https://cdn.example/p.jpg"}]}),
        )
        .await
        .unwrap();
    let mid = dm["mid"].as_str().unwrap();
    emu.admin.simulate("reaction", &json!({"from": u, "mid": mid, "reaction": "love"})).await.unwrap();
    emu.admin.simulate("reaction", &json!({"from": u, "mid": mid, "action": "unreact"})).await.unwrap();
    emu.admin
        .simulate("postback", &json!({"from": u, "title": "What is your favorite sport?", "payload": "ICE_1"}))
        .await
        .unwrap();
    emu.admin.simulate("referral", &json!({"from": u, "ref": "summer", "source": "IGME"})).await.unwrap();
    emu.admin.simulate("read", &json!({"from": u, "mid": mid})).await.unwrap();
    emu.admin
        .simulate("message", &json!({"from": u, "text": "yes", "quick_reply_payload": "QR_YES", "reply_to_mid": mid}))
        .await
        .unwrap();
    let c = emu.admin.simulate("comment", &json!({"from": u, "text": "nice"})).await.unwrap();
    emu.admin.simulate("mention", &json!({"media_id": c["media_id"], "comment_id": c["comment_id"]})).await.unwrap();
    let got = wait_for(&r, 9).await;
    assert_eq!(got.len(), 9);
    let items: Vec<Value> =
        got.iter().map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["entry"][0].clone()).collect();
    let m = |i: usize| items[i]["messaging"][0].clone();
    assert_eq!(
        m(0)["message"]["attachments"][0],
        json!({"type": "image", "payload": {"url": "https://cdn.example/p.jpg"}})
    );
    assert_eq!(m(1)["reaction"], json!({"mid": mid, "action": "react", "reaction": "love", "emoji": "❤"}));
    assert_eq!(m(2)["reaction"], json!({"mid": mid, "action": "unreact"}));
    assert_eq!(m(3)["postback"]["payload"], "ICE_1");
    assert!(m(3)["postback"]["mid"].is_string());
    assert_eq!(m(4)["referral"], json!({"ref": "summer", "source": "IGME", "type": "OPEN_THREAD"}));
    assert_eq!(m(5)["read"], json!({"mid": mid}));
    assert_eq!(m(6)["message"]["quick_reply"], json!({"payload": "QR_YES"}));
    assert_eq!(m(6)["message"]["reply_to"], json!({"mid": mid}));
    let change = &items[7]["changes"][0];
    assert_eq!(change["field"], "comments");
    assert_eq!(change["value"]["text"], "nice");
    assert_eq!(change["value"]["from"]["id"], u);
    assert_eq!(change["value"]["media"]["media_product_type"], "FEED");
    assert!(items[7]["time"].as_i64().unwrap() < 100_000_000_000, "changes time is in seconds");
    assert_eq!(
        items[8]["changes"][0],
        json!({"field": "mentions", "value": {"media_id": c["media_id"], "comment_id": c["comment_id"]}})
    );
    assert_eq!(items[0]["id"], ig);
}

#[tokio::test]
async fn non_2xx_answers_are_retried_like_meta() {
    let (r, url) = receiver().await;
    r.fail_first.store(2, Ordering::SeqCst);
    let (emu, ig) = start(|_| {}, &url).await;
    emu.admin.simulate_dm(&ig, "6100000000001003", "retry me").await.unwrap();
    let got = wait_for(&r, 3).await;
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|g| g.1 == got[0].1), "every retry sends the same bytes");
    let mut d = Value::Null;
    for _ in 0..100 {
        d = emu.admin.deliveries().await.unwrap();
        if d["deliveries"].as_array().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let d = d["deliveries"].as_array().unwrap().clone();
    assert_eq!(d.iter().map(|x| x["status"].as_u64().unwrap()).collect::<Vec<_>>(), vec![500, 500, 200]);
    assert_eq!(d.iter().map(|x| x["attempt"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[tokio::test]
async fn updates_can_be_batched_into_one_post() {
    let (r, url) = receiver().await;
    let (emu, ig) = start(
        |c| {
            c.webhooks.batch_max = 10;
            c.webhooks.batch_window_ms = 200;
        },
        &url,
    )
    .await;
    // Queued in one go, so they meet in one batch.
    emu.with_state(|s| {
        for i in 0..3 {
            simulate_event(s, "message", &json!({"from": format!("610000000000110{i}"), "text": format!("m{i}")}))
                .unwrap();
        }
        simulate_event(s, "comment", &json!({"from": "6100000000001100", "text": "c"})).unwrap();
    });
    let got = wait_for(&r, 1).await;
    assert_eq!(got.len(), 1);
    let v: Value = serde_json::from_slice(&got[0].1).unwrap();
    let entries = v["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], ig);
    let texts: Vec<&str> =
        entries[0]["messaging"].as_array().unwrap().iter().map(|m| m["message"]["text"].as_str().unwrap()).collect();
    assert_eq!(texts, vec!["m0", "m1", "m2"]);
    assert_eq!(entries[1]["changes"][0]["field"], "comments");
}

#[tokio::test]
async fn messages_sent_through_the_api_are_echoed() {
    let (r, url) = receiver().await;
    let (emu, ig) = start(|_| {}, &url).await;
    emu.admin.simulate_dm(&ig, "6100000000001200", "hi").await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v23.0/{ig}/messages", emu.base_url))
        .bearer_auth("IGAAemulatortoken1")
        .header("content-type", "application/json")
        .body(json!({"recipient": {"id": "6100000000001200"}, "message": {"text": "Hello World!"}}).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let mid = serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).unwrap()["message_id"].clone();
    let got = wait_for(&r, 2).await;
    let echo: Value = serde_json::from_slice(&got[1].1).unwrap();
    let item = &echo["entry"][0]["messaging"][0];
    assert_eq!(item["sender"]["id"], ig);
    assert_eq!(item["recipient"]["id"], "6100000000001200");
    assert_eq!(item["message"]["is_echo"], true);
    assert_eq!(item["message"]["mid"], mid);
    assert_eq!(item["message"]["text"], "Hello World!");
}

#[tokio::test]
async fn no_callback_means_recorded_not_sent_and_the_callback_can_be_set_later() {
    let mut cfg = EmulatorConfig::for_tests();
    cfg.webhooks.callback_url = None;
    let ig = cfg.accounts[0].ig_id.clone();
    let emu = igrelay_emulator::spawn(cfg).await.unwrap();
    emu.admin.simulate_dm(&ig, "6100000000001300", "lost").await.unwrap();
    for _ in 0..500 {
        if !emu.admin.deliveries().await.unwrap()["deliveries"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (r, url) = receiver().await;
    emu.admin.post("/_admin/webhook", &json!({"callback_url": url})).await.unwrap();
    emu.admin.simulate_dm(&ig, "6100000000001300", "found").await.unwrap();
    let got = wait_for(&r, 1).await;
    assert_eq!(got.len(), 1);
    let d = emu.admin.deliveries().await.unwrap();
    assert_eq!(d["deliveries"][0]["error"], "no callback configured");
}

#[tokio::test]
async fn the_get_handshake_is_sent_like_meta() {
    use axum::extract::Query;
    use std::collections::HashMap;
    async fn challenge(Query(q): Query<HashMap<String, String>>) -> (StatusCode, String) {
        if q.get("hub.mode").map(String::as_str) == Some("subscribe")
            && q.get("hub.verify_token").map(String::as_str) == Some("emulator-verify-token")
        {
            (StatusCode::OK, q.get("hub.challenge").cloned().unwrap_or_default())
        } else {
            (StatusCode::FORBIDDEN, String::new())
        }
    }
    let app = Router::new().route("/webhooks/instagram", axum::routing::get(challenge));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/instagram", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (emu, _) = start(|_| {}, &url).await;
    let v = emu.admin.post("/_admin/webhook/verify", &json!({})).await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let (emu2, _) = start(|c| c.verify_token = "other".into(), &url).await;
    let v = emu2.admin.post("/_admin/webhook/verify", &json!({})).await.unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["status"], 403);
}

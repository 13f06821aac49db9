//! Contract of the fault injection that plays "Meta carried the call out but the answer was
//! lost" (`drop_answer`, `answer_delay_ms`), and of the admin API's refusal of cross-site
//! browser requests.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use igrelay_emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::{Value, json};

const USER: &str = "6100000000005001";

async fn start() -> (EmulatorHandle, String, String) {
    let cfg = EmulatorConfig::for_tests();
    let s = cfg.accounts[0].clone();
    let emu = igrelay_emulator::spawn(cfg).await.unwrap();
    emu.admin.simulate_dm(&s.ig_id, USER, "hi").await.unwrap();
    (emu, s.ig_id, s.token)
}

/// Sends a text through the Send API; the answer's JSON, or the transport error.
async fn send(base: &str, ig: &str, token: &str, text: &str) -> Result<(u16, Value), reqwest::Error> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v23.0/{ig}/messages?access_token={token}"))
        .header("content-type", "application/json")
        .body(json!({"recipient": {"id": USER}, "message": {"text": text}}).to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Texts the account sent to `USER`, as the emulator stored them.
async fn sent_texts(emu: &EmulatorHandle, ig: &str) -> Vec<String> {
    let v = emu.admin.messages(ig, USER).await.unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["inbound"] == false)
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn messages_calls(emu: &EmulatorHandle) -> u64 {
    emu.admin.calls_to("messages").await.unwrap()
}

#[tokio::test]
async fn drop_answer_carries_the_call_out_then_loses_the_answer() {
    let (emu, ig, token) = start().await;
    emu.admin.fault(&json!({"endpoint": "messages", "kind": "drop_answer", "times": 1})).await.unwrap();
    let lost = send(&emu.base_url, &ig, &token, "sent, answer lost").await;
    assert!(lost.is_err(), "the client gets no answer: {lost:?}");
    // Meta did it: the message is in the conversation, the echo webhook went out, the call counts.
    assert_eq!(sent_texts(&emu, &ig).await, ["sent, answer lost"]);
    assert_eq!(messages_calls(&emu).await, 1);
    let echoes = emu.admin.get("/_admin/webhooks/events").await.unwrap();
    let echoed = echoes["events"].as_array().unwrap().iter().any(|e| e.to_string().contains("sent, answer lost"));
    assert!(echoed, "the echo of the carried-out call was produced: {echoes}");
    // `times: 1` is spent: the next call answers.
    let (status, body) = send(&emu.base_url, &ig, &token, "answered").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["message_id"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(sent_texts(&emu, &ig).await, ["sent, answer lost", "answered"]);
}

#[tokio::test]
async fn answer_delay_holds_the_answer_of_a_call_already_carried_out() {
    let (emu, ig, token) = start().await;
    emu.admin.fault(&json!({"endpoint": "messages", "answer_delay_ms": 3000})).await.unwrap();
    let base = emu.base_url.clone();
    let (ig2, token2) = (ig.clone(), token.clone());
    let call = tokio::spawn(async move { send(&base, &ig2, &token2, "slow answer").await });
    // The message is stored while the caller still waits for the answer.
    let mut seen = false;
    for _ in 0..500 {
        if sent_texts(&emu, &ig).await == ["slow answer"] {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the call is carried out before its answer");
    assert!(!call.is_finished(), "the answer is held back after the call was carried out");
    let (status, body) = call.await.unwrap().unwrap();
    assert_eq!(status, 200, "a delayed answer is still the real answer: {body}");
    let stored = emu.admin.messages(&ig, USER).await.unwrap();
    let mid = stored["messages"].as_array().unwrap().iter().find(|m| m["inbound"] == false).unwrap()["mid"].clone();
    assert_eq!(body["message_id"], mid);
}

#[tokio::test]
async fn drop_answer_after_a_delay_and_faults_that_cannot_fire_are_refused() {
    let (emu, ig, token) = start().await;
    let bad = emu.admin.fault(&json!({"endpoint": "messages", "kind": "drop_answer"})).await;
    let err = bad.unwrap_err().to_string();
    assert!(err.contains("400") && err.contains("times or error_rate"), "{err}");
    emu.admin
        .fault(&json!({"endpoint": "messages", "kind": "drop_answer", "times": 1, "answer_delay_ms": 300}))
        .await
        .unwrap();
    assert!(send(&emu.base_url, &ig, &token, "late and lost").await.is_err());
    assert_eq!(sent_texts(&emu, &ig).await, ["late and lost"]);
    // Listed like every other fault until spent; a `drop` fault does not carry the call out.
    emu.admin.fault(&json!({"endpoint": "messages", "kind": "drop", "times": 1})).await.unwrap();
    assert!(send(&emu.base_url, &ig, &token, "never sent").await.is_err());
    assert_eq!(sent_texts(&emu, &ig).await, ["late and lost"]);
}

#[tokio::test]
async fn the_admin_api_refuses_cross_site_browser_requests() {
    let (emu, ig, _) = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/_admin/simulate/message", emu.base_url);
    let own = format!("http://{}", emu.addr);
    let body = r#"{"text":"from a browser"}"#;
    let post = |headers: Vec<(&'static str, String)>| {
        let mut req = http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    // curl -d: no Origin, no Sec-Fetch-Site.
    assert_eq!(post(vec![]).await.unwrap().status(), 200);
    // A page served by the emulator itself (same origin).
    assert_eq!(
        post(vec![("origin", own.clone()), ("sec-fetch-site", "same-origin".into())]).await.unwrap().status(),
        200
    );
    // Another site, however it presents itself.
    for headers in [
        vec![("origin", "http://evil.example".to_owned())],
        vec![("origin", "null".to_owned())],
        vec![("sec-fetch-site", "cross-site".to_owned())],
        vec![("origin", own.clone()), ("sec-fetch-site", "cross-site".to_owned())],
        vec![("origin", "http://localhost:3000".to_owned()), ("sec-fetch-site", "same-site".to_owned())],
        // DNS rebinding: a foreign name resolved to loopback; Host and Origin agree.
        vec![
            ("origin", format!("http://rebind.example:{}", emu.addr.port())),
            ("host", format!("rebind.example:{}", emu.addr.port())),
        ],
    ] {
        let resp = post(headers.clone()).await.unwrap();
        assert_eq!(resp.status(), 403, "{headers:?}");
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(v["error"].as_str().unwrap().contains("refuses"), "{v}");
    }
    // Reads are guarded too (they show tokens' effects and messages).
    let r = http.get(format!("{}/_admin/calls", emu.base_url)).header("origin", "http://evil.example").send().await;
    assert_eq!(r.unwrap().status(), 403);
    // Only the two requests that passed changed anything.
    let texts: Vec<Value> = emu.admin.get("/_admin/conversations").await.unwrap()["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["messages"].clone())
        .collect();
    let total: u64 = texts.iter().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(total, 3, "the set-up DM and the two accepted requests: {texts:?} ({ig})");
    // The Graph API is not the admin API: Meta's clients are not browsers, and it has tokens.
    let graph = http
        .get(format!("{}/v23.0/me?access_token=IGAAemulatortoken1", emu.base_url))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(graph.status(), 200);
}

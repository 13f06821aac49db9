//! The webhook endpoint's HTTP behaviour: challenge, signatures, limits, unknown bodies,
//! deduplication, batches, tracing, ops endpoints. Real HTTP, real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop the test loudly

mod support;

use bytes::Bytes;
use igrelay_core::v1::event::Payload;
use igrelay_testkit::http::{self, Method};
use igrelay_testkit::webhook;
use serde_json::json;
use support::{ACCOUNT, App, OLD_SECRET, SECRET, VERIFY_TOKEN};

#[tokio::test]
async fn challenge_is_echoed_only_with_the_right_token() {
    let app = App::start().await;
    let ok = http::get(
        &app.http,
        &format!("{}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY_TOKEN}", app.url),
    )
    .await
    .unwrap();
    assert_eq!((ok.status, ok.text().as_str()), (200, "1158201444"));

    let wrong = http::get(&app.http, &format!("{}?hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope", app.url))
        .await
        .unwrap();
    assert_eq!(wrong.status, 403);
    assert!(wrong.text().contains("verify_token does not match"));
    assert!(!wrong.text().contains(VERIFY_TOKEN), "the expected token is never revealed");

    let mode = http::get(
        &app.http,
        &format!("{}?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token={VERIFY_TOKEN}", app.url),
    )
    .await
    .unwrap();
    assert_eq!(mode.status, 403);
    let none = http::get(&app.http, &app.url).await.unwrap();
    assert_eq!(none.status, 403);
    let no_challenge =
        http::get(&app.http, &format!("{}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}", app.url)).await.unwrap();
    assert_eq!(no_challenge.status, 400);
    app.stop().await;
}

#[tokio::test]
async fn bad_or_missing_signatures_are_rejected_and_nothing_is_stored() {
    let app = App::start().await;
    let body = webhook::encode(&webhook::text_message(ACCOUNT, "55", "m1", "hi", 1_743_480_368_714));
    let ct = ("content-type", "application/json".to_string());

    let missing = app.post_with(std::slice::from_ref(&ct), body.clone()).await;
    assert_eq!(missing.status, 401);
    assert!(missing.text().contains("missing X-Hub-Signature-256"));

    let wrong_secret = app
        .post_with(&[ct.clone(), ("x-hub-signature-256", webhook::sign(b"not-the-secret", &body))], body.clone())
        .await;
    assert_eq!(wrong_secret.status, 401);
    assert!(wrong_secret.text().contains("does not match"));
    assert!(
        !wrong_secret.text().contains(&webhook::sign(SECRET.as_bytes(), &body)),
        "the expected signature is never revealed"
    );

    let sha1 =
        app.post_with(&[ct.clone(), ("x-hub-signature-256", "sha1=0123456789abcdef".into())], body.clone()).await;
    assert_eq!(sha1.status, 401);
    assert!(sha1.text().contains("not of the form"));

    // Signed over other bytes (a re-serialisation): rejected.
    let mut tampered = body.to_vec();
    tampered.extend_from_slice(b" ");
    let tampered_sig = app
        .post_with(
            &[ct.clone(), ("x-hub-signature-256", webhook::sign(SECRET.as_bytes(), &body))],
            Bytes::from(tampered),
        )
        .await;
    assert_eq!(tampered_sig.status, 401);

    assert_eq!(app.event_count().await, 0);

    // The previous secret still works during a rotation.
    let rotated =
        app.post_with(&[ct, ("x-hub-signature-256", webhook::sign(OLD_SECRET.as_bytes(), &body))], body).await;
    assert_eq!(rotated.status, 200);
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = App::start_with(|c| c.max_body_bytes = 4096).await;
    let text = "x".repeat(5000);
    let r = app.post_json(&webhook::text_message(ACCOUNT, "55", "m-big", &text, 1)).await;
    assert_eq!(r.status, 413);
    assert!(r.text().contains("4096"), "{}", r.text());
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn signed_invalid_json_is_stored_raw_and_answered_200() {
    let app = App::start().await;
    for body in [&b"{not json"[..], b"[]", br#"{"object":"instagram"}"#, br#"{"object":"instagram","entry":[]}"#] {
        let r = app.post_bytes(Bytes::copy_from_slice(body)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let events = app.events().await;
    assert_eq!(events.len(), 4);
    for (e, body) in events.iter().zip([
        &b"{not json"[..],
        b"[]",
        br#"{"object":"instagram"}"#,
        br#"{"object":"instagram","entry":[]}"#,
    ]) {
        assert_eq!(e.subject, "ig.v1.evt._unknown.unknown");
        let Some(Payload::Unknown(u)) = &e.event.payload else { panic!() };
        assert_eq!(u.raw_json, body, "kept byte for byte");
        assert!(!u.reason.is_empty());
    }
    let Some(Payload::Unknown(u)) = &events[0].event.payload else { panic!() };
    assert!(u.reason.starts_with("invalid JSON"), "{}", u.reason);
    app.stop().await;
}

#[tokio::test]
async fn unicode_escaped_like_meta_verifies_and_decodes() {
    let app = App::start().await;
    let payload = webhook::text_message(ACCOUNT, "55", "m-u", "äöå 😀 日本", 1_743_480_368_714);
    let body = webhook::encode(&payload);
    assert!(body.windows(6).any(|w| w == br"\u00e4"), "sent escaped, as Meta does");
    assert!(body.is_ascii());
    let r = app.post_bytes(body).await;
    assert_eq!(r.status, 200);
    let events = app.events().await;
    let Some(Payload::Message(m)) = &events[0].event.payload else { panic!() };
    assert_eq!(m.text, "äöå 😀 日本");
    app.stop().await;
}

#[tokio::test]
async fn the_same_delivery_three_times_is_stored_once() {
    let app = App::start().await;
    let payload = json!({"object": "instagram", "entry": [
        {"id": ACCOUNT, "time": 1_743_480_368_963i64, "messaging": [
            {"sender": {"id": "55"}, "recipient": {"id": ACCOUNT}, "timestamp": 1_743_480_368_714i64, "message": {"mid": "m-a", "text": "a"}},
            {"sender": {"id": "55"}, "recipient": {"id": ACCOUNT}, "timestamp": 1_743_480_368_715i64, "reaction": {"mid": "m-a", "action": "react", "reaction": "love", "emoji": "❤"}}
        ]},
        {"id": ACCOUNT, "time": 1_743_480_368i64, "changes": [{"field": "comments", "value": {"id": "c-a", "text": "c", "from": {"id": "55"}}}]}
    ]});
    for _ in 0..3 {
        assert_eq!(app.post_json(&payload).await.status, 200);
    }
    // The same message inside a different delivery (Meta batches differently on retry).
    let other = webhook::text_message(ACCOUNT, "55", "m-a", "a", 1_743_480_368_714);
    assert_eq!(app.post_json(&other).await.status, 200);
    assert_eq!(app.event_count().await, 3);
    let metrics = app.metrics().await;
    assert!(metrics.contains("igrelay_ingest_events_duplicate_total 7"), "{metrics}");
    app.stop().await;
}

/// Ids come from Meta's JSON, where `\r` and `\n` are legal escapes; a NATS header cannot carry
/// them, so the deduplication id must still be made from them without failing the delivery.
#[tokio::test]
async fn ids_with_line_breaks_are_stored_and_deduplicated() {
    let app = App::start().await;
    let payload = json!({"object": "instagram", "entry": [
        {"id": ACCOUNT, "time": 1_743_480_368_963i64, "messaging": [
            {"sender": {"id": "55"}, "recipient": {"id": ACCOUNT}, "timestamp": 1_743_480_368_714i64, "message": {"mid": "m\r\nx", "text": "a"}},
            {"sender": {"id": "55"}, "recipient": {"id": ACCOUNT}, "timestamp": 1_743_480_368_714i64, "message": {"mid": "m\nx", "text": "b"}}
        ]},
        {"id": ACCOUNT, "time": 1_743_480_368i64, "changes": [{"field": "comments", "value": {"id": "c\n1", "text": "c", "from": {"id": "55"}}}]}
    ]});
    for _ in 0..2 {
        let r = app.post_json(&payload).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let events = app.events().await;
    assert_eq!(events.len(), 3, "each event once, the line-break ids told apart");
    let Some(Payload::Message(m)) = &events[0].event.payload else { panic!() };
    assert_eq!(m.mid, "m\r\nx", "the event keeps Meta's id as it was");
    app.stop().await;
}

#[tokio::test]
async fn a_batch_of_1000_entries_is_1000_events_and_one_200() {
    let app = App::start().await;
    let entries: Vec<_> = (0..1000)
        .map(|i| {
            webhook::messaging_entry(
                ACCOUNT,
                1_743_480_368_963,
                vec![webhook::item(
                    &format!("55{i}"),
                    ACCOUNT,
                    1_743_480_368_714 + i,
                    "message",
                    json!({"mid": format!("m-{i}"), "text": format!("hello {i}")}),
                )],
            )
        })
        .collect();
    let r = app.post_json(&webhook::envelope(entries)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = app.events().await;
    assert_eq!(events.len(), 1000);
    let ids: std::collections::HashSet<_> =
        events.iter().map(|e| e.event.meta.as_ref().unwrap().event_id.clone()).collect();
    assert_eq!(ids.len(), 1000);
    let delivery: std::collections::HashSet<_> =
        events.iter().map(|e| e.event.meta.as_ref().unwrap().delivery_id.clone()).collect();
    assert_eq!(delivery.len(), 1, "all events share the delivery id");
    app.stop().await;
}

#[tokio::test]
async fn the_trace_context_of_the_request_travels_in_nats_headers() {
    let app = App::start().await;
    let body = webhook::encode(&webhook::text_message(ACCOUNT, "55", "m-t", "t", 1));
    let mut headers = webhook::signed_headers(SECRET, &body);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    headers.push(("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01")));
    let r = http::send(&app.http, Method::POST, &app.url, &headers, body).await.unwrap();
    assert_eq!(r.status, 200);
    let events = app.events().await;
    let tp = events[0].headers.get("traceparent").expect("traceparent header").as_str().to_owned();
    assert!(tp.starts_with(&format!("00-{trace_id}-")), "{tp}");
    assert!(!tp.contains("00f067aa0ba902b7"), "the event carries ingest's own span as parent, not the caller's");
    assert!(tp.ends_with("-01"), "the caller sampled the trace: {tp}");

    // Without an incoming context a new trace starts, still propagated.
    let r = app.post_json(&webhook::text_message(ACCOUNT, "55", "m-t2", "t", 1)).await;
    assert_eq!(r.status, 200);
    let events = app.events().await;
    let tp = events[1].headers.get("traceparent").expect("traceparent header").as_str().to_owned();
    // No OTLP endpoint in tests: nothing records spans, so the new trace is not marked sampled.
    assert!(tp.ends_with("-00"), "{tp}");
    app.stop().await;
}

#[tokio::test]
async fn ops_endpoints() {
    let app = App::start().await;
    assert_eq!(http::get(&app.http, &format!("{}/healthz", app.ops)).await.unwrap().status, 200);
    assert_eq!(http::get(&app.http, &format!("{}/readyz", app.ops)).await.unwrap().status, 200);
    // Not on the webhook port, which faces the internet.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = http::get(&app.http, &format!("{}{path}", app.base)).await.unwrap();
        assert_eq!(r.status, 404, "{path} is served on the webhook port");
    }
    app.post_json(&webhook::text_message(ACCOUNT, "55", "m-o", "o", 1)).await;
    app.post_with(&[], Bytes::from_static(b"{}")).await;
    let metrics = app.metrics().await;
    for needle in [
        "igrelay_ingest_webhooks_received_total 2",
        "igrelay_ingest_events_published_total{kind=\"message\"} 1",
        "igrelay_ingest_webhooks_rejected_total{reason=\"signature_missing\"} 1",
        "igrelay_ingest_webhook_duration_seconds_count 2",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn readyz_reports_nats_down() {
    let mut app = App::start().await;
    app.nats.server.kill();
    let mut status = 200;
    for _ in 0..100 {
        status = http::get(&app.http, &format!("{}/readyz", app.ops)).await.unwrap().status;
        if status == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 503);
    let r = app.post_json(&webhook::text_message(ACCOUNT, "55", "m-down", "d", 1)).await;
    assert_eq!(r.status, 503);
    assert!(r.headers.get("retry-after").is_some());
    app.nats.server.restart().unwrap();
    app.wait_ready().await;
    let r = app.post_json(&webhook::text_message(ACCOUNT, "55", "m-down", "d", 1)).await;
    assert_eq!(r.status, 200);
    app.stop().await;
}

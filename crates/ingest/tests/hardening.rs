//! Ingest under abuse and trouble: replayed deliveries, bodies larger than NATS takes, a stalled
//! nats-server, stalled clients. Real HTTP, real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop the test loudly

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use igrelay_bus::subjects::EventKind;
use igrelay_core::v1::event::Payload;
use igrelay_testkit::webhook;
use serde_json::{Value, json};
use support::{ACCOUNT, App};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn now_ms() -> i64 {
    igrelay_core::time::now_ms()
}

/// One message, sent by Meta at `sent_ms`.
fn message_sent_at(mid: &str, sent_ms: i64) -> Value {
    webhook::envelope(vec![webhook::messaging_entry(
        ACCOUNT,
        sent_ms,
        vec![webhook::item("55", ACCOUNT, sent_ms - 10, "message", json!({"mid": mid, "text": "x"}))],
    )])
}

// ---- replayed deliveries ----

#[tokio::test]
async fn a_delivery_older_than_max_delivery_age_is_answered_200_and_dropped() {
    let app = App::start_with(|c| c.max_delivery_age = Some(Duration::from_secs(3600))).await;
    let hour = 3_600_000;
    let replay = app.post_json(&message_sent_at("m-old", now_ms() - 2 * hour)).await;
    assert_eq!(replay.status, 200, "answered 200 so Meta (or whoever replays) does not retry");
    assert_eq!(app.event_count().await, 0, "a replay older than the limit is not stored");
    let metrics = app.metrics().await;
    assert!(metrics.contains("igrelay_ingest_webhooks_rejected_total{reason=\"replay_too_old\"} 1"), "{metrics}");

    let fresh = app.post_json(&message_sent_at("m-fresh", now_ms() - hour / 2)).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(app.event_count().await, 1);
    // A delivery with one fresh entry is not a replay, whatever its other entries say.
    let mixed = webhook::envelope(vec![
        webhook::messaging_entry(ACCOUNT, now_ms() - 3 * hour, vec![]),
        webhook::messaging_entry(
            ACCOUNT,
            now_ms(),
            vec![webhook::item("55", ACCOUNT, now_ms(), "message", json!({"mid": "m-mixed", "text": "x"}))],
        ),
    ]);
    assert_eq!(app.post_json(&mixed).await.status, 200);
    assert_eq!(app.event_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn max_delivery_age_defaults_to_the_events_duplicate_window() {
    let window = Duration::from_secs(600);
    let app = App::start_with_bus(|c| c.max_delivery_age = None, |b| b.topology.duplicate_window = window).await;
    let minute = 60_000;
    assert_eq!(app.post_json(&message_sent_at("m-20m", now_ms() - 20 * minute)).await.status, 200);
    assert_eq!(app.event_count().await, 0, "older than the 10 min window: dropped");
    assert_eq!(app.post_json(&message_sent_at("m-5m", now_ms() - 5 * minute)).await.status, 200);
    assert_eq!(app.event_count().await, 1, "within the window: stored");
    app.stop().await;
}

// ---- the events stream's duplicate window ----

#[tokio::test]
async fn the_events_stream_gets_the_configured_duplicate_window() {
    let window = Duration::from_secs(7 * 60);
    let app = App::start_with_bus(|_| {}, |b| b.topology.duplicate_window = window).await;
    let info = app.nats.js.get_stream("IGRELAY_EVENTS").await.unwrap().info().await.unwrap().config.clone();
    assert_eq!(info.duplicate_window, window, "the window on the server is the configured one");
    // And it is what deduplicates: the same delivery twice is stored once.
    let payload = message_sent_at("m-window", now_ms());
    for _ in 0..2 {
        assert_eq!(app.post_json(&payload).await.status, 200);
    }
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}

// ---- bodies larger than NATS takes ----

#[tokio::test]
async fn a_delivery_just_above_1_mib_of_several_items_is_stored_whole() {
    let app = App::start().await;
    // Two messages of 600 KB: the body is above NATS's 1 MiB, each event fits.
    let text = "y".repeat(600 * 1024);
    let items = (0..2)
        .map(|i| webhook::item("55", ACCOUNT, now_ms(), "message", json!({"mid": format!("m-half-{i}"), "text": text})))
        .collect();
    let body = webhook::encode(&webhook::envelope(vec![webhook::messaging_entry(ACCOUNT, now_ms(), items)]));
    assert!(body.len() > 1024 * 1024);
    let r = app.post_bytes(body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = app.events().await;
    assert_eq!(events.len(), 2);
    for e in &events {
        let Some(Payload::Message(m)) = &e.event.payload else { panic!("{e:?}") };
        assert_eq!(m.text, text, "nothing cut");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_single_item_larger_than_nats_takes_is_stored_as_oversized_and_answered_200() {
    let app = App::start().await;
    let text = "z".repeat(1024 * 1024 + 100);
    let payload = webhook::envelope(vec![webhook::messaging_entry(
        ACCOUNT,
        now_ms(),
        vec![webhook::item("55", ACCOUNT, now_ms(), "message", json!({"mid": "m-huge", "text": text}))],
    )]);
    let body = webhook::encode(&payload);
    for _ in 0..2 {
        let r = app.post_bytes(body.clone()).await;
        assert_eq!(r.status, 200, "a valid signed delivery is never refused forever: {}", r.text());
    }
    let events = app.events().await;
    assert_eq!(events.len(), 1, "stored once, redelivery deduplicated");
    let e = &events[0];
    assert_eq!(e.subject, format!("ig.v1.evt.{ACCOUNT}.{}", EventKind::Unknown.token()));
    let meta = e.event.meta.as_ref().unwrap();
    assert_eq!(meta.event_id, format!("msg:{ACCOUNT}:m-huge"), "the item's own id, so redeliveries deduplicate");
    assert_eq!(meta.webhook_field, "messages");
    let Some(Payload::Unknown(u)) = &e.event.payload else { panic!("{e:?}") };
    assert!(u.reason.starts_with("oversized: the message event is"), "{}", u.reason);
    let item = serde_json::to_vec(&payload["entry"][0]["messaging"][0]).unwrap();
    assert!(u.raw_json.len() > 1000 * 1000, "carries what fits: {} bytes", u.raw_json.len());
    assert!(u.raw_json.len() < item.len());
    assert_eq!(&item[..u.raw_json.len()], &u.raw_json[..], "the start of the item's JSON");
    let metrics = app.metrics().await;
    assert!(metrics.contains("igrelay_ingest_events_oversized_total 2"), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn signed_invalid_json_larger_than_nats_takes_is_stored_as_oversized() {
    let app = App::start().await;
    let mut body = b"{not json ".to_vec();
    body.resize(1024 * 1024 + 10, b'a');
    let r = app.post_bytes(Bytes::from(body.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    let Some(Payload::Unknown(u)) = &events[0].event.payload else { panic!() };
    assert!(u.reason.starts_with("oversized: the unknown event is"), "{}", u.reason);
    assert_eq!(&body[..u.raw_json.len()], &u.raw_json[..]);
    app.stop().await;
}

// ---- a stalled nats-server ----

/// Sends SIGSTOP or SIGCONT to the test's nats-server.
fn signal(app: &App, sig: &str) {
    let pid = app.nats.server.pid().expect("nats-server runs").to_string();
    let ok = std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_nats_server_gets_503_with_retry_after_within_5_s_then_200() {
    let app = App::start().await;
    let payload = message_sent_at("m-stall", now_ms());
    signal(&app, "-STOP");
    let started = Instant::now();
    let r = app.post_json(&payload).await;
    let took = started.elapsed();
    signal(&app, "-CONT");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned()), Some("5".into()));
    assert!(took < Duration::from_secs(5), "answered after {took:?}: Meta gives up after 5 s");

    // Meta delivers again: 200, and the stream holds the event once (the publish sent while
    // the server was stopped may land when it resumes; the retry then is a duplicate).
    let mut status = 0;
    for _ in 0..100 {
        status = app.post_json(&payload).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    let events = app.events().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    app.stop().await;
}

// ---- stalled clients ----

#[tokio::test]
async fn a_client_stalling_its_body_gets_408_and_does_not_block_shutdown() {
    let app = App::start_with(|c| {
        c.header_timeout = Duration::from_secs(2);
        c.request_timeout = Duration::from_secs(3);
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let request = "POST /webhooks/instagram HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n{\"object\":";
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));

    // Another one stalls; shutdown does not wait for it beyond the request timeout.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(30), app.stop()).await.expect("ingest stopped");
}

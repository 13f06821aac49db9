//! nats-server killed during a load of webhook posts and restarted: every post answered 200 has
//! all its events in the stream, posts during the outage got 503, none got 200 unstored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop the test loudly

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use igrelay_core::v1::event::Payload;
use igrelay_testkit::webhook;
use serde_json::json;
use support::{ACCOUNT, App};

const POSTERS: usize = 4;
const POSTS_EACH: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_during_load_loses_nothing_that_got_200() {
    let mut app = App::start_with(|c| c.publish_deadline = std::time::Duration::from_millis(500)).await;
    let done = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for p in 0..POSTERS {
        let (url, http, done, unavailable) = (app.url.clone(), app.http.clone(), done.clone(), unavailable.clone());
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..POSTS_EACH {
                // Two events per post: a message and a reaction to it.
                let mid = format!("m-{p}-{i}");
                let payload = webhook::envelope(vec![webhook::messaging_entry(
                    ACCOUNT,
                    1_743_480_368_963,
                    vec![
                        webhook::item("55", ACCOUNT, 1_743_480_368_714, "message", json!({"mid": mid, "text": "x"})),
                        webhook::item(
                            "55",
                            ACCOUNT,
                            1_743_480_368_715,
                            "reaction",
                            json!({"mid": mid, "action": "react", "reaction": "love"}),
                        ),
                    ],
                )]);
                let body = webhook::encode(&payload);
                let headers = webhook::signed_headers(support::SECRET, &body);
                let status =
                    match igrelay_testkit::http::send(&http, igrelay_testkit::http::Method::POST, &url, &headers, body)
                        .await
                    {
                        Ok(r) => r.status,
                        Err(_) => 0,
                    };
                if status == 503 {
                    unavailable.fetch_add(1, Ordering::Relaxed);
                }
                results.push((mid, status));
                done.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            results
        }));
    }

    // Let the load run, take NATS away, wait until posts are being refused, bring it back.
    wait_until(|| done.load(Ordering::Relaxed) >= 100).await;
    app.nats.server.kill();
    wait_until(|| unavailable.load(Ordering::Relaxed) >= 10).await;
    app.nats.server.restart().unwrap();

    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.unwrap());
    }
    let ok: Vec<&String> = results.iter().filter(|(_, s)| *s == 200).map(|(m, _)| m).collect();
    let refused = results.iter().filter(|(_, s)| *s == 503).count();
    let other: Vec<_> = results.iter().filter(|(_, s)| *s != 200 && *s != 503).collect();
    assert!(other.is_empty(), "only 200 or 503 are answered: {other:?}");
    assert!(refused >= 10, "posts during the outage got 503");
    assert!(ok.len() > 100, "posts before and after the outage succeeded ({} of {})", ok.len(), results.len());

    app.wait_ready().await;
    let stored = app.events().await;
    let mut messages = HashSet::new();
    let mut reactions = HashSet::new();
    for e in &stored {
        match &e.event.payload {
            Some(Payload::Message(m)) => assert!(messages.insert(m.mid.clone()), "message {} stored twice", m.mid),
            Some(Payload::Reaction(r)) => assert!(reactions.insert(r.mid.clone()), "reaction {} stored twice", r.mid),
            other => panic!("unexpected {other:?}"),
        }
    }
    for mid in ok {
        assert!(
            messages.contains(mid) && reactions.contains(mid),
            "post {mid} got 200 but its events are not all stored"
        );
    }
    app.stop().await;
}

/// Waits for `cond`, bounded so a broken system fails instead of hanging.
async fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 30 s");
}

//! The emulator's webhook sender against the real ingest: what a simulated Instagram user does
//! ends up as events on NATS, signed and escaped exactly as Meta would send them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use igrelay_core::v1::event::Payload;
use igrelay_emulator::EmulatorConfig;
use serde_json::json;
use support::{ACCOUNT, App, SECRET};

#[tokio::test]
async fn simulated_dm_and_comment_become_events_on_nats() {
    let app = App::start().await;
    let mut cfg = EmulatorConfig::for_tests();
    cfg.app_secret = SECRET.into();
    cfg.webhooks.callback_url = Some(app.url.clone());
    let emulator = igrelay_emulator::spawn(cfg).await.unwrap();

    let dm = emulator.admin.simulate_dm(ACCOUNT, "5500000000000077", "Hej, äöå 😀").await.unwrap();
    let mid = dm["mid"].as_str().unwrap().to_owned();
    emulator
        .admin
        .simulate("comment", &json!({"account": ACCOUNT, "username": "commenter", "text": "Love it"}))
        .await
        .unwrap();

    let mut events = Vec::new();
    for _ in 0..100 {
        events = app.events().await;
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events.len(), 2, "{events:#?}");
    let message = events.iter().find(|e| e.subject == format!("ig.v1.evt.{ACCOUNT}.message")).expect("message event");
    let Some(Payload::Message(m)) = &message.event.payload else { panic!() };
    assert_eq!(
        (m.mid.as_str(), m.text.as_str(), m.sender_id.as_str()),
        (mid.as_str(), "Hej, äöå 😀", "5500000000000077")
    );
    let comment = events.iter().find(|e| e.subject == format!("ig.v1.evt.{ACCOUNT}.comment")).expect("comment event");
    let Some(Payload::Comment(c)) = &comment.event.payload else { panic!() };
    assert_eq!(c.text, "Love it");

    // Every delivery was answered 200 on the first attempt.
    let deliveries = emulator.admin.deliveries().await.unwrap();
    let list = deliveries.as_array().or_else(|| deliveries["deliveries"].as_array()).unwrap().clone();
    assert!(!list.is_empty());
    assert!(list.iter().all(|d| d["status"] == 200), "{deliveries}");
    emulator.shutdown().await;
    app.stop().await;
}

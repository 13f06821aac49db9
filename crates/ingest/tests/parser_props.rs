//! The parser never panics and never loses a delivery, whatever the input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop the test loudly

use igrelay_core::v1::event::Payload;
use igrelay_ingest::parse::{DeliveryContext, parse_delivery};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-z0-9_.*> ]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "message",
            "reaction",
            "postback",
            "read",
            "messaging",
            "standby",
            "changes",
            "field",
            "value",
            "mid",
            "id",
            "sender",
            "timestamp"
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop::sample::select(vec![
            "id",
            "time",
            "messaging",
            "standby",
            "changes",
            "field",
            "value",
            "sender",
            "recipient",
            "timestamp",
            "message",
            "reaction",
            "postback",
            "read",
            "message_edit",
            "referral",
            "optin",
            "pass_thread_control",
            "mid",
            "text",
            "attachments",
            "type",
            "payload",
            "reply_to",
            "story",
            "from",
            "media",
            "comment_id",
            "num_edit",
            "is_echo",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.prop_map(String::from), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(body: &[u8]) {
    let ctx = DeliveryContext::new(body, 1_700_000_000_000);
    let events = parse_delivery(body, &ctx);
    assert!(!events.is_empty(), "every delivery yields at least one event");
    for e in &events {
        let meta = e.event.meta.as_ref().unwrap();
        assert!(!meta.event_id.is_empty());
        assert_eq!(meta.account_id, e.account.as_str());
        assert!(igrelay_core::ids::check_token(&meta.account_id).is_ok());
        assert!(e.event.payload.is_some());
        if let Some(Payload::Unknown(u)) = &e.event.payload {
            assert!(!u.reason.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&body);
    }

    #[test]
    fn arbitrary_json(v in arb_json()) {
        check(v.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_entries(entries in prop::collection::vec(arb_json(), 0..5), object in arb_json()) {
        let body = json!({"object": object, "entry": entries});
        check(body.to_string().as_bytes());
    }
}

//! Every payload example of the seed documents and every shape of platform facts §1, ingested
//! through real HTTP into a real nats-server, with kind, subject and fields asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop the test loudly

mod support;

use igrelay_bus::subjects::EventKind;
use igrelay_core::time::timestamp_to_ms;
use igrelay_core::v1::{self, Channel, event::Payload};
use igrelay_testkit::events::StoredEvent;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{ACCOUNT, App, fixture};

const USER: &str = "5500000000000002";
const MID: &str = "aWdfZAG1faXRlbToxOklHTWVzc2FnZUlEOjE3ODQx";

/// Posts `payload`, expects 200, returns what was stored. Every event carries the delivery id
/// of the posted bytes and a receipt time taken while the post was in flight.
async fn ingest(payload: Value) -> Vec<StoredEvent> {
    let app = App::start().await;
    let body = igrelay_testkit::webhook::encode(&payload);
    let delivery_id = igrelay_core::ids::hex_lower(&Sha256::digest(&body));
    let before = igrelay_core::time::now_ms();
    let r = app.post_bytes(body).await;
    let after = igrelay_core::time::now_ms();
    assert_eq!(r.status, 200, "{}", r.text());
    let events = app.events().await;
    for e in &events {
        assert_eq!(meta(e).delivery_id, delivery_id);
        let received = timestamp_to_ms(meta(e).received_time.as_ref().unwrap());
        assert!((before..=after).contains(&received), "received {received} not within {before}..={after}");
    }
    app.stop().await;
    events
}

async fn ingest_one(payload: Value) -> StoredEvent {
    let mut events = ingest(payload).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    events.remove(0)
}

fn meta(e: &StoredEvent) -> &v1::EventMeta {
    e.event.meta.as_ref().unwrap()
}

fn check(e: &StoredEvent, kind: EventKind, field: &str) {
    check_for(e, ACCOUNT, kind, field)
}

fn check_for(e: &StoredEvent, account: &str, kind: EventKind, field: &str) {
    assert_eq!(e.subject, format!("ig.v1.evt.{account}.{}", kind.token()));
    assert_eq!(meta(e).account_id, account);
    assert_eq!(meta(e).webhook_field, field);
    assert_eq!(e.headers.get("Igrelay-Type").unwrap().as_str(), "igrelay.v1.Event");
    assert_eq!(e.headers.get("Igrelay-Kind").unwrap().as_str(), kind.token());
    assert_eq!(e.headers.get("Nats-Msg-Id").unwrap().as_str(), meta(e).event_id);
    assert!(meta(e).event_id.contains(&format!(":{account}:")), "ids name the account: {}", meta(e).event_id);
    assert!(meta(e).time_problem.is_empty(), "{}", meta(e).time_problem);
}

fn message(e: &StoredEvent) -> &v1::Message {
    match e.event.payload.as_ref().unwrap() {
        Payload::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn messaging(item: Value) -> Value {
    json!({"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1_743_480_368_963i64, "messaging": [item]}]})
}

fn from_user(key: &str, body: Value) -> Value {
    let mut item = json!({"sender": {"id": USER}, "recipient": {"id": ACCOUNT}, "timestamp": 1_743_480_368_714i64});
    item[key] = body;
    messaging(item)
}

// ---- the seed documents' examples ----

#[tokio::test]
async fn seed_self_messaging_echo() {
    let e = ingest_one(fixture("seed_01_self_messaging_echo_webhook.json")).await;
    check(&e, EventKind::MessageEcho, "messages");
    let m = message(&e);
    assert!(m.is_echo && m.is_self);
    assert_eq!(m.sender_id, ACCOUNT);
    assert_eq!(m.recipient_id, "5500000000000001");
    assert_eq!(m.text, "Hello äöå 😀");
    assert_eq!(meta(&e).event_id, format!("echo:{ACCOUNT}:{MID}"));
    // Timestamps given as strings, in milliseconds (this example gives the same value twice;
    // `seed_self_postback` tells the two apart).
    assert_eq!(timestamp_to_ms(meta(&e).event_time.as_ref().unwrap()), 1_743_480_368_963);
    assert_eq!(timestamp_to_ms(meta(&e).sent_time.as_ref().unwrap()), 1_743_480_368_963);
    assert_eq!(meta(&e).channel, Channel::Messaging as i32);
}

#[tokio::test]
async fn seed_self_postback() {
    let e = ingest_one(fixture("seed_02_self_postback_webhook.json")).await;
    // This example names a literal account id and numeric times.
    check_for(&e, "45202218377435", EventKind::Postback, "messaging_postbacks");
    // The item's timestamp is the event time; entry.time is when Meta sent it.
    assert_eq!(timestamp_to_ms(meta(&e).event_time.as_ref().unwrap()), 1_743_480_368_714);
    assert_eq!(timestamp_to_ms(meta(&e).sent_time.as_ref().unwrap()), 1_743_480_368_963);
    assert_eq!(meta(&e).event_id, format!("postback:45202218377435:{MID}"));
    let Some(Payload::Postback(p)) = &e.event.payload else { panic!() };
    assert!(p.is_self);
    assert_eq!(
        (p.title.as_str(), p.payload.as_str(), p.mid.as_str()),
        ("Start Chatting", "DEVELOPER_DEFINED_PAYLOAD", MID)
    );
}

#[tokio::test]
async fn seed_self_comment_in_changes() {
    let e = ingest_one(fixture("seed_03_self_comment_webhook.json")).await;
    check(&e, EventKind::Comment, "comments");
    let Some(Payload::Comment(c)) = &e.event.payload else { panic!() };
    assert_eq!(c.comment_id, "18000000000000001");
    assert_eq!(c.text, "Nice post!");
    let from = c.from.as_ref().unwrap();
    assert_eq!(
        (from.id.as_str(), from.username.as_str(), from.self_ig_scoped_id.as_str()),
        (ACCOUNT, "selfbiz", "5500000000000001")
    );
    assert_eq!(c.media.as_ref().unwrap().id, "18100000000000001");
    assert!(!c.live);
    assert_eq!(meta(&e).channel, Channel::Changes as i32);
    assert_eq!(meta(&e).event_id, format!("comment:{ACCOUNT}:18000000000000001"));
}

#[tokio::test]
async fn seed_comment_in_flat_instagram_login_shape() {
    let e = ingest_one(fixture("seed_04_comment_webhook.json")).await;
    check(&e, EventKind::Comment, "comments");
    let Some(Payload::Comment(c)) = &e.event.payload else { panic!() };
    assert_eq!(c.comment_id, "18000000000000001");
    assert_eq!(c.from.as_ref().unwrap().username, "someuser");
    assert_eq!(c.media.as_ref().unwrap().media_product_type, "FEED");
    assert_eq!(meta(&e).channel, Channel::Field as i32);
}

#[tokio::test]
async fn seed_text_message() {
    let e = ingest_one(fixture("seed_05_messaging_webhook.json")).await;
    check(&e, EventKind::Message, "messages");
    let m = message(&e);
    assert_eq!((m.text.as_str(), m.mid.as_str(), m.sender_id.as_str()), ("Hello", MID, USER));
    assert!(!m.is_echo);
}

#[tokio::test]
async fn seed_reaction() {
    let e = ingest_one(fixture("seed_06_messaging_reactions_webhook.json")).await;
    check(&e, EventKind::Reaction, "message_reactions");
    let Some(Payload::Reaction(r)) = &e.event.payload else { panic!() };
    assert_eq!(r.action, v1::ReactionAction::React as i32);
    assert_eq!((r.reaction.as_str(), r.emoji.as_str(), r.mid.as_str()), ("love", "❤", MID));
}

#[tokio::test]
async fn seed_postback() {
    let e = ingest_one(fixture("seed_07_messaging_postbacks_webhook.json")).await;
    check(&e, EventKind::Postback, "messaging_postbacks");
    let Some(Payload::Postback(p)) = &e.event.payload else { panic!() };
    assert_eq!((p.title.as_str(), p.payload.as_str()), ("What are your hours?", "HOURS"));
    assert!(!p.is_self);
}

#[tokio::test]
async fn seed_seen() {
    let e = ingest_one(fixture("seed_08_messaging_seen_webhook.json")).await;
    check(&e, EventKind::Seen, "messaging_seen");
    let Some(Payload::Seen(s)) = &e.event.payload else { panic!() };
    assert_eq!(s.mid, MID);
}

#[tokio::test]
async fn seed_message_edit_with_string_count() {
    let e = ingest_one(fixture("seed_09_message_edit_webhook.json")).await;
    check(&e, EventKind::MessageEdit, "message_edit");
    let Some(Payload::MessageEdit(m)) = &e.event.payload else { panic!() };
    assert_eq!((m.text.as_str(), m.num_edit), ("Hello (edited)", 2));
    assert_eq!(meta(&e).event_id, format!("edit:{ACCOUNT}:{MID}:2"));
}

#[tokio::test]
async fn seed_reply_to_story_with_flags() {
    let e = ingest_one(fixture("seed_10_messaging_reply_to_story_webhook.json")).await;
    check(&e, EventKind::MessageEcho, "messages");
    let m = message(&e);
    assert!(m.is_deleted && m.is_echo && !m.is_self && m.is_unsupported);
    let Some(v1::reply_to::Target::Story(story)) = m.reply_to.as_ref().unwrap().target.as_ref() else { panic!() };
    assert_eq!(story.id, "18200000000000001");
    assert!(story.url.starts_with("https://lookaside.fbsbx.com/"));
}

#[tokio::test]
async fn seed_referral() {
    let e = ingest_one(fixture("seed_11_messaging_referral_webhook.json")).await;
    check(&e, EventKind::Referral, "messaging_referral");
    let Some(Payload::Referral(r)) = &e.event.payload else { panic!() };
    let r = r.referral.as_ref().unwrap();
    assert_eq!((r.r#ref.as_str(), r.source.as_str(), r.r#type.as_str()), ("summer-sale", "IGME_LINK", "OPEN_THREAD"));
}

// ---- the other shapes of platform facts §1 ----

#[tokio::test]
async fn every_attachment_type() {
    let types =
        ["audio", "file", "image", "share", "story_mention", "video", "ig_reel", "reel", "ig_post", "brand_new_type"];
    let attachments: Vec<Value> = types
        .iter()
        .map(|t| match *t {
            "ig_post" => json!({"type": t, "payload": {"ig_post_media_id": "1790001", "title": "A post", "url": "https://cdn/p.jpg"}}),
            "ig_reel" | "reel" => json!({"type": t, "payload": {"reel_video_id": "1790002", "title": "A reel", "url": "https://cdn/r.mp4"}}),
            _ => json!({"type": t, "payload": {"url": format!("https://cdn/{t}")}}),
        })
        .collect();
    let e = ingest_one(from_user("message", json!({"mid": "m-att", "attachments": attachments}))).await;
    check(&e, EventKind::Message, "messages");
    let m = message(&e);
    use v1::AttachmentType as T;
    let got: Vec<i32> = m.attachments.iter().map(|a| a.r#type).collect();
    let want =
        [T::Audio, T::File, T::Image, T::Share, T::StoryMention, T::Video, T::IgReel, T::Reel, T::IgPost, T::Other];
    assert_eq!(got, want.iter().map(|t| *t as i32).collect::<Vec<_>>());
    assert_eq!(m.attachments[0].url, "https://cdn/audio");
    assert_eq!(m.attachments[6].reel_video_id, "1790002");
    assert_eq!(m.attachments[8].ig_post_media_id, "1790001");
    assert_eq!(m.attachments[8].title, "A post");
    assert_eq!(m.attachments[9].raw_type, "brand_new_type");
    assert!(m.attachments[9].payload_json.contains("https://cdn/brand_new_type"));
}

#[tokio::test]
async fn quick_reply_reply_to_and_ad_referral() {
    let body = json!({
        "mid": "m-qr", "text": "Yes please",
        "quick_reply": {"payload": "YES"},
        "reply_to": {"mid": "m-earlier"},
        "referral": {"ref": "r1", "ad_id": "ad-9", "source": "ADS", "type": "OPEN_THREAD",
                     "ads_context_data": {"ad_title": "Sale", "photo_url": "https://cdn/ad.jpg", "video_url": "https://cdn/ad.mp4"}}
    });
    let e = ingest_one(from_user("message", body)).await;
    let m = message(&e);
    assert_eq!(m.quick_reply_payload, "YES");
    assert_eq!(m.reply_to.as_ref().unwrap().target, Some(v1::reply_to::Target::Mid("m-earlier".into())));
    let r = m.referral.as_ref().unwrap();
    assert_eq!((r.ad_id.as_str(), r.source.as_str()), ("ad-9", "ADS"));
    let ctx = r.ads_context_data.as_ref().unwrap();
    assert_eq!(
        (ctx.ad_title.as_str(), ctx.photo_url.as_str(), ctx.video_url.as_str()),
        ("Sale", "https://cdn/ad.jpg", "https://cdn/ad.mp4")
    );
}

#[tokio::test]
async fn unreact_has_no_emoji() {
    let e = ingest_one(from_user("reaction", json!({"mid": MID, "action": "unreact"}))).await;
    let Some(Payload::Reaction(r)) = &e.event.payload else { panic!() };
    assert_eq!(r.action, v1::ReactionAction::Unreact as i32);
    assert!(r.reaction.is_empty() && r.emoji.is_empty());
}

#[tokio::test]
async fn optin() {
    let body = json!({"type": "notification_messages", "payload": "P", "notification_messages_token": "tok-1",
                      "notification_messages_frequency": "DAILY", "token_expiry_timestamp": 1_750_000_000_000i64,
                      "user_token_status": "NOT_REFRESHED", "notification_messages_timezone": "UTC", "title": "Deals"});
    let e = ingest_one(from_user("optin", body)).await;
    check(&e, EventKind::Optin, "messaging_optins");
    let Some(Payload::Optin(o)) = &e.event.payload else { panic!() };
    assert_eq!(
        (o.r#type.as_str(), o.notification_messages_token.as_str(), o.token_expiry_timestamp),
        ("notification_messages", "tok-1", 1_750_000_000_000)
    );
}

#[tokio::test]
async fn handover_pass_take_request() {
    let app = App::start().await;
    for (key, kind) in [
        ("pass_thread_control", v1::HandoverKind::PassThreadControl),
        ("take_thread_control", v1::HandoverKind::TakeThreadControl),
        ("request_thread_control", v1::HandoverKind::RequestThreadControl),
    ] {
        let body = json!({"previous_owner_app_id": "111", "new_owner_app_id": "222", "requested_owner_app_id": "333", "metadata": "escalate"});
        assert_eq!(app.post_json(&from_user(key, body)).await.status, 200);
        let events = app.events().await;
        let e = events.last().unwrap();
        check(e, EventKind::Handover, "messaging_handover");
        let Some(Payload::Handover(h)) = &e.event.payload else { panic!() };
        assert_eq!(h.kind, kind as i32);
        assert_eq!(
            (h.previous_owner_app_id.as_str(), h.new_owner_app_id.as_str(), h.metadata.as_str()),
            ("111", "222", "escalate")
        );
    }
    assert_eq!(app.event_count().await, 3);
    app.stop().await;
}

#[tokio::test]
async fn standby_items_keep_their_kind_and_are_marked() {
    let payload = json!({"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1_743_480_368_963i64, "standby": [
        {"sender": {"id": USER}, "recipient": {"id": ACCOUNT}, "timestamp": 1_743_480_368_714i64, "message": {"mid": "m-sb", "text": "hi"}}
    ]}]});
    let e = ingest_one(payload).await;
    check(&e, EventKind::Message, "messages");
    assert_eq!(meta(&e).channel, Channel::Standby as i32);
    assert_eq!(meta(&e).event_id, format!("standby:msg:{ACCOUNT}:m-sb"));
}

#[tokio::test]
async fn facebook_login_changes_comments_live_comments_mentions_story_insights() {
    let payload = json!({"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1_743_480_368i64, "changes": [
        {"field": "comments", "value": {"from": {"id": USER, "username": "u"}, "comment_id": "c-1", "parent_id": "c-0", "text": "reply",
            "media": {"id": "m-1", "ad_id": "ad-1", "original_media_id": "om-1", "media_product_type": "AD"}}},
        {"field": "live_comments", "value": {"from": {"id": USER, "username": "u"}, "id": "c-live", "text": "wow", "media": {"id": "live-1", "media_product_type": "LIVE"}}},
        {"field": "mentions", "value": {"media_id": "m-2"}},
        {"field": "mentions", "value": {"media_id": "m-3", "comment_id": "c-3"}},
        {"field": "story_insights", "value": {"media_id": "s-1", "exits": 3, "replies": 1, "reach": 100, "taps_forward": 20, "taps_back": 4, "impressions": "120"}}
    ]}]});
    let events = ingest(payload).await;
    assert_eq!(events.len(), 5, "{events:#?}");
    check(&events[0], EventKind::Comment, "comments");
    let Some(Payload::Comment(c)) = &events[0].event.payload else { panic!() };
    assert_eq!((c.comment_id.as_str(), c.parent_id.as_str()), ("c-1", "c-0"));
    let media = c.media.as_ref().unwrap();
    assert_eq!((media.ad_id.as_str(), media.original_media_id.as_str()), ("ad-1", "om-1"));
    // changes carry seconds: normalised to milliseconds.
    assert_eq!(timestamp_to_ms(meta(&events[0]).event_time.as_ref().unwrap()), 1_743_480_368_000);

    check(&events[1], EventKind::LiveComment, "live_comments");
    let Some(Payload::Comment(c)) = &events[1].event.payload else { panic!() };
    assert!(c.live);
    assert_eq!(c.comment_id, "c-live");

    check(&events[2], EventKind::Mention, "mentions");
    let Some(Payload::Mention(m)) = &events[2].event.payload else { panic!() };
    assert_eq!((m.media_id.as_str(), m.comment_id.as_str()), ("m-2", ""));
    let Some(Payload::Mention(m)) = &events[3].event.payload else { panic!() };
    assert_eq!((m.media_id.as_str(), m.comment_id.as_str()), ("m-3", "c-3"));

    check(&events[4], EventKind::StoryInsights, "story_insights");
    let Some(Payload::StoryInsights(s)) = &events[4].event.payload else { panic!() };
    assert_eq!((s.reach, s.taps_forward, s.impressions), (100, 20, 120));
}

#[tokio::test]
async fn one_entry_with_messaging_and_changes_yields_both() {
    let payload = json!({"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1_743_480_368_963i64,
        "messaging": [{"sender": {"id": USER}, "recipient": {"id": ACCOUNT}, "timestamp": 1_743_480_368_714i64, "message": {"mid": "m-both", "text": "a"}}],
        "changes": [{"field": "comments", "value": {"id": "c-both", "text": "b", "from": {"id": USER}}}]
    }]});
    let events = ingest(payload).await;
    let kinds: Vec<_> = events.iter().map(|e| e.subject.rsplit('.').next().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["message", "comment"]);
}

#[tokio::test]
async fn unknown_fields_and_items_are_kept_raw() {
    let payload = json!({"object": "instagram", "entry": [
        {"id": ACCOUNT, "time": 1, "changes": [{"field": "brand_new_field", "value": {"x": 1}}]},
        {"id": ACCOUNT, "time": 1, "messaging": [{"sender": {"id": USER}, "recipient": {"id": ACCOUNT}, "timestamp": 1, "hologram": {"id": 7}}]},
        {"id": ACCOUNT, "time": 1, "something_else": true}
    ]});
    let kept = [
        json!({"field": "brand_new_field", "value": {"x": 1}}),
        payload["entry"][1]["messaging"][0].clone(),
        payload["entry"][2].clone(),
    ];
    let events = ingest(payload).await;
    assert_eq!(events.len(), 3);
    for ((e, field), raw) in events.iter().zip(["brand_new_field", "unknown", "unknown"]).zip(&kept) {
        check(e, EventKind::Unknown, field);
        let Some(Payload::Unknown(u)) = &e.event.payload else { panic!() };
        assert_eq!(&serde_json::from_slice::<Value>(&u.raw_json).unwrap(), raw, "the item is kept as it was");
    }
    let Some(Payload::Unknown(u)) = &events[0].event.payload else { panic!() };
    assert!(u.reason.contains("brand_new_field"));
    let Some(Payload::Unknown(u)) = &events[1].event.payload else { panic!() };
    assert!(u.reason.contains("hologram"), "{}", u.reason);
}

#[tokio::test]
async fn numeric_ids_are_accepted() {
    let payload = json!({"object": "instagram", "entry": [{"id": 17841400000000001u64, "time": 1_743_480_368_963i64, "messaging": [
        {"sender": {"id": 5500000000000002u64}, "recipient": {"id": 17841400000000001u64}, "timestamp": 1_743_480_368_714i64, "message": {"mid": "m-num", "text": "n"}}
    ]}]});
    let e = ingest_one(payload).await;
    check(&e, EventKind::Message, "messages");
    assert_eq!(message(&e).sender_id, USER);
}

// ---- event ids: one per account and per happening ----

/// Posts each payload (each is one delivery), expects 200 for all, returns what was stored.
async fn ingest_all(app: &App, payloads: &[Value]) -> Vec<StoredEvent> {
    for p in payloads {
        let r = app.post_json(p).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    app.events().await
}

#[tokio::test]
async fn one_mid_seen_by_two_managed_accounts_is_an_event_for_each() {
    // Account A messages account B, both managed here: A gets the echo, B the message, same mid.
    const B: &str = "17841400000000002";
    let app = App::start().await;
    let item = |entry: &str| {
        json!({"object": "instagram", "entry": [{"id": entry, "time": 1_743_480_368_963i64, "messaging": [
            {"sender": {"id": ACCOUNT}, "recipient": {"id": B}, "timestamp": 1_743_480_368_714i64,
             "message": {"mid": "m-between", "text": "hi B", "is_echo": entry == ACCOUNT}}
        ]}]})
    };
    let events = ingest_all(&app, &[item(ACCOUNT), item(B), item(ACCOUNT), item(B)]).await;
    assert_eq!(events.len(), 2, "one per account, redeliveries once: {events:#?}");
    check_for(&events[0], ACCOUNT, EventKind::MessageEcho, "messages");
    check_for(&events[1], B, EventKind::Message, "messages");
    assert_eq!(message(&events[0]).mid, message(&events[1]).mid);
    app.stop().await;
}

#[tokio::test]
async fn every_happening_on_one_mid_is_its_own_event_and_redeliveries_are_not() {
    let app = App::start().await;
    let at = |ts: i64, key: &str, body: Value| {
        let mut item = json!({"sender": {"id": USER}, "recipient": {"id": ACCOUNT}, "timestamp": ts});
        item[key] = body;
        messaging(item)
    };
    let happenings = [
        at(1_743_480_368_714, "message", json!({"mid": MID, "text": "hello"})),
        at(1_743_480_369_000, "message_edit", json!({"mid": MID, "text": "hello!", "num_edit": 1})),
        at(1_743_480_370_000, "message_edit", json!({"mid": MID, "text": "hello!!", "num_edit": 2})),
        at(1_743_480_371_000, "reaction", json!({"mid": MID, "action": "react", "reaction": "love", "emoji": "❤"})),
        at(1_743_480_372_000, "reaction", json!({"mid": MID, "action": "unreact"})),
        at(1_743_480_373_000, "reaction", json!({"mid": MID, "action": "react", "reaction": "love", "emoji": "❤"})),
        at(1_743_480_374_000, "read", json!({"mid": MID})),
        // The user unsends it: Meta sends the deleted message's mid with is_deleted.
        at(1_743_480_375_000, "message", json!({"mid": MID, "is_deleted": true})),
    ];
    let mut twice = happenings.to_vec();
    twice.extend(happenings.iter().cloned());
    let events = ingest_all(&app, &twice).await;
    let ids: Vec<&str> = events.iter().map(|e| meta(e).event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            format!("msg:{ACCOUNT}:{MID}"),
            format!("edit:{ACCOUNT}:{MID}:1"),
            format!("edit:{ACCOUNT}:{MID}:2"),
            format!("reaction:{ACCOUNT}:{MID}:react:{USER}:1743480371000"),
            format!("reaction:{ACCOUNT}:{MID}:unreact:{USER}:1743480372000"),
            format!("reaction:{ACCOUNT}:{MID}:react:{USER}:1743480373000"),
            format!("seen:{ACCOUNT}:{MID}:{USER}"),
            format!("msg_deleted:{ACCOUNT}:{MID}"),
        ]
    );
    let deleted = message(events.last().unwrap());
    assert!(deleted.is_deleted && deleted.mid == MID, "consumers learn the message was deleted");
    assert!(!message(&events[0]).is_deleted);
    app.stop().await;
}

// ---- times ----

#[tokio::test]
async fn graph_api_time_text_becomes_the_event_time() {
    // 2021-09-08T06:34:04Z = 1631082844 s.
    let payload = json!({"object": "instagram", "entry": [
        {"id": ACCOUNT, "time": "2021-09-08T06:34:05+0000", "messaging": [
            {"sender": {"id": USER}, "recipient": {"id": ACCOUNT}, "timestamp": "2021-09-08T06:34:04+0000", "message": {"mid": "m-iso", "text": "t"}}
        ]},
        {"id": ACCOUNT, "time": "2021-09-08T08:34:10+0200", "changes": [
            {"field": "comments", "value": {"id": "c-iso", "text": "c", "from": {"id": USER}, "time": "2021-09-08T06:34:06+0000"}}
        ]}
    ]});
    let events = ingest(payload).await;
    assert_eq!(events.len(), 2);
    let ms = |t: &Option<prost_types::Timestamp>| timestamp_to_ms(t.as_ref().expect("time set"));
    assert_eq!(ms(&meta(&events[0]).event_time), 1_631_082_844_000);
    assert_eq!(ms(&meta(&events[0]).sent_time), 1_631_082_845_000);
    assert_eq!(ms(&meta(&events[1]).event_time), 1_631_082_846_000);
    assert_eq!(ms(&meta(&events[1]).sent_time), 1_631_082_850_000);
    check(&events[0], EventKind::Message, "messages");
    check(&events[1], EventKind::Comment, "comments");
}

#[tokio::test]
async fn an_unreadable_time_leaves_event_time_unset_and_says_so() {
    let app = App::start().await;
    let payload = json!({"object": "instagram", "entry": [
        {"id": ACCOUNT, "time": 1_743_480_368_963i64, "messaging": [
            {"sender": {"id": USER}, "recipient": {"id": ACCOUNT}, "timestamp": "next tuesday", "message": {"mid": "m-when", "text": "t"}}
        ]},
        {"id": ACCOUNT, "time": "soon", "messaging": [
            {"sender": {"id": USER}, "recipient": {"id": ACCOUNT}, "message": {"mid": "m-when-2", "text": "t"}}
        ]}
    ]});
    let events = ingest_all(&app, &[payload]).await;
    assert_eq!(events.len(), 2);
    let m = meta(&events[0]);
    assert_eq!(m.event_time, None, "no made-up time");
    assert_eq!(timestamp_to_ms(m.sent_time.as_ref().unwrap()), 1_743_480_368_963);
    assert!(m.time_problem.contains("timestamp \"next tuesday\" is not a time"), "{}", m.time_problem);
    let m = meta(&events[1]);
    assert_eq!((m.event_time.as_ref(), m.sent_time.as_ref()), (None, None));
    assert!(m.time_problem.contains("time \"soon\" is not a time"), "{}", m.time_problem);
    let metrics = app.metrics().await;
    assert!(metrics.contains("igrelay_ingest_events_time_unreadable_total 2"), "{metrics}");
    app.stop().await;
}

// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use igrelay_graph::messaging::*;
use igrelay_graph::{ErrorClass, GraphError};
use serde_json::json;

#[tokio::test]
async fn text_message_answers_like_meta_and_is_delivered_in_order_with_an_echo() {
    let c = start().await;
    let (user, _) = c.dm("6100000000000101", "hello äö 😀").await;
    let r = c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "Hi there!")).await.unwrap();
    assert_eq!(r.value.recipient_id.as_deref(), Some(user.as_str()));
    assert!(r.value.message_id.as_deref().is_some_and(|m| !m.is_empty()));
    // Usage headers come with every answer.
    assert!(r.usage.app.is_some());
    assert_eq!(r.usage.business[0].id, c.ig);
    assert_eq!(r.usage.business[0].kind, "instagram");
    // The conversation log shows both messages in order.
    let log = c.emu.admin.messages(&c.ig, &user).await.unwrap();
    let msgs = log["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["inbound"], true);
    assert_eq!(msgs[0]["text"], "hello äö 😀");
    assert_eq!(msgs[1]["inbound"], false);
    assert_eq!(msgs[1]["text"], "Hi there!");
    assert_eq!(msgs[1]["mid"].as_str(), r.value.message_id.as_deref());
    // Meta echoes messages the app sent.
    let events = c.emu.admin.get("/_admin/webhooks/events").await.unwrap();
    let echo =
        events["events"].as_array().unwrap().iter().find(|e| e["item"]["message"]["is_echo"] == true).expect("echo");
    assert_eq!(echo["item"]["sender"]["id"], c.ig);
    assert_eq!(echo["item"]["recipient"]["id"], user);
    assert_eq!(echo["item"]["message"]["text"], "Hi there!");
}

#[tokio::test]
async fn every_message_kind_of_the_seeds_is_accepted() {
    let c = start().await;
    let (user, mid) = c.dm("6100000000000102", "hi").await;
    let media =
        c.emu.admin.post("/_admin/media", &json!({"account": c.ig})).await.unwrap()["id"].as_str().unwrap().to_owned();
    let up = c
        .client
        .upload_attachment(&c.auth, &c.ig, AttachmentKind::Image, "https://cdn.example/a.jpg", true)
        .await
        .unwrap();
    let button = |t: &str| Button::Postback { title: t.into(), payload: t.into() };
    let requests = vec![
        SendRequest::attachment(&user, Attachment::Image { payload: MediaSource::url("https://cdn.example/x.jpg") }),
        SendRequest::attachment(&user, Attachment::Audio { payload: MediaSource::url("https://cdn.example/x.mp3") }),
        SendRequest::attachment(&user, Attachment::Video { payload: MediaSource::url("https://cdn.example/x.mp4") }),
        SendRequest::attachment(
            &user,
            Attachment::Image { payload: MediaSource::attachment_id(up.value.attachment_id.clone()) },
        ),
        SendRequest::attachment(&user, Attachment::LikeHeart),
        SendRequest::attachment(&user, Attachment::MediaShare { payload: MediaShare { id: media.clone() } }),
        SendRequest::attachment(
            &user,
            Attachment::Template {
                payload: Template::Generic {
                    elements: (0..10)
                        .map(|i| GenericElement {
                            title: format!("Item {i}"),
                            subtitle: Some("x".repeat(80)),
                            image_url: Some("https://cdn.example/i.jpg".into()),
                            default_action: None,
                            buttons: vec![
                                button("a"),
                                button("b"),
                                Button::WebUrl { title: "w".into(), url: "https://example.com".into() },
                            ],
                        })
                        .collect(),
                },
            },
        ),
        SendRequest::attachment(
            &user,
            Attachment::Template {
                payload: Template::Button {
                    text: "t".repeat(640),
                    buttons: vec![button("1"), button("2"), button("3")],
                },
            },
        ),
        SendRequest::text(&user, "pick one")
            .with_quick_replies((0..13).map(|i| QuickReply::text(format!("q{i}"), format!("p{i}"))).collect()),
        SendRequest::text(&user, "€".repeat(333)),
        SendRequest::text(&user, "agent here").human_agent(),
    ];
    for r in &requests {
        let a = c.client.send_message(&c.auth, &c.ig, r).await.unwrap_or_else(|e| panic!("{r:?}: {e}"));
        assert!(a.value.message_id.is_some());
    }
    for action in [SenderAction::TypingOn, SenderAction::TypingOff, SenderAction::MarkSeen] {
        let a = c.client.send_message(&c.auth, &c.ig, &SendRequest::action(&user, action)).await.unwrap();
        assert_eq!(a.value.recipient_id.as_deref(), Some(user.as_str()));
        assert_eq!(a.value.message_id, None);
    }
    c.client.send_message(&c.auth, &c.ig, &SendRequest::react(&user, &mid, "love")).await.unwrap();
    let reacted = c.emu.with_state(|s| s.messages[&mid].reactions.get(&c.ig).cloned());
    assert_eq!(reacted.as_deref(), Some("love"));
    c.client.send_message(&c.auth, &c.ig, &SendRequest::unreact(&user, &mid)).await.unwrap();
    assert!(c.emu.with_state(|s| s.messages[&mid].reactions.is_empty()));
    let log = c.emu.admin.messages(&c.ig, &user).await.unwrap();
    assert_eq!(log["messages"].as_array().unwrap().len(), 1 + requests.len());
}

#[tokio::test]
async fn meta_limits_on_messages_are_enforced_with_code_100() {
    let c = start().await;
    let (user, _) = c.dm("6100000000000103", "hi").await;
    let button = |t: &str| Button::Postback { title: t.into(), payload: t.into() };
    let bad = vec![
        SendRequest::text(&user, "€".repeat(334)),
        SendRequest::text(&user, "x".repeat(1001)),
        SendRequest::text(&user, "q")
            .with_quick_replies((0..14).map(|i| QuickReply::text(format!("q{i}"), "p")).collect()),
        SendRequest::attachment(
            &user,
            Attachment::Template {
                payload: Template::Generic {
                    elements: (0..11)
                        .map(|i| GenericElement {
                            title: format!("{i}"),
                            subtitle: None,
                            image_url: None,
                            default_action: None,
                            buttons: vec![],
                        })
                        .collect(),
                },
            },
        ),
        SendRequest::attachment(
            &user,
            Attachment::Template {
                payload: Template::Generic {
                    elements: vec![GenericElement {
                        title: "t".repeat(81),
                        subtitle: None,
                        image_url: None,
                        default_action: None,
                        buttons: vec![],
                    }],
                },
            },
        ),
        SendRequest::attachment(
            &user,
            Attachment::Template {
                payload: Template::Generic {
                    elements: vec![GenericElement {
                        title: "t".into(),
                        subtitle: None,
                        image_url: None,
                        default_action: None,
                        buttons: vec![button("1"), button("2"), button("3"), button("4")],
                    }],
                },
            },
        ),
        SendRequest::attachment(
            &user,
            Attachment::Template { payload: Template::Button { text: "t".repeat(641), buttons: vec![button("1")] } },
        ),
        SendRequest::attachment(
            &user,
            Attachment::Template { payload: Template::Button { text: "t".into(), buttons: vec![] } },
        ),
        SendRequest::attachment(
            &user,
            Attachment::Template {
                payload: Template::Button {
                    text: "t".into(),
                    buttons: (0..4).map(|i| button(&i.to_string())).collect(),
                },
            },
        ),
        SendRequest::attachment(&user, Attachment::Image { payload: MediaSource::attachment_id("nope") }),
        SendRequest::attachment(&user, Attachment::MediaShare { payload: MediaShare { id: "17900000000000".into() } }),
        SendRequest::react(&user, "not-a-message", "love"),
    ];
    for r in &bad {
        let e = c.client.send_message(&c.auth, &c.ig, r).await.expect_err(&format!("{r:?} must fail"));
        assert_eq!(e.code().map(|c| c.0), Some(100), "{r:?}: {e}");
        assert_eq!(e.class(), ErrorClass::Permanent);
    }
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::text("6100000000099999", "x")).await.unwrap_err();
    assert_err(&e, 100, Some(2018001), permanent());
    // Nothing reached the conversation.
    assert_eq!(c.emu.admin.messages(&c.ig, &user).await.unwrap()["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_24_hour_and_human_agent_7_day_windows() {
    let c = start().await;
    // A user who only commented has no window.
    let (cid, _) = c.comment("6100000000000104", "nice").await;
    let commenter = c.emu.with_state(|s| s.comments[&cid].from_id.clone());
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&commenter, "hi")).await.unwrap_err();
    assert_err(&e, 10, Some(2534022), permanent());

    let (user, _) = c.dm("6100000000000105", "hi").await;
    c.emu.advance(23 * 3_600_000);
    c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "within 24h")).await.unwrap();
    c.emu.advance(2 * 3_600_000);
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "too late")).await.unwrap_err();
    assert_err(&e, 10, Some(2534022), permanent());
    let e =
        c.client.send_message(&c.auth, &c.ig, &SendRequest::action(&user, SenderAction::TypingOn)).await.unwrap_err();
    assert_err(&e, 10, Some(2534022), permanent());
    c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "agent").human_agent()).await.unwrap();
    c.emu.advance(6 * 24 * 3_600_000);
    let e = c
        .client
        .send_message(&c.auth, &c.ig, &SendRequest::text(&user, "agent, too late").human_agent())
        .await
        .unwrap_err();
    assert_err(&e, 10, Some(2534022), permanent());
    // A new message from the user opens the window again.
    c.dm(&user, "back").await;
    c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "welcome back")).await.unwrap();
    // Postbacks open it too.
    let (u2, _) = c.dm("6100000000000106", "x").await;
    c.emu.advance(2 * 24 * 3_600_000);
    c.emu
        .admin
        .simulate("postback", &json!({"account": c.ig, "from": u2, "title": "Talk to an agent", "payload": "CARE"}))
        .await
        .unwrap();
    c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&u2, "hello")).await.unwrap();
}

#[tokio::test]
async fn private_replies_one_per_comment_within_7_days() {
    let c = start().await;
    let (cid, _) = c.comment("6100000000000107", "how much?").await;
    let r = c.client.send_message(&c.auth, &c.ig, &SendRequest::private_reply(&cid, "It is cool")).await.unwrap();
    let author = c.emu.with_state(|s| s.comments[&cid].from_id.clone());
    assert_eq!(r.value.recipient_id.as_deref(), Some(author.as_str()));
    let log = c.emu.admin.messages(&c.ig, &author).await.unwrap();
    assert_eq!(log["messages"][0]["private_reply_to"], cid.as_str());
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::private_reply(&cid, "again")).await.unwrap_err();
    assert_err(&e, 100, Some(2534025), permanent());
    let e =
        c.client.send_message(&c.auth, &c.ig, &SendRequest::private_reply("18000000000000", "x")).await.unwrap_err();
    assert_err(&e, 100, Some(2534014), permanent());
    let (old, _) = c.comment("6100000000000108", "old").await;
    c.emu.advance(7 * 24 * 3_600_000 + 1);
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::private_reply(&old, "late")).await.unwrap_err();
    assert_err(&e, 10, Some(2534022), permanent());
}

#[tokio::test]
async fn rate_limits_per_class_throttle_with_613_and_usage_rises() {
    let c = start_with(|cfg| {
        cfg.rate_limits.send_per_s = 4;
        cfg.rate_limits.send_media_per_s = 1;
    })
    .await;
    let (user, _) = c.dm("6100000000000109", "hi").await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap();
        seen.push(r.usage.business[0].call_count);
    }
    assert_eq!(seen, vec![25, 50, 75, 100]);
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();
    assert_eq!(e.code(), Some((613, Some(2534040))));
    assert!(matches!(e.class(), ErrorClass::Throttled { .. }));
    // Audio and video have their own, smaller budget.
    let video =
        SendRequest::attachment(&user, Attachment::Video { payload: MediaSource::url("https://cdn.example/v.mp4") });
    c.client.send_message(&c.auth, &c.ig, &video).await.unwrap();
    let e = c.client.send_message(&c.auth, &c.ig, &video).await.unwrap_err();
    assert_eq!(e.code().map(|x| x.0), Some(613));
    // The next second has a fresh window.
    c.emu.advance(1_000);
    c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap();
    let calls = c.emu.admin.calls().await.unwrap();
    assert_eq!(calls["throttled"], 2);
    let messages = calls["calls"].as_array().unwrap().iter().find(|x| x["endpoint"] == "messages").unwrap().clone();
    assert_eq!(messages["calls"], 8);
    assert_eq!(messages["throttled"], 2);
}

#[tokio::test]
async fn buc_throttling_suggests_the_wait_from_the_headers() {
    let c = start_with(|cfg| cfg.rate_limits.buc_calls_per_24h = 2).await;
    c.client.subscribed_apps(&c.auth, &c.ig).await.unwrap();
    c.client.subscribed_apps(&c.auth, &c.ig).await.unwrap();
    let e = c.client.subscribed_apps(&c.auth, &c.ig).await.unwrap_err();
    assert_eq!(e.code(), Some((80002, None)));
    let usage = e.usage().unwrap();
    let minutes = usage.business[0].estimated_time_to_regain_access;
    assert!(minutes > 0);
    assert_eq!(
        e.class(),
        ErrorClass::Throttled { retry_after: std::time::Duration::from_secs(u64::from(minutes) * 60) }
    );
    assert_eq!(usage.max_percent(), 100);
}

#[tokio::test]
async fn conversations_api_is_limited_to_2_per_second_by_default() {
    let c = start_with(|cfg| cfg.rate_limits = igrelay_emulator::RateLimits::default()).await;
    c.dm("6100000000000110", "hi").await;
    c.client.conversations_page(&c.auth, &c.ig, None, None).await.unwrap();
    c.client.conversations_page(&c.auth, &c.ig, None, None).await.unwrap();
    let e = c.client.conversations_page(&c.auth, &c.ig, None, None).await.unwrap_err();
    assert_eq!(e.code().map(|x| x.0), Some(613));
    assert!(matches!(e, GraphError::Api(_)));
}

#[tokio::test]
async fn up_to_10_images_in_one_message() {
    let c = start().await;
    let (user, _) = c.dm("6100000000000111", "hi").await;
    let urls: Vec<String> = (0..11).map(|i| format!("https://cdn.example/{i}.jpg")).collect();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    c.client.send_message(&c.auth, &c.ig, &SendRequest::images(&user, &refs[..10])).await.unwrap();
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::images(&user, &refs)).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    let mut mixed = SendRequest::images(&user, &refs[..2]);
    mixed
        .message
        .as_mut()
        .unwrap()
        .attachments
        .push(Attachment::Audio { payload: MediaSource::url("https://cdn.example/a.mp3") });
    let e = c.client.send_message(&c.auth, &c.ig, &mixed).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    let log = c.emu.admin.messages(&c.ig, &user).await.unwrap();
    assert_eq!(log["messages"][1]["attachments"].as_array().unwrap().len(), 10);
}

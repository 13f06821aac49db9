//! Dispatch against the emulator playing Meta: every command type, every rejection reason,
//! every error class, idempotency and order. Real nats-server, real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use igrelay_core::v1::{
    self, ButtonType, MediaKind, RejectReason, SendCommand, command_outcome::Result as R, recipient::Target,
    send_command::Content,
};
use serde_json::json;
use support::{ACCOUNT, Harness};

fn cmd(id: &str, user: &str, content: Content) -> SendCommand {
    SendCommand {
        command_id: id.into(),
        account_id: ACCOUNT.into(),
        recipient: Some(v1::Recipient { target: Some(Target::Igsid(user.into())) }),
        content: Some(content),
        ..Default::default()
    }
}

fn text(id: &str, user: &str, t: &str) -> SendCommand {
    cmd(id, user, Content::Text(v1::TextContent { text: t.into(), quick_replies: vec![] }))
}

fn sent(o: &v1::CommandOutcome) -> &v1::Sent {
    match &o.result {
        Some(R::Sent(s)) => s,
        other => panic!("expected Sent, got {other:?}"),
    }
}

fn rejected(o: &v1::CommandOutcome) -> &v1::Rejected {
    match &o.result {
        Some(R::Rejected(r)) => r,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_type_is_delivered() {
    let h = Harness::start().await;
    let user = "5500000000000101";
    let mid = h.user_writes(user, "hi, do you ship?").await;
    h.wait_window(user).await;
    let media =
        h.emulator.admin.post("/_admin/media", &json!({"account": ACCOUNT, "caption": "our post"})).await.unwrap();
    let media_id = media["id"].as_str().unwrap().to_owned();

    let button = |t: ButtonType, title: &str| v1::TemplateButton {
        r#type: t as i32,
        title: title.into(),
        payload: "P".into(),
        url: "https://example.com/p".into(),
    };
    let commands = vec![
        cmd(
            "c-text-qr",
            user,
            Content::Text(v1::TextContent {
                text: "Pick one".into(),
                quick_replies: vec![v1::QuickReply { title: "Yes".into(), payload: "Y".into() }],
            }),
        ),
        cmd(
            "c-image",
            user,
            Content::Media(v1::MediaContent {
                kind: MediaKind::Image as i32,
                url: "https://cdn.example.com/a.jpg".into(),
            }),
        ),
        cmd(
            "c-audio",
            user,
            Content::Media(v1::MediaContent {
                kind: MediaKind::Audio as i32,
                url: "https://cdn.example.com/a.mp3".into(),
            }),
        ),
        cmd(
            "c-video",
            user,
            Content::Media(v1::MediaContent {
                kind: MediaKind::Video as i32,
                url: "https://cdn.example.com/a.mp4".into(),
            }),
        ),
        cmd(
            "c-file",
            user,
            Content::Media(v1::MediaContent {
                kind: MediaKind::File as i32,
                url: "https://cdn.example.com/a.pdf".into(),
            }),
        ),
        cmd("c-sticker", user, Content::Sticker(v1::StickerContent {})),
        cmd("c-share", user, Content::PostShare(v1::PostShareContent { media_id })),
        cmd(
            "c-generic",
            user,
            Content::GenericTemplate(v1::GenericTemplateContent {
                elements: vec![v1::TemplateElement {
                    title: "Shoe".into(),
                    subtitle: "Red".into(),
                    image_url: "https://cdn.example.com/s.jpg".into(),
                    default_action_url: "https://example.com/s".into(),
                    buttons: vec![button(ButtonType::Postback, "Buy"), button(ButtonType::WebUrl, "View")],
                }],
            }),
        ),
        cmd(
            "c-buttons",
            user,
            Content::ButtonTemplate(v1::ButtonTemplateContent {
                text: "What next?".into(),
                buttons: vec![button(ButtonType::Postback, "Talk to us")],
            }),
        ),
        cmd(
            "c-react",
            user,
            Content::React(v1::ReactContent { message_id: mid.clone(), reaction: "love".into(), unreact: false }),
        ),
        cmd(
            "c-unreact",
            user,
            Content::React(v1::ReactContent { message_id: mid.clone(), reaction: String::new(), unreact: true }),
        ),
        cmd(
            "c-typing",
            user,
            Content::SenderAction(v1::SenderActionContent { action: v1::SenderAction::TypingOn as i32 }),
        ),
        cmd(
            "c-seen",
            user,
            Content::SenderAction(v1::SenderActionContent { action: v1::SenderAction::MarkSeen as i32 }),
        ),
        SendCommand { tag: v1::MessageTag::HumanAgent as i32, ..text("c-human", user, "An agent here") },
    ];
    for c in commands.clone() {
        h.send(c).await;
    }
    for c in &commands {
        let o = h.outcome(&c.command_id).await;
        assert!(matches!(o.result, Some(R::Sent(_))), "{}: {o:?}", c.command_id);
        assert_eq!(o.attempts, 1);
    }
    // One outcome each on the wire, where JetStream's dedup cannot hide a second one.
    for c in &commands {
        h.assert_published_once(&c.command_id).await;
    }
    assert!(!sent(&h.outcome("c-text-qr").await).message_id.is_empty());

    // An uploaded attachment, then sent by id.
    h.nats
        .js
        .publish(
            igrelay_bus::subjects::upload_command(&igrelay_core::AccountId::parse(ACCOUNT).unwrap()),
            prost::Message::encode_to_vec(&v1::UploadAttachmentCommand {
                command_id: "c-upload".into(),
                account_id: ACCOUNT.into(),
                kind: MediaKind::Image as i32,
                url: "https://cdn.example.com/logo.png".into(),
                ..Default::default()
            })
            .into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let uploaded = sent(&h.outcome("c-upload").await).attachment_id.clone();
    assert!(!uploaded.is_empty());
    h.send(cmd(
        "c-by-id",
        user,
        Content::Attachment(v1::UploadedAttachmentContent { kind: MediaKind::Image as i32, attachment_id: uploaded }),
    ))
    .await;
    sent(&h.outcome("c-by-id").await);

    // A private reply to a comment.
    let c = h
        .emulator
        .admin
        .simulate("comment", &json!({"account": ACCOUNT, "username": "fan", "text": "price?"}))
        .await
        .unwrap();
    let comment_id = c["comment_id"].as_str().unwrap().to_owned();
    let mut pr = text("c-private", "", "DMing you the price");
    pr.recipient = Some(v1::Recipient { target: Some(Target::CommentId(comment_id.clone())) });
    h.send(pr.clone()).await;
    sent(&h.outcome("c-private").await);

    // A second private reply to the same comment is refused before any call.
    pr.command_id = "c-private-2".into();
    h.send(pr).await;
    let r = rejected(&h.outcome("c-private-2").await).clone();
    assert_eq!(r.reason, RejectReason::PrivateReplyNotAllowed as i32);
    assert_eq!(r.field, "recipient.comment_id");

    // The emulator received the messages in order, with the tag.
    let conv = h.conversation(user).await;
    let outbound: Vec<_> = conv.iter().filter(|m| m["inbound"] == false).collect();
    assert!(outbound.len() >= 11, "{conv:#?}");
    assert_eq!(outbound.first().unwrap()["text"], "Pick one");
    assert!(outbound.iter().any(|m| m["tag"] == "HUMAN_AGENT"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rejection_reason_before_any_call() {
    let h = Harness::start().await;
    let user = "5500000000000102";
    h.user_writes(user, "hello").await;
    h.wait_window(user).await;
    let before = h.graph_calls("messages").await;

    let cases: Vec<(SendCommand, RejectReason, &str)> = vec![
        (text("r-long", user, &"x".repeat(1001)), RejectReason::LimitExceeded, "text.text"),
        (
            cmd(
                "r-qr",
                user,
                Content::Text(v1::TextContent {
                    text: "pick".into(),
                    quick_replies: (0..14)
                        .map(|i| v1::QuickReply { title: format!("o{i}"), payload: "p".into() })
                        .collect(),
                }),
            ),
            RejectReason::LimitExceeded,
            "text.quick_replies",
        ),
        (
            cmd(
                "r-generic",
                user,
                Content::GenericTemplate(v1::GenericTemplateContent {
                    elements: (0..11)
                        .map(|i| v1::TemplateElement { title: format!("e{i}"), ..Default::default() })
                        .collect(),
                }),
            ),
            RejectReason::LimitExceeded,
            "generic_template.elements",
        ),
        (
            cmd(
                "r-buttons",
                user,
                Content::ButtonTemplate(v1::ButtonTemplateContent {
                    text: "t".into(),
                    buttons: (0..4)
                        .map(|_| v1::TemplateButton {
                            r#type: ButtonType::Postback as i32,
                            title: "b".into(),
                            ..Default::default()
                        })
                        .collect(),
                }),
            ),
            RejectReason::LimitExceeded,
            "button_template.buttons",
        ),
        (
            cmd(
                "r-url",
                user,
                Content::Media(v1::MediaContent { kind: MediaKind::Image as i32, url: "ftp://x".into() }),
            ),
            RejectReason::Invalid,
            "media.url",
        ),
        (SendCommand { recipient: None, ..text("r-norecipient", user, "x") }, RejectReason::Invalid, "recipient"),
        (SendCommand { content: None, ..text("r-nocontent", user, "x") }, RejectReason::Invalid, "content"),
        (text("r-nowindow", "5500000000009999", "cold outreach"), RejectReason::WindowClosed, "recipient.igsid"),
        (
            SendCommand { account_id: "17841499999999999".into(), ..text("r-account", user, "x") },
            RejectReason::UnknownAccount,
            "account_id",
        ),
    ];
    for (c, _, _) in &cases {
        h.send(c.clone()).await;
    }
    for (c, reason, field) in &cases {
        let o = h.outcome(&c.command_id).await;
        let r = rejected(&o);
        assert_eq!((r.reason, r.field.as_str()), (*reason as i32, *field), "{}: {r:?}", c.command_id);
        assert!(!r.detail.is_empty());
        assert_eq!(o.attempts, 0);
    }
    assert_eq!(h.graph_calls("messages").await, before, "no Graph call for a rejected command");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_closes() {
    let h = Harness::start_with(|_, d| {
        d.window = Duration::from_millis(1500);
        d.window_grace = Duration::from_millis(100);
    })
    .await;
    let user = "5500000000000103";
    h.user_writes(user, "hi").await;
    h.wait_window(user).await;
    h.send(text("w-open", user, "in time")).await;
    sent(&h.outcome("w-open").await);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    h.send(text("w-closed", user, "too late")).await;
    let o = h.outcome("w-closed").await;
    assert_eq!(rejected(&o).reason, RejectReason::WindowClosed as i32);
    // HUMAN_AGENT extends it.
    h.send(SendCommand { tag: v1::MessageTag::HumanAgent as i32, ..text("w-agent", user, "agent") }).await;
    sent(&h.outcome("w-agent").await);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_throttled_and_permanent_errors() {
    let h = Harness::start_with(|_, d| {
        d.retry_initial = Duration::from_millis(20);
        d.throttle_wait = Duration::from_millis(200);
    })
    .await;
    let user = "5500000000000104";
    h.user_writes(user, "hi").await;
    h.wait_window(user).await;

    h.fault(json!({"endpoint": "messages", "times": 2})).await;
    h.send(text("e-transient", user, "retry me")).await;
    let o = h.outcome("e-transient").await;
    sent(&o);
    assert_eq!(o.attempts, 3, "two transient failures, then success");

    h.fault(json!({"endpoint": "messages", "times": 1, "error": {"code": 613, "subcode": 2534040, "message": "Calls to this api have exceeded the rate limit.", "status": 400}})).await;
    h.send(text("e-throttled", user, "after a pause")).await;
    let o = h.outcome("e-throttled").await;
    sent(&o);
    assert_eq!(o.attempts, 2);

    h.fault(json!({"endpoint": "messages", "times": 1, "error": {"code": 100, "subcode": 2018001, "message": "No matching user found", "status": 400, "is_transient": false}})).await;
    h.send(text("e-permanent", user, "nope")).await;
    match h.outcome("e-permanent").await.result {
        Some(R::Failed(f)) => {
            assert_eq!((f.code, f.subcode), (100, 2018001));
            assert!(f.message.contains("No matching user"));
            assert_eq!(f.error_class, v1::ErrorClass::Permanent as i32);
        }
        other => panic!("expected Failed, got {other:?}"),
    }

    // A deadline that passes during retries ends as Expired.
    h.fault(json!({"endpoint": "messages", "times": 1000})).await;
    let deadline = igrelay_core::time::timestamp_from_ms(igrelay_core::time::now_ms() + 400);
    h.send(SendCommand { deadline: Some(deadline), ..text("e-expired", user, "never") }).await;
    match h.outcome("e-expired").await.result {
        Some(R::Expired(e)) => assert!(!e.last_error.is_empty()),
        other => panic!("expected Expired, got {other:?}"),
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_pauses_the_account_and_a_new_token_resumes_it() {
    let h = Harness::start().await;
    let user = "5500000000000105";
    h.user_writes(user, "hi").await;
    h.wait_window(user).await;
    h.emulator.admin.post("/_admin/tokens", &json!({"token": support::TOKEN, "state": "expired"})).await.unwrap();
    h.send(text("t-1", user, "first")).await;
    h.send(text("t-2", user, "second")).await;

    // The account is marked and an event says so; the commands wait.
    let mut status = None;
    for _ in 0..200 {
        status = h.accounts.get(ACCOUNT).await.unwrap().map(|a| a.status);
        if status == Some(v1::AccountStatus::NeedsReauth as i32) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, Some(v1::AccountStatus::NeedsReauth as i32));
    let events =
        igrelay_testkit::events::read_all(&h.nats.js, &format!("ig.v1.evt.{ACCOUNT}.account_status")).await.unwrap();
    assert_eq!(events.len(), 1);
    assert!(h.outcome_within("t-1", 10).await.is_none(), "commands wait while the account needs re-authorisation");

    // A new token (here: the same one, valid again) resumes the account; order is kept.
    h.emulator.admin.post("/_admin/tokens", &json!({"token": support::TOKEN, "state": "valid"})).await.unwrap();
    support::register(&h.accounts, support::TOKEN).await;
    sent(&h.outcome("t-1").await);
    sent(&h.outcome("t-2").await);
    let texts: Vec<_> =
        h.conversation(user).await.into_iter().filter(|m| m["inbound"] == false).map(|m| m["text"].clone()).collect();
    assert_eq!(texts, [json!("first"), json!("second")]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_command_twice_sends_once_and_order_per_recipient_holds() {
    let h = Harness::start().await;
    let user = "5500000000000106";
    h.user_writes(user, "hi").await;
    h.wait_window(user).await;
    let before = h.graph_calls("messages").await;
    let c = text("i-1", user, "only once");
    h.send(c.clone()).await;
    sent(&h.outcome("i-1").await);
    // Submitted again under another NATS message id, so only dispatch's own record can catch it.
    let subject = igrelay_bus::subjects::send_command(&igrelay_core::AccountId::parse(ACCOUNT).unwrap());
    h.send_raw(&subject, "another-nats-id", &prost::Message::encode_to_vec(&c)).await;
    // A different command reusing the id is refused.
    h.send_raw(&subject, "third-nats-id", &prost::Message::encode_to_vec(&text("i-1", user, "something else"))).await;
    // Then a burst to one recipient: delivered in order.
    for i in 0..30 {
        h.send(text(&format!("o-{i}"), user, &format!("msg {i}"))).await;
    }
    sent(&h.outcome("o-29").await);
    // In the stream: one Sent outcome for i-1; the reuse with other content gets its own
    // Rejected outcome (a conflict), never the old outcome for new content.
    let outcomes: Vec<_> = h.outcomes().await.into_iter().filter(|(_, o)| o.command_id == "i-1").collect();
    let sent_n = outcomes.iter().filter(|(_, o)| matches!(o.result, Some(R::Sent(_)))).count();
    assert_eq!(sent_n, 1, "exactly one Sent outcome for the command id: {outcomes:?}");
    let conflicts = outcomes
        .iter()
        .filter(|(_, o)| {
            matches!(&o.result, Some(R::Rejected(r)) if r.reason == v1::RejectReason::DuplicateIdConflict as i32)
        })
        .count();
    assert_eq!(conflicts, 1, "one conflict for the reused id with new content: {outcomes:?}");
    // On the wire: the redelivery of the same content republished the one recorded outcome
    // (byte-identical), never a new one; the conflict is the only other publish.
    let wire: Vec<v1::CommandOutcome> =
        h.wire_outcomes("i-1").await.into_iter().map(|p| prost::Message::decode(p).unwrap()).collect();
    let sent_copies: Vec<_> = wire.iter().filter(|o| matches!(o.result, Some(R::Sent(_)))).collect();
    assert_eq!(sent_copies.len(), 2, "the original and one republication: {wire:?}");
    assert_eq!(sent_copies[0], sent_copies[1], "a republication is the same outcome");
    assert_eq!(wire.len(), 3, "two Sent publishes and one conflict: {wire:?}");
    for i in 0..30 {
        h.assert_published_once(&format!("o-{i}")).await;
    }
    assert_eq!(h.graph_calls("messages").await - before, 31, "one call for i-1 and one per burst message");
    assert_eq!(h.copies(user, "only once").await, 1, "Meta received i-1 once");
    let texts: Vec<String> = h
        .conversation(user)
        .await
        .into_iter()
        .filter(|m| m["inbound"] == false)
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> =
        std::iter::once("only once".to_owned()).chain((0..30).map(|i| format!("msg {i}"))).collect();
    assert_eq!(texts, expected);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_without_throttle_errors() {
    let h = Harness::start_with(|em, d| {
        em.rate_limits.send_per_s = 20;
        d.limits.send_per_s = 20;
    })
    .await;
    let users: Vec<String> = (0..4).map(|i| format!("55000000000002{i:02}")).collect();
    for u in &users {
        h.user_writes(u, "hi").await;
    }
    for u in &users {
        h.wait_window(u).await;
    }
    for i in 0..60 {
        let u = &users[i % users.len()];
        h.send(text(&format!("rl-{i}"), u, &format!("m{i}"))).await;
    }
    for i in 0..60 {
        sent(&h.outcome(&format!("rl-{i}")).await);
    }
    assert_eq!(h.throttled().await, 0, "the emulator saw no call over its limit");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_command_is_dead_lettered() {
    let h = Harness::start().await;
    h.send_raw(&format!("ig.v1.cmd.send.{ACCOUNT}"), "junk-1", b"\xff\xff not protobuf").await;
    let mut n = 0;
    for _ in 0..200 {
        n = igrelay_testkit::events::count(&h.nats.js, "IGRELAY_DLQ").await.unwrap_or(0);
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(n, 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_of_sent_messages_carry_the_command_id() {
    let h = Harness::start().await;
    let user = "5500000000000107";
    h.user_writes(user, "hi").await;
    h.wait_window(user).await;
    h.send(text("echo-1", user, "this comes back as an echo")).await;
    let mid = sent(&h.outcome("echo-1").await).message_id.clone();
    let mut echo = None;
    for _ in 0..200 {
        let events =
            igrelay_testkit::events::read_all(&h.nats.js, &format!("ig.v1.evt.{ACCOUNT}.message_echo")).await.unwrap();
        echo = events.into_iter().find_map(|e| match e.event.payload {
            Some(v1::event::Payload::Message(m)) if m.mid == mid => Some(m),
            _ => None,
        });
        if echo.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let echo = echo.expect("the emulator echoes sent messages through ingest");
    assert!(echo.is_echo);
    assert_eq!(echo.sent_by_command_id, "echo-1", "the echo is recognised as igrelay's own message");
    h.stop().await;
}

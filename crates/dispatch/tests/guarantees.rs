//! Dispatch's promises, each in a test that fails when the promise breaks (see docs/testing.md):
//! one call per command through a call slower than `ack_wait`, per-recipient order through
//! retries, the audio/video and private-reply rate classes, Meta's windows at their edges, and a
//! harness that reports a dispatch start-up error instead of a timeout.
//! Real nats-server, real HTTP, the emulator playing Meta.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use igrelay_core::v1::{self, MediaKind, RejectReason, SendCommand, command_outcome::Result as R, recipient::Target};
use igrelay_dispatch::DispatchConfig;
use serde_json::{Value, json};
use support::{ACCOUNT, Harness};

const DAY_MS: i64 = 86_400_000;

fn text(id: &str, user: &str, t: &str) -> SendCommand {
    SendCommand {
        command_id: id.into(),
        account_id: ACCOUNT.into(),
        recipient: Some(v1::Recipient { target: Some(Target::Igsid(user.into())) }),
        content: Some(v1::send_command::Content::Text(v1::TextContent { text: t.into(), quick_replies: vec![] })),
        ..Default::default()
    }
}

fn private_reply(id: &str, comment: &str, t: &str) -> SendCommand {
    SendCommand {
        recipient: Some(v1::Recipient { target: Some(Target::CommentId(comment.into())) }),
        ..text(id, "", t)
    }
}

fn sent(o: &v1::CommandOutcome) -> &v1::Sent {
    match &o.result {
        Some(R::Sent(s)) => s,
        other => panic!("{}: expected Sent, got {other:?}", o.command_id),
    }
}

/// Calls the emulator answered with an error (faults, throttling), every endpoint.
async fn emulator_errors(h: &Harness) -> u64 {
    let v = h.emulator.admin.calls().await.unwrap();
    v["calls"].as_array().unwrap().iter().map(|c| c["errors"].as_u64().unwrap_or(0)).sum()
}

/// Waits (bounded) until dispatch learned the comment from the events stream.
async fn wait_comment(h: &Harness, comment: &str) {
    let kv = h.nats.js.get_key_value("igrelay_windows").await;
    for _ in 0..200 {
        if let Ok(kv) = &kv
            && kv.get(format!("c.{ACCOUNT}.{comment}")).await.ok().flatten().is_some()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("comment {comment} never learned");
}

async fn comment(h: &Harness, from: &str, text: &str) -> String {
    let c =
        h.emulator.admin.simulate("comment", &json!({"account": ACCOUNT, "from": from, "text": text})).await.unwrap();
    c["comment_id"].as_str().unwrap().to_owned()
}

/// A Graph call slower than `ack_wait` must not be redelivered and made again: dispatch keeps
/// the delivery alive with progress acks while the call runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_slower_than_ack_wait_is_made_once() {
    let h = Harness::start_with(|_, d| d.ack_wait = Duration::from_secs(3)).await;
    let user = "5500000000000401";
    h.user_writes(user, "hi").await;
    h.wait_window(user).await;
    let before = h.graph_calls("messages").await;
    // Meta takes 4.5 s to handle the call, well past ack_wait.
    h.fault(json!({"endpoint": "messages", "account": ACCOUNT, "latency_ms": 4500})).await;
    h.send(text("slow-1", user, "a slow call")).await;
    let o = h.outcome_within("slow-1", 600).await.expect("an outcome for slow-1");
    sent(&o);
    assert_eq!(o.attempts, 1);
    h.emulator.admin.delete("/_admin/faults").await.unwrap();
    // A command behind it in the same lane: once it is done, any redelivered copy of slow-1
    // (queued before it) has been handled too.
    h.send(text("slow-2", user, "after the slow call")).await;
    sent(&h.outcome("slow-2").await);
    assert_eq!(h.graph_calls("messages").await - before, 2, "one call for each command");
    assert_eq!(h.copies(user, "a slow call").await, 1, "Meta received slow-1 once");
    h.assert_published_once("slow-1").await;
    h.stop().await;
}

/// Transient errors in the middle of a burst to one user: the failing command holds its lane
/// while it retries, so no later command overtakes it, and each message reaches Meta once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_holds_through_retries() {
    let h = Harness::start_with(|_, d| {
        d.retry_initial = Duration::from_millis(20);
        d.retry_max = Duration::from_millis(100);
    })
    .await;
    let user = "5500000000000402";
    h.user_writes(user, "hi").await;
    h.wait_window(user).await;
    const N: usize = 30;
    for i in 0..N {
        if i == 8 {
            // From here on, 40 % of calls fail with Meta's transient error (code 2).
            h.fault(json!({"endpoint": "messages", "account": ACCOUNT, "error_rate": 0.4})).await;
        }
        h.send(text(&format!("ord-{i}"), user, &format!("m{i}"))).await;
    }
    let mut attempts = 0;
    for i in 0..N {
        let o = h.outcome(&format!("ord-{i}")).await;
        sent(&o);
        attempts += o.attempts;
    }
    h.emulator.admin.delete("/_admin/faults").await.unwrap();
    let texts: Vec<String> = h
        .conversation(user)
        .await
        .into_iter()
        .filter(|m| m["inbound"] == false)
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "order as accepted, each message once");
    assert!(attempts > N as u32, "the fault made some calls fail and be retried ({attempts} attempts)");
    assert!(emulator_errors(&h).await > 0);
    h.stop().await;
}

/// Audio and video have their own, lower limit (10/s): a burst of them stays within it, so
/// the emulator (which enforces Meta's limits) throttles none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_and_video_keep_their_own_limit() {
    let h = Harness::start_with(|em, d| {
        em.rate_limits.send_media_per_s = 10;
        em.rate_limits.send_per_s = 300;
        d.limits.media_per_s = 10;
    })
    .await;
    let users: Vec<String> = (0..4).map(|i| format!("55000000000004{i:02}")).collect();
    for u in &users {
        h.user_writes(u, "hi").await;
    }
    for u in &users {
        h.wait_window(u).await;
    }
    const N: usize = 30;
    for i in 0..N {
        let kind = if i % 2 == 0 { MediaKind::Audio } else { MediaKind::Video };
        let c = SendCommand {
            content: Some(v1::send_command::Content::Media(v1::MediaContent {
                kind: kind as i32,
                url: format!("https://cdn.example.com/clip-{i}.mp4"),
            })),
            ..text(&format!("av-{i}"), &users[i % users.len()], "")
        };
        h.send(c).await;
    }
    for i in 0..N {
        let o = h.outcome(&format!("av-{i}")).await;
        sent(&o);
        assert_eq!(o.attempts, 1, "{o:?}");
    }
    let calls = h.emulator.admin.calls().await.unwrap();
    assert_eq!(calls["throttled"], 0, "no audio/video call over 10/s: {calls}");
    assert_eq!(h.graph_calls("messages").await, N as u64);
    h.stop().await;
}

/// Private replies have an hourly budget (Meta: 750/h; 3/h here): the fourth waits for the next
/// hour, so before its deadline it expires without a call. The emulator allows 4/h, so its usage
/// headers (at 100 % they pause the account too) do not stand in for dispatch's own limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_replies_keep_their_hourly_limit() {
    let h = Harness::start_with(|em, d| {
        em.rate_limits.private_replies_per_h = 4;
        d.limits.private_replies_per_h = 3;
    })
    .await;
    let mut comments = Vec::new();
    for i in 0..4 {
        comments.push(comment(&h, &format!("55000000000004{:02}", 50 + i), &format!("price {i}?")).await);
    }
    for c in &comments {
        wait_comment(&h, c).await;
    }
    for (i, c) in comments.iter().enumerate().take(3) {
        h.send(private_reply(&format!("pr-{i}"), c, "DMing you")).await;
        sent(&h.outcome(&format!("pr-{i}")).await);
    }
    let deadline = igrelay_core::time::timestamp_from_ms(igrelay_core::time::now_ms() + 3000);
    h.send(SendCommand { deadline: Some(deadline), ..private_reply("pr-3", &comments[3], "DMing you") }).await;
    match h.outcome("pr-3").await.result {
        Some(R::Expired(e)) => assert!(e.last_error.contains("rate limit"), "{e:?}"),
        other => panic!("the fourth private reply within the hour must wait, got {other:?}"),
    }
    let calls = h.emulator.admin.calls().await.unwrap();
    assert_eq!(calls["throttled"], 0, "no private reply over the hourly limit: {calls}");
    assert_eq!(h.graph_calls("messages").await, 3, "the fourth never reached Meta");
    h.stop().await;
}

/// Meta's windows at their edges, with the default configuration (24 h, 7 days): the user's
/// message and the comment are dated by the emulator's clock, moved back in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_at_their_edges() {
    let h = Harness::start_with(|_, d| d.window_grace = Duration::from_millis(300)).await;
    let (eight_days, six_days, commenter) = ("5500000000000410", "5500000000000411", "5500000000000412");
    // Each webhook is awaited before the clock moves on: a `changes` entry is dated when the
    // emulator sends it (Meta's `entry.time`), not when the comment was made.
    h.emulator.advance(-8 * DAY_MS);
    h.user_writes(eight_days, "wrote 8 days ago").await;
    let old_comment = comment(&h, "5500000000000413", "8-day-old comment").await;
    h.wait_window(eight_days).await;
    wait_comment(&h, &old_comment).await;
    h.emulator.advance(2 * DAY_MS);
    h.user_writes(six_days, "wrote 6 days ago").await;
    h.wait_window(six_days).await;
    h.emulator.advance(6 * DAY_MS);
    let fresh_comment = comment(&h, commenter, "only a comment, never a DM").await;
    wait_comment(&h, &fresh_comment).await;
    let before = h.graph_calls("messages").await;

    let human = |c: SendCommand| SendCommand { tag: v1::MessageTag::HumanAgent as i32, ..c };
    h.send(text("w-6d", six_days, "plain text after 6 days")).await;
    h.send(human(text("w-6d-agent", six_days, "an agent after 6 days"))).await;
    h.send(human(text("w-8d-agent", eight_days, "an agent after 8 days"))).await;
    h.send(text("w-commenter", commenter, "a DM to someone who only commented")).await;
    h.send(private_reply("w-old-comment", &old_comment, "a private reply after 8 days")).await;
    h.send(private_reply("w-fresh-comment", &fresh_comment, "a private reply at once")).await;

    // Every edge is checked and all wrong ones reported together.
    let mut wrong = Vec::new();
    let mut expect = |id: &str, o: v1::CommandOutcome, want: Option<(RejectReason, &str)>| {
        let ok = match (&o.result, want) {
            (Some(R::Rejected(r)), Some((reason, field))) => {
                r.reason == reason as i32 && r.field == field && o.attempts == 0
            }
            (Some(R::Sent(_)), None) => true,
            _ => false,
        };
        if !ok {
            wrong.push(format!("{id}: expected {want:?} (None = sent), got {o:?}"));
        }
    };
    expect("w-6d", h.outcome("w-6d").await, Some((RejectReason::WindowClosed, "recipient.igsid")));
    expect("w-6d-agent", h.outcome("w-6d-agent").await, None);
    expect("w-8d-agent", h.outcome("w-8d-agent").await, Some((RejectReason::WindowClosed, "recipient.igsid")));
    expect("w-commenter", h.outcome("w-commenter").await, Some((RejectReason::WindowClosed, "recipient.igsid")));
    let old = h.outcome("w-old-comment").await;
    expect("w-old-comment", old, Some((RejectReason::PrivateReplyNotAllowed, "recipient.comment_id")));
    expect("w-fresh-comment", h.outcome("w-fresh-comment").await, None);
    assert!(wrong.is_empty(), "windows on the wrong side of their edges:\n{}", wrong.join("\n"));
    assert_eq!(h.graph_calls("messages").await - before, 2, "only the two allowed messages were sent");
    let agent: Vec<Value> = h.conversation(six_days).await.into_iter().filter(|m| m["inbound"] == false).collect();
    assert_eq!(agent.len(), 1);
    assert_eq!(agent[0]["tag"], "HUMAN_AGENT");
    h.stop().await;
}

/// A dispatch that cannot start says why at once (not as a timeout waiting for an outcome).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_start_up_error_is_reported_at_once() {
    let h = Harness::start().await;
    let bad = DispatchConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ack_wait: Duration::from_secs(1),
        ..Default::default()
    };
    let err = h.try_spawn_dispatch(bad).await.unwrap_err();
    assert!(format!("{err:#}").contains("dispatch.ack_wait"), "the start-up error itself: {err:#}");
    h.stop().await;
}

/// Member ids (`m.<id>` keys) of the dispatch processes alive in the lease bucket.
async fn members(kv: &async_nats::jetstream::kv::Store) -> Vec<String> {
    use futures::StreamExt as _;
    let mut out = Vec::new();
    if let Ok(mut keys) = kv.keys().await {
        while let Some(Ok(k)) = keys.next().await {
            if let Some(m) = k.strip_prefix("m.") {
                out.push(m.to_owned());
            }
        }
    }
    out
}

/// A process leaving gracefully hands its partitions over: the command in hand finishes, the
/// queued ones go back to the stream and are served by the next owner in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_holds_across_a_graceful_handover() {
    let h = Harness::start().await;
    let user = "5500000000000420";
    h.user_writes(user, "hi").await;
    h.wait_window(user).await;
    let kv = h.nats.js.get_key_value("igrelay_dispatch").await.unwrap();
    let first = members(&kv).await;
    let second_stop =
        h.spawn_dispatch(DispatchConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() }).await;
    // Wait until the second process holds partitions of its own.
    let mut second = String::new();
    for _ in 0..400 {
        if let Some(m) = members(&kv).await.into_iter().find(|m| !first.contains(m)) {
            second = m;
            let mut holds = false;
            for p in 0..4 {
                holds |= kv.get(format!("p.{p}")).await.ok().flatten().is_some_and(|v| v == second.as_bytes());
            }
            if holds {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!second.is_empty(), "the second dispatch process joined");

    // Calls in flight all the time: Meta holds each answer 200 ms.
    h.fault(json!({"endpoint": "messages", "answer_delay_ms": 200})).await;
    const N: usize = 30;
    for i in 0..N {
        h.send(text(&format!("ho-{i}"), user, &format!("h{i}"))).await;
    }
    h.outcome("ho-4").await;
    // The owner of the account's partition leaves.
    let stream = h.nats.js.get_stream("IGRELAY_COMMANDS").await.unwrap();
    let mut owner = None;
    for p in 0..4 {
        if stream.get_last_raw_message_by_subject(&format!("ig.v1.cmd.send.{p}.{ACCOUNT}")).await.is_ok() {
            owner = kv.get(format!("p.{p}")).await.ok().flatten();
        }
    }
    let owner = owner.expect("the account's partition is held while commands wait");
    if owner == second.as_bytes() {
        second_stop.cancel()
    } else {
        h.first_dispatch.cancel()
    }
    for i in 0..N {
        sent(&h.outcome(&format!("ho-{i}")).await);
    }
    let texts: Vec<String> = h
        .conversation(user)
        .await
        .into_iter()
        .filter(|m| m["inbound"] == false)
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("h{i}")).collect();
    assert_eq!(texts, expected, "order as accepted across the handover, each message once");
    h.stop().await;
}

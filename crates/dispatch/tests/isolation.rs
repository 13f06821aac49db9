//! Tenant isolation in dispatch: one account never stalls another in the same partition, the
//! subject decides whose command it is, command ids are scoped by account, and caller-supplied
//! times cannot break anything. Real nats-server, the emulator playing Meta, real dispatch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use igrelay_core::v1::{
    self, AccountStatus, CommandOutcome, MediaKind, RejectReason, SendCommand, command_outcome::Result as R,
    recipient::Target, send_command::Content,
};
use igrelay_dispatch::DispatchConfig;
use serde_json::json;
use support::{ACCOUNT, Harness, TOKEN};

const TOKEN_B: &str = "IGAAemulatortokenB";
const PARTITIONS: u32 = 4; // as the harness configures

/// nats-server's `partition(n, …)` transform: FNV-1a (32 bit) of the token, modulo n.
fn partition_of(account: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in account.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % PARTITIONS
}

/// A second account stored in the same partition as ACCOUNT, so both share its consumer, its
/// in-flight slots and its fetch budget.
fn neighbour() -> String {
    (2..).map(|i| format!("178414000000{i:05}")).find(|c| partition_of(c) == partition_of(ACCOUNT)).unwrap()
}

async fn add_account(h: &Harness, id: &str, token: &str) {
    h.emulator.admin.post("/_admin/accounts", &json!({"ig_id": id, "token": token})).await.unwrap();
    let account =
        v1::Account { account_id: id.into(), login_type: v1::LoginType::Instagram as i32, ..Default::default() };
    h.accounts.put(account, token).await.unwrap();
}

/// A user writes to `account`; waits until dispatch learned the window.
async fn open_window(h: &Harness, account: &str, user: &str) {
    h.emulator.admin.simulate_dm(account, user, "hi").await.unwrap();
    let kv = h.nats.js.get_key_value("igrelay_windows").await.unwrap();
    for _ in 0..400 {
        if kv.get(format!("w.{account}.{user}")).await.ok().flatten().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("window of {user} on {account} never learned");
}

fn text(account: &str, id: &str, user: &str, t: &str) -> SendCommand {
    SendCommand {
        command_id: id.into(),
        account_id: account.into(),
        recipient: Some(v1::Recipient { target: Some(Target::Igsid(user.into())) }),
        content: Some(Content::Text(v1::TextContent { text: t.into(), quick_replies: vec![] })),
        ..Default::default()
    }
}

/// Publishes `payload` on `ig.v1.cmd.<kind>.<subject_account>` with its own NATS message id.
async fn publish(h: &Harness, kind: &str, subject_account: &str, nats_id: &str, payload: &impl prost::Message) {
    h.send_raw(&format!("ig.v1.cmd.{kind}.{subject_account}"), nats_id, &payload.encode_to_vec()).await;
}

async fn wait_status(h: &Harness, account: &str, status: AccountStatus) {
    for _ in 0..400 {
        if h.accounts.get(account).await.unwrap().map(|a| a.status) == Some(status as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("account {account} never became {status:?}");
}

/// Every outcome of `command_id` (on any account's subject).
async fn outcomes_of(h: &Harness, command_id: &str) -> Vec<(String, CommandOutcome)> {
    h.outcomes().await.into_iter().filter(|(_, o)| o.command_id == command_id).collect()
}

/// Waits (bounded) until `pred` holds for the outcomes of `command_id`.
async fn wait_outcomes(
    h: &Harness,
    command_id: &str,
    pred: impl Fn(&[(String, CommandOutcome)]) -> bool,
) -> Vec<(String, CommandOutcome)> {
    let mut last = Vec::new();
    for _ in 0..400 {
        last = outcomes_of(h, command_id).await;
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("outcomes of {command_id} never as expected: {last:?}");
}

fn is_sent(o: &CommandOutcome) -> bool {
    matches!(o.result, Some(R::Sent(_)))
}

fn outbound(conv: &serde_json::Value) -> Vec<String> {
    let list = conv["messages"].as_array().cloned().or_else(|| conv.as_array().cloned()).unwrap_or_default();
    list.iter().filter(|m| m["inbound"] == false).filter_map(|m| m["text"].as_str().map(str::to_owned)).collect()
}

fn test_dispatch_config() -> DispatchConfig {
    DispatchConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_in_flight: 2,
        ack_wait: Duration::from_secs(3),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_account_never_stalls_its_neighbour() {
    let (h, d1) = Harness::start_with_proc(|_, d| *d = test_dispatch_config()).await;
    let b = neighbour();
    add_account(&h, &b, TOKEN_B).await;
    // More recipients of the paused account than in-flight slots.
    let users_a: Vec<String> = (0..4).map(|i| format!("55000000000011{i:02}")).collect();
    let users_b: Vec<String> = (0..3).map(|i| format!("55000000000012{i:02}")).collect();
    for u in &users_a {
        open_window(&h, ACCOUNT, u).await;
    }
    for u in &users_b {
        open_window(&h, &b, u).await;
    }

    // A's token is revoked at Meta; A's commands meet it and the account is marked.
    h.emulator.admin.post("/_admin/tokens", &json!({"token": TOKEN, "state": "revoked"})).await.unwrap();
    let mut a_ids = Vec::new();
    for i in 0..3 {
        for u in &users_a {
            let id = format!("a-{u}-{i}");
            h.send(text(ACCOUNT, &id, u, &format!("a{i}"))).await;
            a_ids.push(id);
        }
    }
    wait_status(&h, ACCOUNT, AccountStatus::NeedsReauth).await;

    // B's commands flow meanwhile, all of them.
    for i in 0..3 {
        for u in &users_b {
            h.send(text(&b, &format!("b-{u}-{i}"), u, &format!("b{i}"))).await;
        }
    }
    for i in 0..3 {
        for u in &users_b {
            let o = h.outcome(&format!("b-{u}-{i}")).await;
            assert!(is_sent(&o), "B's command while A is paused: {o:?}");
        }
    }
    for id in &a_ids {
        assert!(outcomes_of(&h, id).await.is_empty(), "{id} must wait while A needs re-authorisation");
    }

    // Three ack_waits of pause: parked commands are neither redelivered nor queued twice.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let consumer = format!("dispatch-p{}", partition_of(ACCOUNT));
    let info = h.nats.js.get_stream("IGRELAY_COMMANDS").await.unwrap().consumer_info(&consumer).await.unwrap();
    assert_eq!(info.num_redelivered, 0, "parked commands are kept alive, not redelivered: {info:?}");
    let queued = d1.metric("igrelay_dispatch_queued").await.expect("queued gauge");
    assert!(queued <= a_ids.len() as f64, "queued {queued} > {} commands: copies were queued", a_ids.len());
    assert_eq!(d1.metric("igrelay_dispatch_parked_accounts").await, Some(1.0));

    // Shutdown during the pause finishes promptly and hands the parked commands back.
    d1.stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), d1.task).await;
    assert!(stopped.is_ok(), "dispatch did not stop during the pause");

    // A new token on a new dispatch process: every A command goes out, in order per recipient.
    h.emulator.admin.post("/_admin/tokens", &json!({"token": TOKEN, "state": "valid"})).await.unwrap();
    support::register(&h.accounts, TOKEN).await;
    let _d2 = h.spawn_dispatch_proc(test_dispatch_config()).await;
    for id in &a_ids {
        let all = wait_outcomes(&h, id, |o| !o.is_empty()).await;
        assert_eq!(all.len(), 1, "{id}: {all:?}");
        assert!(is_sent(&all[0].1), "{id}: {all:?}");
    }
    for u in &users_a {
        let texts = outbound(&h.emulator.admin.messages(ACCOUNT, u).await.unwrap());
        assert_eq!(texts, ["a0", "a1", "a2"], "order of {u}");
    }
    for u in &users_b {
        let texts = outbound(&h.emulator.admin.messages(&b, u).await.unwrap());
        assert_eq!(texts, ["b0", "b1", "b2"], "order of {u}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_of_a_paused_account_never_block_another_account_s() {
    let h = Harness::start().await;
    let b = neighbour();
    add_account(&h, &b, TOKEN_B).await;
    h.accounts.set_status(ACCOUNT, AccountStatus::NeedsReauth, "test: token refused").await.unwrap();
    let upload = |account: &str, id: &str| v1::UploadAttachmentCommand {
        command_id: id.into(),
        account_id: account.into(),
        kind: MediaKind::Image as i32,
        url: "https://cdn.example.com/logo.png".into(),
        ..Default::default()
    };
    publish(&h, "upload", ACCOUNT, "up-a", &upload(ACCOUNT, "up-a")).await;
    publish(&h, "upload", &b, "up-b", &upload(&b, "up-b")).await;
    let o = h.outcome("up-b").await;
    assert!(is_sent(&o), "B's upload while A's waits: {o:?}");
    assert!(outcomes_of(&h, "up-a").await.is_empty(), "A's upload waits for a new token");
    support::register(&h.accounts, TOKEN).await;
    assert!(is_sent(&h.outcome("up-a").await));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subject_decides_whose_command_it_is() {
    let h = Harness::start().await;
    let b = neighbour();
    add_account(&h, &b, TOKEN_B).await;
    let user = "5500000000001301";
    open_window(&h, ACCOUNT, user).await;
    let calls = h.graph_calls("messages").await;

    // Published on B's subject, naming A in the payload: never carried out as A.
    publish(&h, "send", &b, "foreign-1", &text(ACCOUNT, "foreign-1", user, "as someone else")).await;
    let all = wait_outcomes(&h, "foreign-1", |o| !o.is_empty()).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let (subject, o) = &all[0];
    assert_eq!(subject, &format!("ig.v1.out.{b}.rejected"));
    assert_eq!(o.account_id, b);
    match &o.result {
        Some(R::Rejected(r)) => {
            assert_eq!((r.reason, r.field.as_str()), (RejectReason::Invalid as i32, "account_id"));
            assert!(r.detail.contains("differs from the subject"), "{}", r.detail);
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let mut dead = 0;
    for _ in 0..200 {
        dead = igrelay_testkit::events::count(&h.nats.js, "IGRELAY_DLQ").await.unwrap_or(0);
        if dead > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(dead, 1, "the foreign command is dead-lettered too");
    assert_eq!(h.graph_calls("messages").await, calls, "no Graph call for it");
    assert!(outbound(&h.emulator.admin.messages(ACCOUNT, user).await.unwrap()).is_empty());

    // Subjects outside ig.v1.cmd.<send|upload>.<account> are refused at publish, not stored.
    for subject in [format!("ig.v1.cmd.delete.{ACCOUNT}"), format!("ig.v1.cmd.send.{ACCOUNT}.extra")] {
        let stored = match h.nats.js.publish(subject.clone(), "x".into()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        assert!(!stored, "{subject} was stored in a stream");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_id_reused_for_new_content_is_a_conflict() {
    let h = Harness::start().await;
    let user = "5500000000001401";
    open_window(&h, ACCOUNT, user).await;
    let calls = h.graph_calls("messages").await;
    let first = text(ACCOUNT, "reuse-1", user, "first content");
    publish(&h, "send", ACCOUNT, "n-1", &first).await;
    wait_outcomes(&h, "reuse-1", |o| o.len() == 1 && is_sent(&o[0].1)).await;

    // Same id, different content, after completion: a conflict, not the old outcome.
    publish(&h, "send", ACCOUNT, "n-2", &text(ACCOUNT, "reuse-1", user, "other content")).await;
    let all = wait_outcomes(&h, "reuse-1", |o| o.len() == 2).await;
    let conflict = all.iter().find_map(|(_, o)| match &o.result {
        Some(R::Rejected(r)) => Some(r.clone()),
        _ => None,
    });
    let r = conflict.expect("a Rejected outcome for the reused id");
    assert_eq!(r.reason, RejectReason::DuplicateIdConflict as i32);
    assert!(r.detail.contains("conflict"), "{}", r.detail);

    // The same content again: the first outcome holds, no second call.
    publish(&h, "send", ACCOUNT, "n-3", &first).await;
    publish(&h, "send", ACCOUNT, "n-4", &text(ACCOUNT, "after", user, "after")).await;
    wait_outcomes(&h, "after", |o| !o.is_empty()).await;
    assert_eq!(outcomes_of(&h, "reuse-1").await.iter().filter(|(_, o)| is_sent(o)).count(), 1);
    assert_eq!(h.graph_calls("messages").await - calls, 2, "one call for reuse-1, one for after");
    assert_eq!(outbound(&h.emulator.admin.messages(ACCOUNT, user).await.unwrap()), ["first content", "after"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_may_use_the_same_command_id() {
    let h = Harness::start().await;
    let b = neighbour();
    add_account(&h, &b, TOKEN_B).await;
    let (ua, ub) = ("5500000000001501", "5500000000001502");
    open_window(&h, ACCOUNT, ua).await;
    open_window(&h, &b, ub).await;
    publish(&h, "send", ACCOUNT, "shared-a", &text(ACCOUNT, "shared-1", ua, "from A")).await;
    publish(&h, "send", &b, "shared-b", &text(&b, "shared-1", ub, "from B")).await;
    let all = wait_outcomes(&h, "shared-1", |o| o.len() == 2).await;
    for account in [ACCOUNT, b.as_str()] {
        let (subject, o) = all.iter().find(|(_, o)| o.account_id == account).unwrap();
        assert_eq!(subject, &format!("ig.v1.out.{account}.sent"));
        assert!(is_sent(o), "{o:?}");
    }
    assert_eq!(outbound(&h.emulator.admin.messages(ACCOUNT, ua).await.unwrap()), ["from A"]);
    assert_eq!(outbound(&h.emulator.admin.messages(&b, ub).await.unwrap()), ["from B"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_past_and_future_times_never_break_dispatch() {
    let h = Harness::start().await;
    let user = "5500000000001601";
    open_window(&h, ACCOUNT, user).await;
    let at = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let cases = [
        (
            "t-deadline-max",
            SendCommand { deadline: at(i64::MAX), ..text(ACCOUNT, "t-deadline-max", user, "dmax") },
            true,
        ),
        (
            "t-deadline-min",
            SendCommand { deadline: at(i64::MIN), ..text(ACCOUNT, "t-deadline-min", user, "dmin") },
            false,
        ),
        (
            "t-accepted-max",
            SendCommand { accepted_time: at(i64::MAX), ..text(ACCOUNT, "t-accepted-max", user, "amax") },
            true,
        ),
        (
            "t-accepted-min",
            SendCommand { accepted_time: at(i64::MIN), ..text(ACCOUNT, "t-accepted-min", user, "amin") },
            false,
        ),
    ];
    for (id, c, _) in &cases {
        publish(&h, "send", ACCOUNT, id, c).await;
    }
    for (id, _, sends) in &cases {
        let all = wait_outcomes(&h, id, |o| !o.is_empty()).await;
        let o = &all[0].1;
        if *sends {
            assert!(is_sent(o), "{id}: {o:?}");
        } else {
            assert!(matches!(o.result, Some(R::Expired(_))), "{id}: {o:?}");
        }
    }
    // The recipient's lane still works.
    publish(&h, "send", ACCOUNT, "t-after", &text(ACCOUNT, "t-after", user, "after")).await;
    assert!(is_sent(&h.outcome("t-after").await));
    assert_eq!(outbound(&h.emulator.admin.messages(ACCOUNT, user).await.unwrap()), ["dmax", "amax", "after"]);
    h.stop().await;
}

/// Messages stored in `stream`.
async fn stored(h: &Harness, stream: &str) -> u64 {
    h.nats.js.get_stream(stream).await.unwrap().info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_backlog_beyond_the_ack_budget_moves_to_the_park_and_comes_back_in_order() {
    // A partition consumer may hold 8 unacknowledged commands; more than 4 parked ones of one
    // account move to the park stream.
    let cfg = || DispatchConfig { max_ack_pending: Some(8), park_hold: 4, ..test_dispatch_config() };
    let (h, d1) = Harness::start_with_proc(|_, d| *d = cfg()).await;
    let b = neighbour();
    add_account(&h, &b, TOKEN_B).await;
    let users_a: Vec<String> = (0..3).map(|i| format!("55000000000017{i:02}")).collect();
    let users_b: Vec<String> = (0..3).map(|i| format!("55000000000018{i:02}")).collect();
    for u in users_a.iter().chain(&users_b) {
        let account = if users_a.contains(u) { ACCOUNT } else { b.as_str() };
        open_window(&h, account, u).await;
    }
    let calls_before = h.graph_calls("messages").await;
    h.accounts.set_status(ACCOUNT, AccountStatus::Paused, "test: paused").await.unwrap();

    // 18 commands of the paused account: more than the partition's budget of 8.
    let mut a_ids = Vec::new();
    for i in 0..6 {
        for u in &users_a {
            let id = format!("pa-{u}-{i}");
            h.send(text(ACCOUNT, &id, u, &format!("a{i}"))).await;
            a_ids.push(id);
        }
    }
    // The neighbour's commands (also more than the budget) all complete during the pause.
    let mut b_ids = Vec::new();
    for i in 0..4 {
        for u in &users_b {
            let id = format!("pb-{u}-{i}");
            h.send(text(&b, &id, u, &format!("b{i}"))).await;
            b_ids.push(id);
        }
    }
    for id in &b_ids {
        assert!(is_sent(&h.outcome(id).await), "{id} while A is paused");
    }
    for id in &a_ids {
        assert!(outcomes_of(&h, id).await.is_empty(), "{id} must wait while A is paused");
    }
    assert!(stored(&h, "IGRELAY_PARKED").await > 0, "A's backlog is in the park stream");
    assert_eq!(d1.metric("igrelay_dispatch_park_stream_accounts").await, Some(1.0));

    // Restart during the pause; the new owner finds the park, and A's newer commands (fewer than
    // park_hold) queue behind it.
    d1.stop.cancel();
    assert!(tokio::time::timeout(Duration::from_secs(30), d1.task).await.is_ok(), "dispatch did not stop");
    let d2 = h.spawn_dispatch_proc(cfg()).await;
    for u in &users_a[..2] {
        let id = format!("pa-{u}-6");
        h.send(text(ACCOUNT, &id, u, "a6")).await;
        a_ids.push(id);
    }
    for u in &users_b {
        let id = format!("pb-{u}-4");
        h.send(text(&b, &id, u, "b4")).await;
        assert!(is_sent(&h.outcome(&id).await), "{id} after the restart, A still paused");
        b_ids.push(id);
    }
    for id in &a_ids {
        assert!(outcomes_of(&h, id).await.is_empty(), "{id} must wait while A is paused");
    }

    // A new token: every A command goes out once, in order per recipient.
    support::register(&h.accounts, TOKEN).await;
    for id in &a_ids {
        let all = wait_outcomes(&h, id, |o| !o.is_empty()).await;
        assert_eq!(all.len(), 1, "{id}: {all:?}");
        assert!(is_sent(&all[0].1), "{id}: {all:?}");
    }
    for (n, u) in users_a.iter().enumerate() {
        let want: Vec<String> = (0..if n < 2 { 7 } else { 6 }).map(|i| format!("a{i}")).collect();
        assert_eq!(outbound(&h.emulator.admin.messages(ACCOUNT, u).await.unwrap()), want, "order of {u}");
    }
    for u in &users_b {
        assert_eq!(outbound(&h.emulator.admin.messages(&b, u).await.unwrap()), ["b0", "b1", "b2", "b3", "b4"]);
    }
    let calls = h.graph_calls("messages").await - calls_before;
    assert_eq!(calls, (a_ids.len() + b_ids.len()) as u64, "one Graph call per command");
    // Drained: the park is empty and A's commands are served normally again.
    for _ in 0..200 {
        if stored(&h, "IGRELAY_PARKED").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&h, "IGRELAY_PARKED").await, 0, "the park is drained");
    for _ in 0..200 {
        if d2.metric("igrelay_dispatch_park_stream_accounts").await == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d2.metric("igrelay_dispatch_park_stream_accounts").await, Some(0.0), "served normally again");
    h.send(text(ACCOUNT, "pa-after", &users_a[0], "after")).await;
    assert!(is_sent(&h.outcome("pa-after").await));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_pauses_never_add_up_to_a_stall() {
    // Two paused accounts each hold fewer than park_hold commands, together the whole budget.
    let cfg = DispatchConfig { max_ack_pending: Some(8), park_hold: 6, ..test_dispatch_config() };
    let h = Harness::start_with(|_, d| *d = cfg).await;
    let mut same: Vec<String> = (2..)
        .map(|i| format!("178414000000{i:05}"))
        .filter(|c| partition_of(c) == partition_of(ACCOUNT))
        .take(2)
        .collect();
    let (b, c) = (same.remove(0), same.remove(0));
    add_account(&h, &b, TOKEN_B).await;
    add_account(&h, &c, "IGAAemulatortokenC").await;
    let users: Vec<String> = (0..2).map(|i| format!("55000000000019{i:02}")).collect();
    for u in &users {
        for account in [ACCOUNT, b.as_str(), c.as_str()] {
            open_window(&h, account, u).await;
        }
    }
    for account in [ACCOUNT, c.as_str()] {
        h.accounts.set_status(account, AccountStatus::Paused, "test: paused").await.unwrap();
    }
    let mut paused_ids = Vec::new();
    for account in [ACCOUNT, c.as_str()] {
        for i in 0..2 {
            for u in &users {
                let id = format!("sp-{account}-{u}-{i}");
                h.send(text(account, &id, u, &format!("p{i}"))).await;
                paused_ids.push(id);
            }
        }
    }
    for i in 0..5 {
        for u in &users {
            let id = format!("sb-{u}-{i}");
            h.send(text(&b, &id, u, &format!("b{i}"))).await;
            assert!(is_sent(&h.outcome(&id).await), "{id} while two neighbours are paused");
        }
    }
    for account in [ACCOUNT, c.as_str()] {
        h.accounts.set_status(account, AccountStatus::Active, "test: active").await.unwrap();
    }
    for id in &paused_ids {
        let all = wait_outcomes(&h, id, |o| !o.is_empty()).await;
        assert_eq!(all.len(), 1, "{id}: {all:?}");
        assert!(is_sent(&all[0].1), "{id}: {all:?}");
    }
    for u in &users {
        for account in [ACCOUNT, c.as_str()] {
            assert_eq!(outbound(&h.emulator.admin.messages(account, u).await.unwrap()), ["p0", "p1"], "{account} {u}");
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_command_expires_in_the_park_by_its_deadline_from_when_it_was_accepted() {
    // Commands without accepted time or deadline: their deadline counts from when the commands
    // stream stored them, not from when they moved to the park.
    let cfg = DispatchConfig {
        max_ack_pending: Some(8),
        park_hold: 3,
        default_deadline: Duration::from_secs(12),
        ..test_dispatch_config()
    };
    let h = Harness::start_with(|_, d| *d = cfg).await;
    let user = "5500000000002001";
    open_window(&h, ACCOUNT, user).await;
    let calls_before = h.graph_calls("messages").await;
    h.accounts.set_status(ACCOUNT, AccountStatus::Paused, "test: paused").await.unwrap();
    for i in 0..2 {
        h.send(text(ACCOUNT, &format!("dl-old-{i}"), user, &format!("old{i}"))).await;
    }
    // Seven seconds later two more: four waiting > park_hold, so all four move to the park now.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for i in 0..2 {
        h.send(text(ACCOUNT, &format!("dl-new-{i}"), user, &format!("new{i}"))).await;
    }
    for _ in 0..200 {
        if stored(&h, "IGRELAY_PARKED").await == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&h, "IGRELAY_PARKED").await, 4, "all four in the park");
    // Still paused: the old ones expire in the park (12 s after they were stored) and leave it;
    // the new ones (due 7 s later) still wait.
    for i in 0..2 {
        let old = wait_outcomes(&h, &format!("dl-old-{i}"), |o| !o.is_empty()).await;
        assert_eq!(old.len(), 1, "{old:?}");
        assert!(matches!(old[0].1.result, Some(R::Expired(_))), "expired in the park: {old:?}");
    }
    for i in 0..2 {
        let id = format!("dl-new-{i}");
        assert!(outcomes_of(&h, &id).await.is_empty(), "{id} is not due yet");
    }
    for _ in 0..200 {
        if stored(&h, "IGRELAY_PARKED").await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&h, "IGRELAY_PARKED").await, 2, "the expired ones left the park");
    h.accounts.set_status(ACCOUNT, AccountStatus::Active, "test: active").await.unwrap();
    for i in 0..2 {
        let new = wait_outcomes(&h, &format!("dl-new-{i}"), |o| !o.is_empty()).await;
        assert_eq!(new.len(), 1, "{new:?}");
        assert!(is_sent(&new[0].1), "{new:?}");
        assert_eq!(outcomes_of(&h, &format!("dl-old-{i}")).await.len(), 1, "one outcome each");
    }
    assert_eq!(outbound(&h.emulator.admin.messages(ACCOUNT, user).await.unwrap()), ["new0", "new1"]);
    assert_eq!(h.graph_calls("messages").await - calls_before, 2, "no call for the expired ones");
    h.stop().await;
}

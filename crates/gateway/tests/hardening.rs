//! Scopes of every RPC, caller-supplied times, per-caller bounds, and the token check at
//! registration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use igrelay_core::v1::{
    FindConversationRequest, ForgetUserRequest, GetAccountRequest, GetMessageRequest, GetOutcomeRequest,
    GetUserProfileRequest, ListAccountsRequest, ListConversationsRequest, ListMessagesRequest, LoginType, MediaKind,
    Recipient, RegisterAccountRequest, RemoveAccountRequest, SendCommand, SendMessageRequest, StreamEventsRequest,
    TextContent, UploadAttachmentCommand, UploadAttachmentRequest, WaitOptions, recipient::Target,
    send_command::Content,
};
use prost_types::Timestamp;
use support::{ACCOUNT, ACCOUNT_B, ADMIN_KEY, LIMITED_KEY, Options, Stack, TOKEN, TOKEN_B, req};
use tonic::{Code, Status};
use tonic_types::StatusExt;

const ALL: [&str; 7] = [
    "accounts:read",
    "accounts:admin",
    "messages:send",
    "conversations:read",
    "events:read",
    "profiles:read",
    "profiles:admin",
];

/// The key that has every scope but `scope` (and the one implying it).
fn key_without(scope: &str) -> String {
    format!("no-{}-key-0123456789", scope.replace(':', "-"))
}

fn scoped_keys(c: &mut igrelay_gateway::GatewayConfig) {
    for missing in ALL {
        let implied_by = match missing {
            "accounts:read" => Some("accounts:admin"),
            "profiles:read" => Some("profiles:admin"),
            _ => None,
        };
        let scopes: Vec<&str> = ALL.into_iter().filter(|s| *s != missing && Some(*s) != implied_by).collect();
        let id = format!("no-{missing}");
        c.api_keys.push(support::key(&id, &key_without(missing), &scopes, &[]));
    }
}

fn text_command(account: &str, id: &str) -> SendCommand {
    SendCommand {
        account_id: account.into(),
        command_id: id.into(),
        recipient: Some(Recipient { target: Some(Target::Igsid("5500000000000002".into())) }),
        content: Some(Content::Text(TextContent { text: "hello".into(), quick_replies: vec![] })),
        ..Default::default()
    }
}

fn wait(seconds: i64, nanos: i32) -> Option<WaitOptions> {
    Some(WaitOptions { wait: true, timeout: Some(prost_types::Duration { seconds, nanos }) })
}

fn denied<T: std::fmt::Debug>(method: &str, scope: &str, r: Result<T, Status>) {
    let e = r.expect_err(&format!("{method} succeeded without {scope}"));
    assert_eq!(e.code(), Code::PermissionDenied, "{method}: {e:?}");
    assert!(e.message().contains(scope), "{method} does not name {scope}: {e:?}");
}

/// Every RPC, called (with a valid request) by a key that lacks exactly its scope, is
/// PERMISSION_DENIED naming that scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_needs_its_scope() {
    let stack = Stack::start_with(Options { tune: Some(Box::new(scoped_keys)), ..Default::default() }).await;
    stack.register_default().await;
    let account = || ACCOUNT.to_owned();

    let k = key_without("accounts:admin");
    let mut accounts = stack.accounts();
    let register = RegisterAccountRequest {
        account_id: account(),
        login_type: LoginType::Instagram as i32,
        access_token: TOKEN.into(),
        ..Default::default()
    };
    denied("RegisterAccount", "accounts:admin", accounts.register_account(req(register, &k)).await);
    denied(
        "RemoveAccount",
        "accounts:admin",
        accounts.remove_account(req(RemoveAccountRequest { account_id: account() }, &k)).await,
    );
    let k = key_without("accounts:read");
    denied("ListAccounts", "accounts:read", accounts.list_accounts(req(ListAccountsRequest {}, &k)).await);
    denied(
        "GetAccount",
        "accounts:read",
        accounts.get_account(req(GetAccountRequest { account_id: account() }, &k)).await,
    );

    let k = key_without("messages:send");
    let mut messaging = stack.messaging();
    let send = SendMessageRequest { command: Some(text_command(ACCOUNT, "scope-1")), wait: None };
    denied("SendMessage", "messages:send", messaging.send_message(req(send, &k)).await);
    let upload = UploadAttachmentRequest {
        command: Some(UploadAttachmentCommand {
            account_id: account(),
            kind: MediaKind::Image as i32,
            url: "https://example.com/a.png".into(),
            ..Default::default()
        }),
        wait: None,
    };
    denied("UploadAttachment", "messages:send", messaging.upload_attachment(req(upload, &k)).await);
    let get = GetOutcomeRequest { account_id: account(), command_id: "scope-1".into(), wait: None };
    denied("GetOutcome", "messages:send", messaging.get_outcome(req(get, &k)).await);

    let k = key_without("conversations:read");
    let mut conv = stack.conversations();
    let list = ListConversationsRequest { account_id: account(), page_token: String::new() };
    denied("ListConversations", "conversations:read", conv.list_conversations(req(list, &k)).await);
    let find = FindConversationRequest { account_id: account(), user_id: "5500000000000002".into() };
    denied("FindConversation", "conversations:read", conv.find_conversation(req(find, &k)).await);
    let messages =
        ListMessagesRequest { account_id: account(), conversation_id: "aWdfZAG06".into(), page_token: String::new() };
    denied("ListMessages", "conversations:read", conv.list_messages(req(messages, &k)).await);
    let message = GetMessageRequest { account_id: account(), message_id: "aWdfZAG06".into() };
    denied("GetMessage", "conversations:read", conv.get_message(req(message, &k)).await);

    let k = key_without("events:read");
    let events = StreamEventsRequest { account_ids: vec![account()], ..Default::default() };
    denied("StreamEvents", "events:read", stack.events().stream_events(req(events, &k)).await.map(|_| ()));

    let k = key_without("profiles:read");
    let profile = GetUserProfileRequest { account_id: account(), igsid: "5500000000000002".into(), refresh: false };
    denied("GetUserProfile", "profiles:read", stack.profiles().get_user_profile(req(profile, &k)).await);
    let k = key_without("profiles:admin");
    let forget = ForgetUserRequest { igsid: "5500000000000002".into(), account_id: account() };
    denied("ForgetUser", "profiles:admin", stack.profiles().forget_user(req(forget, &k)).await);

    // The keys work for what they do have (the account is still there after the refusals).
    let k = key_without("messages:send");
    let got = accounts.get_account(req(GetAccountRequest { account_id: account() }, &k)).await.unwrap();
    assert_eq!(got.into_inner().account.unwrap().account_id, ACCOUNT);
    stack.stop().await;
}

fn field(e: &Status) -> Vec<String> {
    e.get_details_bad_request().map(|b| b.field_violations.into_iter().map(|v| v.field).collect()).unwrap_or_default()
}

/// Times far in the past or future are INVALID_ARGUMENT naming the field, and nothing panics:
/// the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_times_out_of_range_are_refused_by_field() {
    let stack = Stack::start_with(Options {
        tune: Some(Box::new(|c| {
            // A refresh round runs often, so a stored absurd time would reach its arithmetic.
            c.token_refresh.enabled = true;
            c.token_refresh.check_interval = Duration::from_millis(100);
        })),
        ..Default::default()
    })
    .await;
    stack.register_default().await;
    let far_past = Timestamp { seconds: i64::MIN, nanos: 0 };
    let far_future = Timestamp { seconds: i64::MAX, nanos: 999_999_999 };
    let bad_nanos = Timestamp { seconds: 1_700_000_000, nanos: -1 };
    let mut accounts = stack.accounts();
    for (issued, expires, named) in [
        (Some(far_past), None, "token_issued_time"),
        (None, Some(far_future), "token_expires_time"),
        (Some(bad_nanos), None, "token_issued_time"),
    ] {
        let e = accounts
            .register_account(req(
                RegisterAccountRequest {
                    account_id: ACCOUNT.into(),
                    login_type: LoginType::Instagram as i32,
                    access_token: TOKEN.into(),
                    token_issued_time: issued,
                    token_expires_time: expires,
                    ..Default::default()
                },
                ADMIN_KEY,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert_eq!(field(&e), [named], "{e:?}");
    }
    let mut messaging = stack.messaging();
    for deadline in [far_past, far_future] {
        let mut cmd = text_command(ACCOUNT, "");
        cmd.deadline = Some(deadline);
        let e = messaging.send_message(req(SendMessageRequest { command: Some(cmd), wait: None }, ADMIN_KEY)).await;
        let e = e.unwrap_err();
        assert_eq!(field(&e), ["command.deadline"], "{e:?}");
    }
    for (seconds, nanos) in [(i64::MAX, 999_999_999), (-1, 0), (1, 2_000_000_000)] {
        let r = SendMessageRequest { command: Some(text_command(ACCOUNT, "")), wait: wait(seconds, nanos) };
        let e = messaging.send_message(req(r, ADMIN_KEY)).await.unwrap_err();
        assert_eq!(field(&e), ["wait.timeout"], "{e:?}");
        let r = GetOutcomeRequest { account_id: ACCOUNT.into(), command_id: "x".into(), wait: wait(seconds, nanos) };
        let e = messaging.get_outcome(req(r, ADMIN_KEY)).await.unwrap_err();
        assert_eq!(field(&e), ["wait.timeout"], "{e:?}");
    }
    // Edge values inside the range are fine.
    let mut cmd = text_command(ACCOUNT, "");
    cmd.deadline = Some(Timestamp { seconds: 253_402_300_799, nanos: 999_999_999 });
    messaging.send_message(req(SendMessageRequest { command: Some(cmd), wait: None }, ADMIN_KEY)).await.unwrap();
    // Still serving, nothing was stored.
    let got = accounts.get_account(req(GetAccountRequest { account_id: ACCOUNT.into() }, ADMIN_KEY)).await.unwrap();
    assert!(got.into_inner().account.unwrap().token_issued_time.unwrap().seconds > 0);
    stack.stop().await;
}

/// Past `max_streams_per_key` open streams or `max_waits_per_key` waits, a key gets
/// RESOURCE_EXHAUSTED with RetryInfo; other keys are not affected; a closed stream frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_bounds_on_streams_and_waits() {
    let stack = Stack::start_with(Options {
        tune: Some(Box::new(|c| {
            c.max_streams_per_key = 2;
            c.max_waits_per_key = 1;
        })),
        ..Default::default()
    })
    .await;
    stack.register_default().await;
    let stream = |key: &str| req(StreamEventsRequest { account_ids: vec![ACCOUNT.into()], ..Default::default() }, key);
    let first = stack.events().stream_events(stream(ADMIN_KEY)).await.unwrap().into_inner();
    let _second = stack.events().stream_events(stream(ADMIN_KEY)).await.unwrap().into_inner();
    let e = stack.events().stream_events(stream(ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_streams_per_key"), "{e:?}");
    assert!(e.get_details_retry_info().and_then(|r| r.retry_delay).is_some(), "no RetryInfo: {e:?}");
    // Another key is not held back by this one.
    let other = req(StreamEventsRequest { account_ids: vec![], ..Default::default() }, LIMITED_KEY);
    let _other = stack.events().stream_events(other).await.unwrap();
    // Closing a stream gives its slot back (the gateway notices the disconnect).
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(s) = stack.events().stream_events(stream(ADMIN_KEY)).await {
            reopened = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "the closed stream's slot was not given back");

    // One wait at a time: of two long waits at once, one is refused at once, the other waits.
    let long_wait = |id: &'static str| {
        let mut m = stack.messaging();
        tokio::spawn(async move {
            let r = GetOutcomeRequest { account_id: ACCOUNT.into(), command_id: id.into(), wait: wait(20, 0) };
            m.get_outcome(req(r, ADMIN_KEY)).await
        })
    };
    let (mut w1, mut w2) = (long_wait("w-1"), long_wait("w-2"));
    let (first_done, waiting) = tokio::time::timeout(Duration::from_secs(15), async {
        tokio::select! {
            r = &mut w1 => (r, w2),
            r = &mut w2 => (r, w1),
        }
    })
    .await
    .expect("neither wait was refused");
    let e = first_done.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_waits_per_key"), "{e:?}");
    assert!(e.get_details_retry_info().is_some(), "{e:?}");
    assert!(!waiting.is_finished(), "the other wait ended too");
    // A send that asks to wait is refused before it is accepted: nothing is published.
    let before = igrelay_testkit::events::count(&stack.nats.js, "IGRELAY_COMMANDS").await.unwrap();
    let r = SendMessageRequest { command: Some(text_command(ACCOUNT, "w-3")), wait: wait(5, 0) };
    let e = stack.messaging().send_message(req(r, ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(igrelay_testkit::events::count(&stack.nats.js, "IGRELAY_COMMANDS").await.unwrap(), before);
    waiting.abort();
    stack.stop().await;
}

/// RegisterAccount asks Meta about the token first: an unknown, revoked or foreign token is
/// INVALID_ARGUMENT on `access_token` at once, and the account is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_checks_the_token_with_meta() {
    let stack = Stack::start().await;
    stack.add_account_b().await;
    stack
        .emulator
        .admin
        .post("/_admin/tokens", &serde_json::json!({"token": TOKEN_B, "state": "revoked"}))
        .await
        .unwrap();
    let mut accounts = stack.accounts();
    let register = |account: &str, token: &str| {
        req(
            RegisterAccountRequest {
                account_id: account.into(),
                login_type: LoginType::Instagram as i32,
                access_token: token.into(),
                ..Default::default()
            },
            ADMIN_KEY,
        )
    };
    for (account, token, why) in [
        (ACCOUNT, "IGAAnotatokenmetaknows", "Meta refused the token"),
        (ACCOUNT_B, TOKEN_B, "Meta refused the token"),
        // A valid token of another account.
        (ACCOUNT_B, TOKEN, "does not give access to account"),
    ] {
        let e = accounts.register_account(register(account, token)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{account}: {e:?}");
        assert_eq!(field(&e), ["access_token"], "{e:?}");
        assert!(e.message().contains(why), "{e:?}");
        let got = accounts.get_account(req(GetAccountRequest { account_id: account.into() }, ADMIN_KEY)).await;
        assert_eq!(got.unwrap_err().code(), Code::NotFound, "{account} was stored with a bad token");
    }
    // The right token registers.
    let ok = accounts.register_account(register(ACCOUNT, TOKEN)).await.unwrap().into_inner();
    assert!(ok.created);
    // Nothing was audited for the refused registrations.
    let audit: Vec<igrelay_core::v1::AuditRecord> =
        support::read(&stack.nats.js, "IGRELAY_AUDIT", "ig.v1.audit.*.account_register").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    stack.stop().await;
}

/// A gateway handed a listener bound beyond loopback, without TLS and without
/// `allow_plaintext`, refuses to start (before it even connects to NATS), naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_beyond_loopback_is_refused_at_start() {
    let cfg = igrelay_gateway::GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ops_listen: "127.0.0.1:0".parse().unwrap(),
        api_keys: support::api_keys(),
        ..Default::default()
    };
    // Bound on every interface, whatever `listen` says.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let mut bus = igrelay_bus::BusConfig::default();
    // Nothing listens here: the refusal must come first.
    bus.nats.url = "nats://127.0.0.1:1".into();
    let run = igrelay_gateway::run_with_listener(
        cfg,
        bus,
        support::accounts_config(),
        igrelay_graph::GraphConfig::single_host("http://127.0.0.1:1"),
        listener,
        tokio_util::sync::CancellationToken::new(),
    );
    let e = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the gateway started instead of refusing")
        .unwrap_err()
        .to_string();
    assert!(e.contains("gateway.listen") && e.contains("gateway.allow_plaintext"), "{e}");
}

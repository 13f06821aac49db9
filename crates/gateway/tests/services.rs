//! Health, reflection, TLS, conversations through the Graph API, and token refresh.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use igrelay_core::v1::{
    AccountStatus, FindConversationRequest, GetAccountRequest, GetMessageRequest, ListAccountsRequest,
    ListConversationsRequest, ListMessagesRequest, LoginType, RegisterAccountRequest, RemoveAccountRequest,
    event::Payload,
};
use support::{ACCOUNT, ADMIN_KEY, Options, Stack, req};
use tonic::Code;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_every_service_and_describes_them() {
    let stack = Stack::start().await;
    let mut client = ServerReflectionClient::new(stack.channel.clone());
    let requests = futures::stream::iter([
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("igrelay.v1.MessagingService".into())),
        },
    ]);
    let mut answers = client.server_reflection_info(requests).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "igrelay.v1.AccountsService",
        "igrelay.v1.MessagingService",
        "igrelay.v1.ConversationsService",
        "igrelay.v1.EventsService",
        "igrelay.v1.ProfilesService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} not in {names:?}");
    }
    // Health knows the new service too (SERVING once the stack is).
    let mut health = tonic_health::pb::health_client::HealthClient::new(stack.channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "igrelay.v1.ProfilesService".into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let Some(MessageResponse::FileDescriptorResponse(files)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_certificates_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("ext.cnf"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is needed to make test certificates");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    let (cert, key, ca) = (p("cert.pem"), p("key.pem"), p("ca.pem"));
    let stack = Stack::start_with(Options { tls: Some((cert, key, ca)), ..Default::default() }).await;
    // Stack::start_with waited for SERVING over TLS; an ordinary call works too.
    let listed = stack.accounts().list_accounts(req(ListAccountsRequest {}, ADMIN_KEY)).await.unwrap();
    assert!(listed.into_inner().accounts.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_through_the_graph_api() {
    let stack = Stack::start().await;
    stack.register_default().await;
    let user = "5500000000000055";
    let sim = stack.emulator.admin.simulate_dm(ACCOUNT, user, "where is my order?").await.unwrap();
    let mut conv = stack.conversations();
    let list = conv
        .list_conversations(req(
            ListConversationsRequest { account_id: ACCOUNT.into(), page_token: String::new() },
            ADMIN_KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.conversations.len(), 1, "{list:?}");
    let found = conv
        .find_conversation(req(FindConversationRequest { account_id: ACCOUNT.into(), user_id: user.into() }, ADMIN_KEY))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(found.conversation_id, list.conversations[0].conversation_id);
    assert_eq!(found.conversation_id, sim["conversation_id"].as_str().unwrap());
    let messages = conv
        .list_messages(req(
            ListMessagesRequest {
                account_id: ACCOUNT.into(),
                conversation_id: found.conversation_id.clone(),
                page_token: String::new(),
            },
            ADMIN_KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(messages.messages.len(), 1, "{messages:?}");
    let details = conv
        .get_message(req(
            GetMessageRequest { account_id: ACCOUNT.into(), message_id: messages.messages[0].message_id.clone() },
            ADMIN_KEY,
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(details.text, "where is my order?");
    assert_eq!(details.from.unwrap().id, user);
    let e = conv
        .find_conversation(req(
            FindConversationRequest { account_id: ACCOUNT.into(), user_id: "5500000000009999".into() },
            ADMIN_KEY,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = conv
        .list_conversations(req(
            ListConversationsRequest { account_id: "17841400000000999".into(), page_token: String::new() },
            ADMIN_KEY,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_messages_pages_through_a_conversation() {
    // The gateway's own Conversations limit is not what this test is about.
    let stack =
        Stack::start_with(Options { tune: Some(Box::new(|c| c.conversations_per_s = 100)), ..Default::default() })
            .await;
    stack.register_default().await;
    let user = "5500000000000056";
    // 30 messages: more than the emulator's (and Meta's) default page of 25.
    let mut sent = Vec::new();
    for i in 0..30 {
        let sim = stack.emulator.admin.simulate_dm(ACCOUNT, user, &format!("message {i}")).await.unwrap();
        sent.push(sim["mid"].as_str().unwrap().to_owned());
    }
    let conversation_id =
        stack.emulator.admin.simulate_dm(ACCOUNT, user, "message 30").await.unwrap()["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let mut conv = stack.conversations();
    let list = |page_token: String| {
        req(
            ListMessagesRequest { account_id: ACCOUNT.into(), conversation_id: conversation_id.clone(), page_token },
            ADMIN_KEY,
        )
    };
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut token = String::new();
    loop {
        let page = conv.list_messages(list(token)).await.unwrap().into_inner();
        pages += 1;
        assert!(!page.messages.is_empty(), "page {pages} is empty");
        ids.extend(page.messages.into_iter().map(|m| m.message_id));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(pages < 10, "more pages than messages");
        token = page.next_page_token;
    }
    assert_eq!(pages, 2);
    assert_eq!(ids.len(), 31);
    // Newest first, each message once.
    assert_eq!(ids[30], sent[0]);
    assert_eq!(ids[1], sent[29]);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_tokens_are_refreshed_and_a_refused_refresh_marks_the_account() {
    let stack = Stack::start_with(Options {
        tune: Some(Box::new(|c| {
            c.token_refresh.enabled = true;
            c.token_refresh.check_interval = Duration::from_millis(200);
        })),
        ..Default::default()
    })
    .await;
    let admin = &stack.emulator.admin;
    let emulator_now = admin.get("/_admin/clock").await.unwrap()["now_ms"].as_i64().unwrap();
    let two_days_ms = 2 * 86_400_000;
    // The default account's token is old enough for Meta to refresh it.
    admin
        .post("/_admin/tokens", &serde_json::json!({"token": support::TOKEN, "issued_ms": emulator_now - two_days_ms}))
        .await
        .unwrap();
    // A second account whose token Meta revokes once it is registered.
    let revoked = "17841400000000002";
    admin.post("/_admin/accounts", &serde_json::json!({"ig_id": revoked, "token": "IGAArevokedtoken"})).await.unwrap();
    let issued = igrelay_core::time::timestamp_from_ms(igrelay_core::time::now_ms() - two_days_ms);
    let mut accounts = stack.accounts();
    for (id, token) in [(ACCOUNT, support::TOKEN), (revoked, "IGAArevokedtoken")] {
        accounts
            .register_account(req(
                RegisterAccountRequest {
                    account_id: id.into(),
                    login_type: LoginType::Instagram as i32,
                    access_token: token.into(),
                    token_issued_time: Some(issued),
                    ..Default::default()
                },
                ADMIN_KEY,
            ))
            .await
            .unwrap();
    }
    admin
        .post(
            "/_admin/tokens",
            &serde_json::json!({"token": "IGAArevokedtoken", "state": "revoked", "issued_ms": emulator_now - two_days_ms}),
        )
        .await
        .unwrap();
    let store = stack.store().await;
    let mut refreshed = false;
    let mut marked = false;
    for _ in 0..100 {
        let (a, token) = store.credentials(ACCOUNT).await.unwrap().unwrap();
        refreshed = token.expose() != support::TOKEN && a.status == AccountStatus::Active as i32;
        let r = accounts
            .get_account(req(GetAccountRequest { account_id: revoked.into() }, ADMIN_KEY))
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        marked = r.status == AccountStatus::NeedsReauth as i32;
        if refreshed && marked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refreshed, "the token was not refreshed");
    assert!(marked, "the revoked account was not marked NEEDS_REAUTH");
    let (a, _) = store.credentials(ACCOUNT).await.unwrap().unwrap();
    assert!(
        igrelay_core::time::timestamp_to_ms(a.token_issued_time.as_ref().unwrap())
            > igrelay_core::time::now_ms() - 60_000
    );
    assert!(a.token_expires_time.is_some());
    // The status change was published as an account_status event.
    let events = igrelay_testkit::events::read_all(&stack.nats.js, &format!("ig.v1.evt.{revoked}.account_status"))
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let Some(Payload::AccountStatus(changed)) = &events[0].event.payload else {
        panic!("not an account_status event");
    };
    assert_eq!(changed.previous_status, AccountStatus::Active as i32);
    assert_eq!(changed.account.as_ref().unwrap().status, AccountStatus::NeedsReauth as i32);

    // Removing an account.
    accounts.remove_account(req(RemoveAccountRequest { account_id: revoked.into() }, ADMIN_KEY)).await.unwrap();
    let e =
        accounts.remove_account(req(RemoveAccountRequest { account_id: revoked.into() }, ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    stack.stop().await;
}

/// Publishes `n` message events for `account` straight onto NATS, as ingest would.
async fn publish_events(stack: &Stack, account: &str, n: usize) {
    use igrelay_bus::subjects::{self, EventKind};
    use igrelay_core::v1::{Event, EventMeta, Message};
    let id = igrelay_core::AccountId::parse(account).unwrap();
    let msgs = (0..n)
        .map(|i| {
            let event = Event {
                meta: Some(EventMeta {
                    event_id: format!("msg:flow-{i}"),
                    account_id: account.into(),
                    ..Default::default()
                }),
                payload: Some(Payload::Message(Message { mid: format!("flow-{i}"), ..Default::default() })),
            };
            igrelay_bus::OutgoingMessage::proto(
                subjects::event(&id, EventKind::Message),
                format!("msg:flow-{i}"),
                &event,
            )
        })
        .collect();
    igrelay_bus::Publisher::new(stack.nats.js.clone())
        .publish_all(msgs, &Default::default(), Duration::from_secs(10))
        .await
        .unwrap();
}

/// A caller that does not read holds back only its own stream: another caller gets every event
/// meanwhile, and the slow one still gets all of them, in order, once it reads. Shutdown ends
/// open streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_slows_only_its_own_stream() {
    let stack =
        Stack::start_with(Options { tune: Some(Box::new(|c| c.events_buffer = 4)), ..Default::default() }).await;
    let request = || {
        req(
            igrelay_core::v1::StreamEventsRequest {
                account_ids: vec![ACCOUNT.into()],
                kinds: vec!["message".into()],
                start: Some(igrelay_core::v1::stream_events_request::Start::FromBeginning(true)),
            },
            ADMIN_KEY,
        )
    };
    let mut slow = stack.events().stream_events(request()).await.unwrap().into_inner();
    let mut fast = stack.events().stream_events(request()).await.unwrap().into_inner();
    let n = 300;
    publish_events(&stack, ACCOUNT, n).await;
    for i in 0..n {
        let item = tokio::time::timeout(Duration::from_secs(10), fast.next()).await.unwrap().unwrap().unwrap();
        let Some(Payload::Message(m)) = item.event.unwrap().payload else { panic!("not a message") };
        assert_eq!(m.mid, format!("flow-{i}"));
    }
    let mut last = 0;
    for i in 0..n {
        let item = tokio::time::timeout(Duration::from_secs(10), slow.next()).await.unwrap().unwrap().unwrap();
        assert!(item.sequence > last);
        last = item.sequence;
        let Some(Payload::Message(m)) = item.event.unwrap().payload else { panic!("not a message") };
        assert_eq!(m.mid, format!("flow-{i}"));
    }
    // Shutdown ends the streams that are still open, and the gateway stops.
    let shutdown = stack.shutdown.clone();
    let gateway = stack.gateway;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), gateway).await.unwrap().unwrap().unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), slow.next()).await.unwrap();
    assert!(end.as_ref().is_none_or(|r| r.is_err()), "{end:?}");
}

/// Starts a stack refreshing every 100 ms, installs `fault` in the emulator, and registers
/// ACCOUNT with a token two days old (so its refresh is due at once).
async fn refreshing_stack(fault: serde_json::Value) -> Stack {
    let stack = Stack::start_with(Options {
        tune: Some(Box::new(|c| {
            c.token_refresh.enabled = true;
            c.token_refresh.check_interval = Duration::from_millis(100);
        })),
        ..Default::default()
    })
    .await;
    let admin = &stack.emulator.admin;
    admin.fault(&fault).await.unwrap();
    let emulator_now = admin.get("/_admin/clock").await.unwrap()["now_ms"].as_i64().unwrap();
    let two_days_ms = 2 * 86_400_000;
    admin
        .post("/_admin/tokens", &serde_json::json!({"token": support::TOKEN, "issued_ms": emulator_now - two_days_ms}))
        .await
        .unwrap();
    stack
        .accounts()
        .register_account(req(
            RegisterAccountRequest {
                account_id: ACCOUNT.into(),
                login_type: LoginType::Instagram as i32,
                access_token: support::TOKEN.into(),
                token_issued_time: Some(igrelay_core::time::timestamp_from_ms(
                    igrelay_core::time::now_ms() - two_days_ms,
                )),
                ..Default::default()
            },
            ADMIN_KEY,
        ))
        .await
        .unwrap();
    stack
}

/// Waits (bounded) until the emulator has answered a refresh_access_token call.
async fn refresh_answered(stack: &Stack) {
    for _ in 0..200 {
        if stack.emulator_calls("refresh_access_token").await >= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never asked Meta to refresh the token");
}

/// A refresh error that says nothing about the token (here a parameter error, code 100) leaves
/// the account ACTIVE with its token, to be retried; only the 190 family marks NEEDS_REAUTH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_error_that_is_not_about_the_token_leaves_the_account_active() {
    let stack = refreshing_stack(serde_json::json!({"endpoint": "refresh_access_token", "times": 100,
        "error": {"code": 100, "message": "Unsupported request - method type: get", "status": 400}}))
    .await;
    refresh_answered(&stack).await;
    let store = stack.store().await;
    // The answer came; the gateway acts on it at once. Watch a while for a wrong status.
    for _ in 0..30 {
        let (a, token) = store.credentials(ACCOUNT).await.unwrap().unwrap();
        assert_eq!(a.status, AccountStatus::Active as i32, "marked {:?}: {}", a.status, a.status_reason);
        assert_eq!(token.expose(), support::TOKEN);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await;
}

/// An account removed while Meta is answering its refresh stays removed: the refreshed token is
/// written back only at the revision it was read at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_removed_during_its_refresh_stays_removed() {
    // Meta takes 2 s to answer refreshes.
    let stack = refreshing_stack(serde_json::json!({"endpoint": "refresh_access_token", "latency_ms": 2000})).await;
    // The refresh has begun once its lease exists.
    let leases = stack.nats.js.get_key_value("igrelay_leases").await.unwrap();
    let mut leased = false;
    for _ in 0..200 {
        if leases.get(format!("refresh.{ACCOUNT}")).await.unwrap().is_some() {
            leased = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(leased, "no refresh began");
    stack.accounts().remove_account(req(RemoveAccountRequest { account_id: ACCOUNT.into() }, ADMIN_KEY)).await.unwrap();
    assert_eq!(stack.emulator_calls("refresh_access_token").await, 0, "Meta answered before the removal");
    refresh_answered(&stack).await;
    let store = stack.store().await;
    for _ in 0..30 {
        assert!(store.get(ACCOUNT).await.unwrap().is_none(), "the refresh brought the removed account back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await;
}

//! Every error status the gateway promises, through the generated tonic client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use igrelay_core::v1::{
    CommandOutcome, GetAccountRequest, GetOutcomeRequest, ListAccountsRequest, ListConversationsRequest, Recipient,
    SendCommand, SendMessageRequest, Sent, StreamEventsRequest, TextContent, WaitOptions, command_outcome,
    recipient::Target, send_command::Content,
};
use support::{ACCOUNT, ADMIN_KEY, LIMITED_KEY, Options, READER_KEY, Stack, req};
use tonic::Code;
use tonic_types::StatusExt;

fn text_command(account: &str, id: &str) -> SendCommand {
    SendCommand {
        account_id: account.into(),
        command_id: id.into(),
        recipient: Some(Recipient { target: Some(Target::Igsid("5500000000000002".into())) }),
        content: Some(Content::Text(TextContent { text: "hello".into(), quick_replies: vec![] })),
        ..Default::default()
    }
}

fn send(cmd: SendCommand, wait_ms: Option<u64>) -> SendMessageRequest {
    SendMessageRequest {
        command: Some(cmd),
        wait: wait_ms.map(|ms| WaitOptions {
            wait: true,
            timeout: Some(prost_types::Duration {
                seconds: (ms / 1000) as i64,
                nanos: ((ms % 1000) * 1_000_000) as i32,
            }),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_scopes_and_account_limits() {
    let stack = Stack::start().await;
    stack.register_default().await;
    let mut accounts = stack.accounts();
    let mut messaging = stack.messaging();

    // No key, unknown key, x-api-key.
    let e = accounts.list_accounts(req(ListAccountsRequest {}, "")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = accounts.list_accounts(req(ListAccountsRequest {}, "not-a-key")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let mut r = tonic::Request::new(ListAccountsRequest {});
    r.metadata_mut().insert("x-api-key", READER_KEY.parse().unwrap());
    assert_eq!(accounts.list_accounts(r).await.unwrap().into_inner().accounts.len(), 1);

    // A key without the scope.
    let e = messaging.send_message(req(send(text_command(ACCOUNT, ""), None), READER_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("messages:send"), "{e:?}");

    // A key limited to other accounts.
    let e = messaging.send_message(req(send(text_command(ACCOUNT, ""), None), LIMITED_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = accounts.get_account(req(GetAccountRequest { account_id: ACCOUNT.into() }, LIMITED_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let listed = accounts.list_accounts(req(ListAccountsRequest {}, LIMITED_KEY)).await.unwrap().into_inner();
    assert!(listed.accounts.is_empty(), "{listed:?}");
    let e = stack
        .events()
        .stream_events(req(
            StreamEventsRequest { account_ids: vec![ACCOUNT.into()], ..Default::default() },
            LIMITED_KEY,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = stack
        .conversations()
        .list_conversations(req(
            ListConversationsRequest { account_id: ACCOUNT.into(), page_token: String::new() },
            LIMITED_KEY,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_not_found_deadline_and_duplicates() {
    let stack = Stack::start().await;
    stack.register_default().await;
    let mut messaging = stack.messaging();

    // Missing recipient and content, bad command id: INVALID_ARGUMENT naming each field.
    let bad = SendCommand { account_id: ACCOUNT.into(), command_id: "not ok!".into(), ..Default::default() };
    let e = messaging.send_message(req(send(bad, None), ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let details = e.get_details_bad_request().expect("BadRequest details");
    let fields: Vec<&str> = details.field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["command.command_id", "command.recipient", "command.content"], "{details:?}");
    let e = messaging.send_message(req(SendMessageRequest::default(), ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = stack
        .events()
        .stream_events(req(
            StreamEventsRequest { kinds: vec!["message".into(), "nonsense".into()], ..Default::default() },
            ADMIN_KEY,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.get_details_bad_request().unwrap().field_violations[0].field, "kinds[1]");

    // NOT_FOUND: unknown account, unregistered account, unknown outcome.
    let e =
        stack.accounts().get_account(req(GetAccountRequest { account_id: "123".into() }, ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = messaging.send_message(req(send(text_command("123", ""), None), ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = messaging
        .get_outcome(req(
            GetOutcomeRequest { account_id: ACCOUNT.into(), command_id: "never-sent".into(), wait: None },
            ADMIN_KEY,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Nobody carries the command out: a wait ends in DEADLINE_EXCEEDED, the command stays.
    let e = messaging.send_message(req(send(text_command(ACCOUNT, "cmd-1"), Some(300)), ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");

    // The same id again is a duplicate: nothing new is published.
    let again =
        messaging.send_message(req(send(text_command(ACCOUNT, "cmd-1"), None), ADMIN_KEY)).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!(again.command_id, "cmd-1");
    let commands = igrelay_testkit::events::count(&stack.nats.js, "IGRELAY_COMMANDS").await.unwrap();
    assert_eq!(commands, 1);

    // Once dispatch publishes the outcome, a waiting GetOutcome and a plain one see it.
    let waiting = {
        let mut m = stack.messaging();
        tokio::spawn(async move {
            m.get_outcome(req(
                GetOutcomeRequest {
                    account_id: ACCOUNT.into(),
                    command_id: "cmd-1".into(),
                    wait: Some(WaitOptions {
                        wait: true,
                        timeout: Some(prost_types::Duration { seconds: 20, nanos: 0 }),
                    }),
                },
                ADMIN_KEY,
            ))
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    support::publish_outcome(
        &stack.nats.js,
        &CommandOutcome {
            command_id: "cmd-1".into(),
            account_id: ACCOUNT.into(),
            attempts: 1,
            result: Some(command_outcome::Result::Sent(Sent { message_id: "mid-1".into(), ..Default::default() })),
            ..Default::default()
        },
    )
    .await;
    let got = waiting.await.unwrap().unwrap().into_inner();
    assert_eq!(
        got.outcome.unwrap().result,
        Some(command_outcome::Result::Sent(Sent { message_id: "mid-1".into(), ..Default::default() }))
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_exhausted_from_meta_and_from_the_local_limit() {
    let stack = Stack::start_with(Options {
        tune: Some(Box::new(|c| {
            c.conversations_per_s = 1;
            c.conversations_max_queue = Duration::from_millis(100);
        })),
        ..Default::default()
    })
    .await;
    stack.register_default().await;
    let list = || req(ListConversationsRequest { account_id: ACCOUNT.into(), page_token: String::new() }, ADMIN_KEY);
    // Meta throttles (613): RESOURCE_EXHAUSTED.
    stack
        .emulator
        .admin
        .fault(&serde_json::json!({"endpoint": "conversations", "times": 1,
            "error": {"code": 613, "subcode": 2534040, "message": "Calls to this api have exceeded the rate limit.", "status": 400}}))
        .await
        .unwrap();
    let e = stack.conversations().list_conversations(list()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // Three calls at once at 1 call/s with 100 ms of queue: the third is refused here, without
    // calling Meta.
    let (mut a, mut b, mut c) = (stack.conversations(), stack.conversations(), stack.conversations());
    let (ra, rb, rc) =
        tokio::join!(a.list_conversations(list()), b.list_conversations(list()), c.list_conversations(list()));
    let codes: Vec<Code> = [ra, rb, rc].into_iter().map(|r| r.map(|_| Code::Ok).unwrap_or_else(|e| e.code())).collect();
    assert!(codes.iter().filter(|c| **c == Code::ResourceExhausted).count() >= 1, "{codes:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_and_not_serving_while_nats_is_down() {
    let mut stack = Stack::start().await;
    stack.register_default().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(stack.channel.clone());
    let serving = |s: i32| s == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    stack.nats.server.kill();
    let mut down = false;
    for _ in 0..100 {
        let s = health
            .check(tonic_health::pb::HealthCheckRequest { service: "igrelay.v1.MessagingService".into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        if !serving(s) {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(down, "health still SERVING with NATS down");
    let e = stack.messaging().send_message(req(send(text_command(ACCOUNT, ""), None), ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = stack.accounts().list_accounts(req(ListAccountsRequest {}, ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    // Back: SERVING again, commands accepted.
    stack.nats.server.restart().unwrap();
    stack.wait_serving().await;
    let mut ok = false;
    for _ in 0..100 {
        if stack.messaging().send_message(req(send(text_command(ACCOUNT, ""), None), ADMIN_KEY)).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "commands not accepted after NATS came back");
    stack.stop().await;
}

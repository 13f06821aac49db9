//! Tenant isolation: API keys limited to different accounts, with real dispatch and the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use igrelay_core::v1::{
    AuditRecord, GetOutcomeRequest, Recipient, SendCommand, SendMessageRequest, TextContent, WaitOptions,
    command_outcome, recipient::Target, send_command::Content,
};
use support::{ACCOUNT, ACCOUNT_B, Options, Stack, TENANT_A_KEY, TENANT_B_KEY, TOKEN, TOKEN_B, req};

const USER: &str = "5500000000000031";

fn text(account: &str, id: &str, body: &str) -> SendMessageRequest {
    SendMessageRequest {
        command: Some(SendCommand {
            account_id: account.into(),
            command_id: id.into(),
            recipient: Some(Recipient { target: Some(Target::Igsid(USER.into())) }),
            content: Some(Content::Text(TextContent { text: body.into(), quick_replies: vec![] })),
            ..Default::default()
        }),
        wait: Some(WaitOptions { wait: true, timeout: Some(prost_types::Duration { seconds: 30, nanos: 0 }) }),
    }
}

/// Texts the emulator received from `account` to USER.
async fn received(stack: &Stack, account: &str) -> Vec<String> {
    let log = stack.emulator.admin.get(&format!("/_admin/messages?account={account}&user={USER}")).await.unwrap();
    log["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["inbound"] == false)
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

/// Two tenants send with the same command ids: each command is carried out for its own account,
/// each tenant gets its own outcome, and neither sees the other's command as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_with_the_same_command_ids_never_affect_each_other() {
    let stack = Stack::start_with(Options { dispatch: true, ..Default::default() }).await;
    stack.add_account_b().await;
    stack.register(ACCOUNT, TOKEN, TENANT_A_KEY).await;
    stack.register(ACCOUNT_B, TOKEN_B, TENANT_B_KEY).await;
    // The user writes to both accounts, opening both messaging windows.
    stack.emulator.admin.simulate_dm(ACCOUNT, USER, "hi a").await.unwrap();
    stack.emulator.admin.simulate_dm(ACCOUNT_B, USER, "hi b").await.unwrap();

    for id in ["order-1", "order-2"] {
        let (mut a, mut b) = (stack.messaging(), stack.messaging());
        let (ra, rb) = tokio::join!(
            a.send_message(req(text(ACCOUNT, id, &format!("from a {id}")), TENANT_A_KEY)),
            b.send_message(req(text(ACCOUNT_B, id, &format!("from b {id}")), TENANT_B_KEY)),
        );
        for (who, r, account) in [("a", ra, ACCOUNT), ("b", rb, ACCOUNT_B)] {
            let r = r.unwrap_or_else(|e| panic!("tenant {who}, command {id}: {e:?}")).into_inner();
            assert!(!r.duplicate, "tenant {who}'s first {id} reported as a duplicate");
            assert_eq!(r.command_id, id);
            let outcome = r.outcome.unwrap();
            assert_eq!(outcome.account_id, account, "tenant {who} got another account's outcome");
            assert!(
                matches!(outcome.result, Some(command_outcome::Result::Sent(_))),
                "tenant {who}, {id}: {outcome:?}"
            );
        }
    }
    // The same id again within one tenant is still a duplicate; GetOutcome answers per account.
    let again = stack.messaging().send_message(req(text(ACCOUNT, "order-1", "again"), TENANT_A_KEY)).await.unwrap();
    assert!(again.into_inner().duplicate);
    for (account, key) in [(ACCOUNT, TENANT_A_KEY), (ACCOUNT_B, TENANT_B_KEY)] {
        let o = stack
            .messaging()
            .get_outcome(req(
                GetOutcomeRequest { account_id: account.into(), command_id: "order-2".into(), wait: None },
                key,
            ))
            .await
            .unwrap()
            .into_inner()
            .outcome
            .unwrap();
        assert_eq!(o.account_id, account);
    }
    // Each account sent its own messages, once each.
    let mut a = received(&stack, ACCOUNT).await;
    let mut b = received(&stack, ACCOUNT_B).await;
    a.sort();
    b.sort();
    assert_eq!(a, ["from a order-1", "from a order-2"]);
    assert_eq!(b, ["from b order-1", "from b order-2"]);
    // Both tenants' commands were audited, each once.
    let audit: Vec<AuditRecord> = support::read(&stack.nats.js, "IGRELAY_AUDIT", "ig.v1.audit.*.send").await;
    for account in [ACCOUNT, ACCOUNT_B] {
        let n = audit.iter().filter(|r| r.account_id == account).count();
        assert_eq!(n, 2, "audit records of {account}: {audit:?}");
    }
    stack.stop().await;
}

/// Ids the gateway assigns are 128 random bits: 32 hex digits, nothing shared between two
/// (a NUID sequence shares its 12-character prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_command_ids_are_random() {
    let stack = Stack::start().await;
    stack.register_default().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut r = text(ACCOUNT, "", "hi");
        r.wait = None;
        ids.push(stack.messaging().send_message(req(r, TENANT_A_KEY)).await.unwrap().into_inner().command_id);
    }
    for id in &ids {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(ids[0][..12], ids[1][..12], "{ids:?}");
    stack.stop().await;
}

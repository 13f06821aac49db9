//! The main flows through a gRPC client that is not igrelay's own code: Python grpcio with stubs
//! generated from proto/ at test time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use igrelay_core::v1::AuditRecord;
use support::{ACCOUNT, Options, Stack};

/// Register an account, stream the events of a simulated DM, send a message that dispatch
/// carries out and the emulator receives, wait for its outcome, fetch outcomes by id; then check what reached NATS: the
/// command carries the caller, and an audit record names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_registers_streams_sends_and_waits() {
    let stack = Stack::start_with(Options { dispatch: true, ..Default::default() }).await;
    let out = stack.python("flow").await;
    assert!(out.contains("\"step\": \"send\""), "{out}");

    let audit: Vec<AuditRecord> =
        support::read(&stack.nats.js, "IGRELAY_AUDIT", &format!("ig.v1.audit.{ACCOUNT}.send")).await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|a| a.caller.as_ref().is_some_and(|c| c.id == "admin")
        && a.method == "/igrelay.v1.MessagingService/SendMessage"
        && !a.detail.contains("hi from python")));
    let registered: Vec<AuditRecord> =
        support::read(&stack.nats.js, "IGRELAY_AUDIT", &format!("ig.v1.audit.{ACCOUNT}.account_register")).await;
    assert_eq!(registered.len(), 1);
    // Dispatch consumed the commands (work queue) and published their outcomes.
    let outcomes: Vec<igrelay_core::v1::CommandOutcome> =
        support::read(&stack.nats.js, "IGRELAY_OUTCOMES", &format!("ig.v1.out.{ACCOUNT}.*")).await;
    assert!(outcomes.iter().any(|o| o.command_id == "py-cmd-2"));
    stack.stop().await;
}

/// A client that disconnects and resumes after the last sequence it received gets the events it
/// missed, in order, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_resumes_an_event_stream_after_disconnecting() {
    let stack = Stack::start().await;
    let out = stack.python("resume").await;
    assert!(out.contains("\"step\": \"resumed\""), "{out}");
    stack.stop().await;
}

/// The error statuses as a grpcio client sees them (codes, details, and the google.rpc.BadRequest
/// in `grpc-status-details-bin`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_sees_grpc_error_statuses() {
    let stack = Stack::start().await;
    let out = stack.python("errors").await;
    assert!(out.contains("\"step\": \"deadline_exceeded\""), "{out}");
    stack.stop().await;
}

/// ProfilesService through grpcio, with enrich answering: a profile on demand, ForgetUser, and
/// the refusal afterwards with its google.rpc.ErrorInfo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_gets_and_forgets_a_profile() {
    let stack = Stack::start().await;
    stack.start_enrich().await;
    let out = stack.python("profiles").await;
    assert!(out.contains("\"step\": \"no_consent\""), "{out}");
    stack.stop().await;
}

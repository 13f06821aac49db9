//! Outcomes by command id.
//!
//! Dispatch publishes each command's `CommandOutcome` on `ig.v1.out.<account>.<outcome>`
//! (stream IGRELAY_OUTCOMES). The gateway copies each into KV bucket `igrelay_outcomes` under
//! `<account>.<command id>` through one durable consumer shared by all gateway replicas, so a
//! look-up is one KV get and a wait is a KV watch of one key (which also sees an outcome that was
//! stored before the wait began).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use igrelay_bus::topology::StreamDef;
use igrelay_bus::{ConsumerDef, Delivery, HandlerError, run_consumer};
use igrelay_core::v1::CommandOutcome;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::server::Shared;
use crate::status;

/// Durable consumer name of the outcome index (shared by every gateway replica).
pub const INDEX_CONSUMER: &str = "igrelay-gateway-outcomes";

pub fn key(account: &str, command_id: &str) -> String {
    format!("{account}.{command_id}")
}

/// Keeps `igrelay_outcomes` up to date until `shutdown`.
pub async fn run_indexer(s: Arc<Shared>, shutdown: CancellationToken) {
    let def = ConsumerDef::new(StreamDef::Outcomes, INDEX_CONSUMER);
    loop {
        let kv = s.outcomes.clone();
        let result = run_consumer(
            &s.js,
            &def,
            move |d| {
                let kv = kv.clone();
                async move { index(&kv, d).await }
            },
            shutdown.clone(),
        )
        .await;
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "outcome index consumer stopped; restarting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn index(kv: &kv::Store, d: Delivery) -> Result<(), HandlerError> {
    let outcome = CommandOutcome::decode(d.payload.clone())
        .map_err(|e| HandlerError::Reject { reason: format!("not a CommandOutcome: {e}") })?;
    if igrelay_core::ids::check_token(&outcome.account_id).is_err()
        || igrelay_core::ids::check_token(&outcome.command_id).is_err()
    {
        tracing::warn!(subject = %d.subject, "outcome without a usable account or command id; not indexed");
        return Ok(());
    }
    let k = key(&outcome.account_id, &outcome.command_id);
    let retry =
        |e: String| HandlerError::Retry { reason: format!("cannot index outcome: {e}"), after: Duration::from_secs(1) };
    if is_conflict(&outcome) {
        // A reused id with new content: the record of the command that owns the id stays; the
        // conflict is indexed only when nothing else is (its own outcome is on the stream).
        return match kv.create(k, d.payload).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(retry(e.to_string())),
        };
    }
    kv.put(k, d.payload).await.map(|_| ()).map_err(|e| retry(e.to_string()))
}

fn is_conflict(o: &CommandOutcome) -> bool {
    matches!(&o.result, Some(igrelay_core::v1::command_outcome::Result::Rejected(r))
        if r.reason == igrelay_core::v1::RejectReason::DuplicateIdConflict as i32)
}

/// The outcome if there is one.
pub async fn get(s: &Shared, account: &str, command_id: &str) -> Result<Option<CommandOutcome>, Status> {
    let value = s.outcomes.get(key(account, command_id)).await.map_err(status::nats_unavailable)?;
    value
        .map(|v| {
            CommandOutcome::decode(v).map_err(|e| Status::internal(format!("stored outcome cannot be decoded: {e}")))
        })
        .transpose()
}

/// Waits up to `timeout` for the outcome (DEADLINE_EXCEEDED when it does not come).
pub async fn wait(s: &Shared, account: &str, command_id: &str, timeout: Duration) -> Result<CommandOutcome, Status> {
    let mut watch = s.outcomes.watch_with_history(key(account, command_id)).await.map_err(status::nats_unavailable)?;
    let first = async {
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(status::nats_unavailable)?;
            if entry.operation == kv::Operation::Put {
                return CommandOutcome::decode(entry.value)
                    .map_err(|e| Status::internal(format!("stored outcome cannot be decoded: {e}")));
            }
        }
        Err(status::nats_unavailable("watch ended"))
    };
    tokio::select! {
        r = tokio::time::timeout(timeout, first) => r.unwrap_or_else(|_| Err(Status::deadline_exceeded(format!(
            "no outcome for command {command_id} within {} ms; it stays accepted: ask again with GetOutcome",
            timeout.as_millis()
        )))),
        _ = s.shutdown.cancelled() => Err(Status::unavailable("gateway shutting down; ask again with GetOutcome")),
    }
}

/// How long to wait: the requested timeout, else the call's gRPC deadline, capped by
/// `gateway.max_wait`.
pub fn wait_budget(
    requested: Option<&prost_types::Duration>,
    metadata: &tonic::metadata::MetadataMap,
    max: Duration,
) -> Duration {
    let requested = requested.and_then(|d| {
        (d.seconds >= 0 && d.nanos >= 0)
            .then(|| Duration::new(d.seconds as u64, d.nanos as u32))
            .filter(|d| !d.is_zero())
    });
    // Answer a little before the caller's own deadline, so it gets our status, not its own.
    let grpc = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|d| d.saturating_sub(Duration::from_millis(50)));
    let mut budget = requested.unwrap_or(max).min(max);
    if let Some(g) = grpc {
        budget = budget.min(g);
    }
    budget
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_takes_the_smallest_limit() {
        let mut md = tonic::metadata::MetadataMap::new();
        let max = Duration::from_secs(60);
        assert_eq!(wait_budget(None, &md, max), max);
        let req = prost_types::Duration { seconds: 2, nanos: 0 };
        assert_eq!(wait_budget(Some(&req), &md, max), Duration::from_secs(2));
        md.insert("grpc-timeout", "1000m".parse().unwrap());
        assert_eq!(wait_budget(Some(&req), &md, max), Duration::from_millis(950));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("x"), None);
    }
}

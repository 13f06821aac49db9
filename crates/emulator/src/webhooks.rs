//! Sends webhooks like Meta: batched per account into `{"object":"instagram","entry":[…]}`,
//! serialised with non-ASCII escaped, signed with `X-Hub-Signature-256`, retried on non-2xx.

use crate::config::ChangesStyle;
use crate::server::App;
use crate::state::{Delivery, Outgoing, trim};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// Groups updates into entries: one per account and kind, in arrival order. Messaging entries
/// carry `time` in milliseconds, `changes` entries in seconds, as Meta sends them.
pub fn envelope(batch: &[Outgoing], now_ms: i64, style: ChangesStyle) -> Value {
    let mut entries: Vec<(String, bool, Vec<Value>)> = Vec::new();
    for o in batch {
        match entries.iter_mut().find(|(a, c, _)| *a == o.account && *c == o.is_change) {
            Some(e) => e.2.push(o.item.clone()),
            None => entries.push((o.account.clone(), o.is_change, vec![o.item.clone()])),
        }
    }
    let mut entry = Vec::new();
    for (account, is_change, items) in entries {
        match (is_change, style) {
            (false, _) => entry.push(json!({"id": account, "time": now_ms, "messaging": items})),
            (true, ChangesStyle::Changes) => {
                entry.push(json!({"id": account, "time": now_ms / 1000, "changes": items}))
            }
            (true, ChangesStyle::Flat) => {
                for item in items {
                    entry.push(
                        json!({"id": account, "time": now_ms / 1000, "field": item["field"], "value": item["value"]}),
                    );
                }
            }
        }
    }
    json!({"object": "instagram", "entry": entry})
}

pub async fn run_sender(app: App, mut rx: UnboundedReceiver<Outgoing>, shutdown: CancellationToken) {
    let (batch_max, window, retries, secret, style) = {
        let st = app.lock();
        let w = &st.cfg.webhooks;
        (
            w.batch_max.max(1),
            Duration::from_millis(w.batch_window_ms),
            w.retry_delays_ms.clone(),
            st.cfg.app_secret.clone(),
            w.changes_style,
        )
    };
    let mut batch_seq = 0u64;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        let mut batch = vec![first];
        if batch_max > 1 {
            let deadline = tokio::time::Instant::now() + window;
            while batch.len() < batch_max {
                tokio::select! {
                    m = rx.recv() => match m { Some(m) => batch.push(m), None => break },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        batch_seq += 1;
        let now = app.lock().now();
        let bytes = igrelay_core::webhook::to_meta_json(&envelope(&batch, now, style));
        let signature = igrelay_core::webhook::sign(secret.as_bytes(), &bytes);
        // The first attempt is made in line so deliveries keep their order while the callback
        // answers 2xx; retries run on their own, so after failures order is not guaranteed
        // (exactly Meta's promise).
        if !attempt(&app, batch_seq, 0, &bytes, &signature, batch.len()).await && !retries.is_empty() {
            let app = app.clone();
            let retries = retries.clone();
            let shutdown = shutdown.clone();
            let n = batch.len();
            tokio::spawn(async move {
                for (i, delay) in retries.iter().enumerate() {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(*delay)) => {}
                    }
                    if attempt(&app, batch_seq, i as u32 + 1, &bytes, &signature, n).await {
                        return;
                    }
                }
                tracing::warn!(batch = batch_seq, "webhook batch dropped after all retries");
            });
        }
    }
}

/// One POST; records the answer; true when the batch is done (2xx, or nowhere to send it).
async fn attempt(app: &App, batch: u64, attempt: u32, body: &[u8], signature: &str, items: usize) -> bool {
    let (url, timeout) = {
        let st = app.lock();
        (st.callback_url.clone(), Duration::from_millis(st.cfg.webhooks.timeout_ms))
    };
    let record = |status: Option<u16>, error: Option<String>, ok: bool| {
        let mut st = app.lock();
        let at_ms = st.now();
        st.deliveries.push(Delivery {
            batch,
            attempt,
            at_ms,
            status,
            error,
            ok,
            items,
            signature: signature.to_owned(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
        trim(&mut st.deliveries);
    };
    let Some(url) = url else {
        record(None, Some("no callback configured".into()), false);
        return true;
    };
    let resp = app
        .inner
        .http
        .post(&url)
        .timeout(timeout)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(igrelay_core::webhook::SIGNATURE_HEADER, signature)
        .body(body.to_vec())
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let ok = r.status().is_success();
            record(Some(status), None, ok);
            if !ok {
                tracing::debug!(batch, attempt, status, "webhook answered non-2xx");
            }
            ok
        }
        Err(e) => {
            record(None, Some(e.without_url().to_string()), false);
            false
        }
    }
}

/// Meta's GET handshake against the callback: `hub.mode=subscribe`, `hub.challenge`,
/// `hub.verify_token`; the callback must answer 200 with the challenge as its body.
pub async fn verify_callback(app: &App) -> Value {
    let (url, token) = {
        let st = app.lock();
        (st.callback_url.clone(), st.cfg.verify_token.clone())
    };
    let Some(url) = url else {
        return json!({"ok": false, "error": "no callback configured"});
    };
    let challenge = app.lock().next_seq() * 7919 + 1_158_201_444;
    let resp = app
        .inner
        .http
        .get(&url)
        .query(&[("hub.mode", "subscribe"), ("hub.challenge", &challenge.to_string()), ("hub.verify_token", &token)])
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            json!({"ok": status == 200 && body.trim() == challenge.to_string(), "status": status, "challenge": challenge.to_string(), "body": body})
        }
        Err(e) => json!({"ok": false, "error": e.without_url().to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_entries_per_account_and_kind() {
        let o =
            |a: &str, c: bool, n: i64| Outgoing { account: a.into(), item: json!({"n": n}), is_change: c, time_ms: 0 };
        let v = envelope(
            &[o("1", false, 1), o("2", false, 2), o("1", false, 3), o("1", true, 4)],
            1_700_000_000_123,
            ChangesStyle::Changes,
        );
        let e = v["entry"].as_array().unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0]["messaging"], json!([{"n":1},{"n":3}]));
        assert_eq!(e[0]["time"], 1_700_000_000_123i64);
        assert_eq!(e[2]["changes"], json!([{"n":4}]));
        assert_eq!(e[2]["time"], 1_700_000_000i64);
        let c = |n: i64| Outgoing {
            account: "1".into(),
            item: json!({"field": "comments", "value": {"n": n}}),
            is_change: true,
            time_ms: 0,
        };
        let v = envelope(&[c(1), c(2)], 1_700_000_000_123, ChangesStyle::Flat);
        assert_eq!(v["entry"][1], json!({"id": "1", "time": 1_700_000_000i64, "field": "comments", "value": {"n": 2}}));
    }
}

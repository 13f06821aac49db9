//! The emulator's own throughput on loopback, so it is known not to be the bottleneck.

use crate::config::EmulatorConfig;
use serde_json::json;
use std::time::Instant;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub requests: u64,
    pub errors: u64,
    pub concurrency: usize,
    pub elapsed_ms: u128,
    pub requests_per_s: f64,
}

/// Starts an emulator on 127.0.0.1:0 with no rate limits and measures `POST /{ig}/messages`
/// (text) from `concurrency` keep-alive clients, `requests` in all.
pub async fn bench_requests_per_s(requests: u64, concurrency: usize) -> anyhow::Result<BenchReport> {
    let mut cfg = EmulatorConfig::for_tests();
    cfg.frozen_clock_ms = None;
    let account = cfg.accounts.first().cloned().unwrap_or_default();
    let emu = crate::spawn(cfg).await?;
    let concurrency = concurrency.max(1);
    let mut users = Vec::new();
    for i in 0..concurrency {
        let from = format!("{}", 6_200_000_000_000_000u64 + i as u64);
        emu.admin.simulate_dm(&account.ig_id, &from, "hi").await?;
        users.push(from);
    }
    let url = format!("{}/v23.0/{}/messages", emu.base_url, account.ig_id);
    let per_task = requests / concurrency as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for user in users {
        let url = url.clone();
        let token = account.token.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let body = json!({"recipient": {"id": user}, "message": {"text": "benchmark"}}).to_string();
            let mut errors = 0u64;
            for _ in 0..per_task {
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => errors += 1,
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await?;
    }
    let elapsed = start.elapsed();
    emu.shutdown().await;
    let done = per_task * concurrency as u64;
    Ok(BenchReport {
        requests: done,
        errors,
        concurrency,
        elapsed_ms: elapsed.as_millis(),
        requests_per_s: done as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

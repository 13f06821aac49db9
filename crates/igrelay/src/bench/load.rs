//! A small HTTP load generator for benchmarks on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use igrelay_testkit::http::{self, HttpClient, Method};

/// Builds request `i` of worker `w`: headers and body.
pub type RequestFn = Arc<dyn Fn(usize, u64) -> (Vec<(&'static str, String)>, Bytes) + Send + Sync>;

#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies of successful requests, milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
}

impl LoadResult {
    pub fn per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies_ms.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_ms[idx.min(self.latencies_ms.len() - 1)]
    }
}

/// Closed loop: `connections` workers each send one request after another for `duration`.
pub async fn closed_loop(
    client: &HttpClient,
    url: &str,
    connections: usize,
    duration: Duration,
    make: RequestFn,
) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..connections {
        let (client, url, stop, make) =
            (client.clone(), url.to_owned(), stop.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = LoadResult::default();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (headers, body) = make(w, i);
                i += 1;
                let t = Instant::now();
                match http::send(&client, Method::POST, &url, &headers, body).await {
                    Ok(resp) if resp.status == 200 => {
                        r.ok += 1;
                        r.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => r.errors += 1,
                }
            }
            r
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    collect(tasks, started).await
}

/// Open loop: requests started at `rate` per second for `duration`, whatever the answers do,
/// so latency is measured at a known load.
pub async fn open_loop(
    client: &HttpClient,
    url: &str,
    rate: f64,
    duration: Duration,
    make: RequestFn,
) -> LoadResult {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut i = 0u64;
    while started.elapsed() < duration {
        ticker.tick().await;
        // Bound the requests outstanding so an overloaded target cannot exhaust the generator.
        if in_flight.load(Ordering::Relaxed) > 512 {
            continue;
        }
        let (client, url, make, in_flight) = (
            client.clone(),
            url.to_owned(),
            make.clone(),
            in_flight.clone(),
        );
        in_flight.fetch_add(1, Ordering::Relaxed);
        let n = i;
        i += 1;
        tasks.push(tokio::spawn(async move {
            let mut r = LoadResult::default();
            let (headers, body) = make(0, n);
            let t = Instant::now();
            match http::send(&client, Method::POST, &url, &headers, body).await {
                Ok(resp) if resp.status == 200 => {
                    r.ok = 1;
                    r.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                _ => r.errors = 1,
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
            r
        }));
    }
    collect(tasks, started).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<LoadResult>>, started: Instant) -> LoadResult {
    let mut total = LoadResult::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.ok += r.ok;
            total.errors += r.errors;
            total.latencies_ms.extend(r.latencies_ms);
        }
    }
    total.elapsed = started.elapsed();
    total.latencies_ms.sort_by(f64::total_cmp);
    total
}

//! A small HTTP load generator for benchmarks on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
        super::measure::percentile(&self.latencies_ms, p)
    }

    /// Adds `other`'s requests, time and latencies (kept sorted) to these.
    pub fn merge(&mut self, other: LoadResult) {
        self.add(other);
        self.latencies_ms.sort_by(f64::total_cmp);
    }

    fn add(&mut self, other: LoadResult) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies_ms.extend(other.latencies_ms);
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
        let (client, url, stop, make) = (client.clone(), url.to_owned(), stop.clone(), make.clone());
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

/// Open loop: `rate` requests per second spread over `workers` paced workers for `duration`,
/// each sending on its own schedule whatever the answers do, so latency is measured at a known
/// load. A worker that falls behind its schedule sends at once (the backlog shows as latency
/// only through the target's answers, not through the generator).
pub async fn open_loop(
    client: &HttpClient,
    url: &str,
    rate: f64,
    workers: usize,
    duration: Duration,
    make: RequestFn,
) -> LoadResult {
    let started = Instant::now();
    let per_worker = Duration::from_secs_f64(workers as f64 / rate.max(1.0));
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, url, make) = (client.clone(), url.to_owned(), make.clone());
        // Stagger the workers across one interval so their requests interleave.
        let offset = per_worker.mul_f64(w as f64 / workers as f64);
        tasks.push(tokio::spawn(async move {
            let mut r = LoadResult::default();
            let mut next = tokio::time::Instant::now() + offset;
            let mut i = 0u64;
            while next < deadline {
                tokio::time::sleep_until(next).await;
                next += per_worker;
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
    collect(tasks, started).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<LoadResult>>, started: Instant) -> LoadResult {
    let mut total = LoadResult::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.add(r);
        }
    }
    // The workers ran side by side: the phase took the wall time, not the sum of theirs. Read
    // before sorting, which is not part of the phase; sorted once, not once per worker.
    total.elapsed = started.elapsed();
    total.latencies_ms.sort_by(f64::total_cmp);
    total
}

//! Serving HTTP with bounds, for every listener a client outside igrelay can reach (ingest's
//! webhook, enrich's data deletion callback, the ops listeners).
//!
//! `axum::serve` waits for a client as long as the client likes: one that sends its headers
//! slowly, or its headers and then nothing of the body, holds a connection and its buffers, and
//! a graceful stop waits for it forever. Here:
//! - a request's headers must arrive within `header_timeout` (also how long an idle
//!   keep-alive connection stays open),
//! - a request, reading its body included, is answered within `request_timeout` (408 and the
//!   connection closes otherwise),
//! - at most `max_connections` connections are open; further ones wait in the listen backlog,
//! - on shutdown, idle connections close at once and a request in progress gets at most
//!   `request_timeout` to finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds of one HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest a client may take to send a request's headers, and longest an idle keep-alive
    /// connection stays open.
    pub header_timeout: Duration,
    /// Longest from a request's headers to its answer, reading the body included.
    pub request_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`, then closes idle connections
/// and waits (bounded) for requests in progress.
pub async fn serve(listener: TcpListener, router: Router, limits: HttpLimits, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let tower = TowerToHyperService::new(router);
    loop {
        // A permit first: at the limit, connections wait in the backlog instead of being read.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // e.g. out of file descriptors: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let tower = tower.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let answer = hyper::service::Service::call(&tower, req);
            async move {
                match tokio::time::timeout(limits.request_timeout, answer).await {
                    Ok(answered) => answered,
                    Err(_) => Ok::<_, Infallible>(timed_out(limits.request_timeout)),
                }
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            // A request in progress is bounded by the request timeout already; a little more
            // lets its answer go out.
            let _ = tokio::time::timeout(limits.request_timeout + Duration::from_secs(1), conn).await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// 408, and the connection closes (its request body may be half read).
fn timed_out(after: Duration) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("request not complete within {} ms\n", after.as_millis())));
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use axum::routing::post;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: HttpLimits) -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/", post(|body: axum::body::Bytes| async move { format!("got {} bytes", body.len()) }));
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, router, limits, stop.clone()));
        (addr, stop, task)
    }

    /// Reads until the server closes the connection (bounded), returning what it sent.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server did not close the connection");
        String::from_utf8_lossy(&out).into_owned()
    }

    fn short() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(500),
            max_connections: 4,
        }
    }

    #[tokio::test]
    async fn a_complete_request_is_answered() {
        let (addr, stop, task) = start(short()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc").await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("got 3 bytes"), "{answer}");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_stalled_body_gets_408_and_the_connection_closes() {
        let (addr, stop, task) = start(short()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nonly a little").await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn stalled_headers_close_the_connection() {
        let (addr, stop, task) = start(short()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(!answer.contains("200"), "{answer}");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_for_a_stalled_client() {
        // Long timeouts: only the shutdown path can end the stalled request early.
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(2),
            max_connections: 4,
        };
        let (addr, stop, task) = start(limits).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nstall").await.unwrap();
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), task).await.expect("serve returned").unwrap();
        read_to_close(&mut idle).await;
        read_to_close(&mut s).await;
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_until_one_closes() {
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(600),
            max_connections: 1,
        };
        let (addr, stop, task) = start(limits).await;
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n").await.unwrap();
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\nconnection: close\r\n\r\nb")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
        assert!(waited.is_err(), "the second connection was served while the first held the only slot");
        // The first finishes its request and closes: the second is served.
        first.write_all(b"a").await.unwrap();
        drop(first);
        let answer = read_to_close(&mut second).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        stop.cancel();
        task.await.unwrap();
    }
}

//! The HTTP side of ingest.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use igrelay_bus::topology::StreamDef;
use igrelay_bus::{BusConfig, OutgoingMessage, Publisher, subjects};
use igrelay_core::webhook::{self, SIGNATURE_HEADER};
use opentelemetry::KeyValue;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt, Tracer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::IngestConfig;
use crate::metrics::Metrics;
use crate::parse::{DeliveryContext, parse_delivery};
use igrelay_runtime::server::serve;

/// Shared by every request; behind one `Arc` so a request clones a pointer, not a NATS client.
type AppState = Arc<Shared>;

struct Shared {
    cfg: Arc<IngestConfig>,
    verifier: webhook::Verifier,
    publisher: Publisher,
    client: async_nats::Client,
    streams_ready: Arc<AtomicBool>,
    metrics: Metrics,
    /// Dispatch's records of sent message ids (bucket igrelay_idempotency), once opened.
    sent: Arc<std::sync::OnceLock<async_nats::jetstream::kv::Store>>,
    /// Taken from the global provider when serving starts (after telemetry is installed).
    tracer: BoxedTracer,
    /// Deliveries older than this are dropped (`ingest.max_delivery_age`, resolved).
    max_delivery_age: Duration,
    /// The largest event one NATS message can carry, from the server's max_payload; refreshed
    /// with the stream check rather than read from the client on every delivery.
    max_event_bytes: AtomicUsize,
}

/// Binds `cfg.listen` and `cfg.ops_listen` and serves until `shutdown`.
pub async fn run(cfg: IngestConfig, bus: BusConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (ingest.listen)", cfg.listen))?;
    let ops = TcpListener::bind(cfg.ops_listen)
        .await
        .with_context(|| format!("cannot listen on {} (ingest.ops_listen)", cfg.ops_listen))?;
    run_with_listeners(cfg, bus, listener, ops, shutdown).await
}

/// Serves the webhook on `listener` and `/healthz`, `/readyz`, `/metrics` on `ops_listener`,
/// both already bound (tests bind port 0), until `shutdown`. In-flight requests finish (within
/// `ingest.request_timeout`) before it returns.
pub async fn run_with_listeners(
    cfg: IngestConfig,
    bus: BusConfig,
    listener: TcpListener,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let max_delivery_age =
        cfg.max_delivery_age.unwrap_or_else(|| StreamDef::Events.config(&bus.topology).duplicate_window);
    let client = igrelay_bus::connect(&bus.nats).await?;
    let js = igrelay_bus::connect::jetstream(client.clone(), bus.nats.request_timeout);
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let state = Arc::new(Shared {
        verifier: webhook::Verifier::new(cfg.app_secrets.iter().map(|s| s.expose().as_bytes())),
        cfg: Arc::new(cfg),
        publisher: Publisher::new(js.clone()),
        client: client.clone(),
        streams_ready: Arc::new(AtomicBool::new(false)),
        metrics,
        sent: Arc::default(),
        tracer: opentelemetry::global::tracer("igrelay-ingest"),
        max_delivery_age,
        max_event_bytes: AtomicUsize::new(max_event_bytes(0)),
    });
    tokio::spawn(keep_streams(js, bus.topology, client.clone(), state.clone(), shutdown.clone()));

    let readiness = {
        let (client, ready) = (client.clone(), state.streams_ready.clone());
        Arc::new(move || {
            if !igrelay_bus::connect::is_connected(&client) {
                Err("not connected to NATS".to_string())
            } else if !ready.load(Ordering::Relaxed) {
                Err("JetStream stream IGRELAY_EVENTS not confirmed yet".to_string())
            } else {
                Ok(())
            }
        })
    };
    let app = Router::new().route(&state.cfg.path, get(challenge).post(receive)).with_state(state.clone());
    let ops = igrelay_runtime::ops::router(Arc::new(registry), readiness);
    let (addr, ops_addr) = (listener.local_addr()?, ops_listener.local_addr()?);
    tracing::info!(%addr, %ops_addr, path = %state.cfg.path, "ingest listening");
    let limits = state.cfg.http_limits();
    tokio::join!(serve(listener, app, limits, shutdown.clone()), serve(ops_listener, ops, limits, shutdown.clone()));
    // Everything answered 200 was acknowledged already; flush anything else on its way out.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    tracing::info!("ingest stopped");
    Ok(())
}

/// Creates the events stream once NATS is reachable, and checks it again every few seconds, so
/// readiness reflects reality after a NATS restart.
async fn keep_streams(
    js: async_nats::jetstream::Context,
    topology: igrelay_bus::TopologyConfig,
    client: async_nats::Client,
    state: AppState,
    shutdown: CancellationToken,
) {
    loop {
        let ok = igrelay_bus::connect::is_connected(&client)
            && match igrelay_bus::ensure_streams(&js, &topology, &[StreamDef::Events]).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ensure streams yet");
                    false
                }
            };
        if ok && state.sent.get().is_none() && !state.cfg.echo_correlation_wait.is_zero() {
            match igrelay_bus::ensure_kv(&js, &topology, igrelay_bus::topology::KvDef::Idempotency).await {
                Ok(kv) => {
                    let _ = state.sent.set(kv);
                }
                Err(e) => tracing::warn!(error = %e, "echo correlation not available yet"),
            }
        }
        state.max_event_bytes.store(max_event_bytes(client.server_info().max_payload), Ordering::Relaxed);
        state.streams_ready.store(ok, Ordering::Relaxed);
        let pause = if ok { Duration::from_secs(5) } else { Duration::from_millis(500) };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Marks echoes of messages igrelay sent with the command that sent them.
async fn correlate_echoes(s: &AppState, events: &mut [crate::parse::ParsedEvent]) {
    use igrelay_core::v1::event::Payload;
    let Some(kv) = s.sent.get() else { return };
    let until = tokio::time::Instant::now() + s.cfg.echo_correlation_wait;
    let lookups = events.iter_mut().filter_map(|e| match e.event.payload.as_mut() {
        Some(Payload::Message(m)) if m.is_echo && !m.mid.is_empty() => Some(m),
        _ => None,
    });
    let futures = lookups.map(|m| async move {
        let key = igrelay_bus::topology::sent_message_key(&m.mid);
        loop {
            if let Ok(Some(id)) = kv.get(&key).await {
                m.sent_by_command_id = String::from_utf8_lossy(&id).into_owned();
                return;
            }
            if tokio::time::Instant::now() + Duration::from_millis(25) > until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    futures::future::join_all(futures).await;
}

/// Meta's subscription handshake.
async fn challenge(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mode = q.get("hub.mode").map(String::as_str);
    let token = q.get("hub.verify_token").map(String::as_bytes).unwrap_or_default();
    if mode != Some("subscribe") {
        s.metrics.reject("challenge_bad_mode");
        return (StatusCode::FORBIDDEN, "hub.mode must be \"subscribe\"\n").into_response();
    }
    if !webhook::constant_time_eq(token, s.cfg.verify_token.expose().as_bytes()) {
        s.metrics.reject("challenge_bad_token");
        return (StatusCode::FORBIDDEN, "hub.verify_token does not match the configured verify token\n")
            .into_response();
    }
    match q.get("hub.challenge") {
        Some(c) => ([(header::CONTENT_TYPE, "text/plain")], c.clone()).into_response(),
        None => (StatusCode::BAD_REQUEST, "hub.challenge is missing\n").into_response(),
    }
}

/// A webhook delivery.
async fn receive(State(s): State<AppState>, request: axum::extract::Request) -> Response {
    let started = Instant::now();
    // Taken apart rather than through the HeaderMap extractor, which clones every header.
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    s.metrics.received.inc();
    // The request's span is started on the OpenTelemetry tracer itself rather than as a
    // `tracing` span: through the subscriber and its OTel layer it cost more CPU than parsing
    // the webhook. Its context goes into every event's headers.
    let parent = igrelay_runtime::telemetry::extract_http(&headers).unwrap_or_default();
    let span = s.tracer.build_with_context(SpanBuilder::from_name("POST webhook").with_kind(SpanKind::Server), &parent);
    let cx = parent.with_span(span);
    let response = handle(&s, &headers, body, &cx).await;
    cx.span().set_attribute(KeyValue::new("http.response.status_code", i64::from(response.status().as_u16())));
    s.metrics.latency.observe(started.elapsed().as_secs_f64());
    response
}

async fn handle(s: &AppState, headers: &HeaderMap, body: Body, cx: &opentelemetry::Context) -> Response {
    let limit = s.cfg.max_body_bytes;
    let too_large = || {
        s.metrics.reject("body_too_large");
        (StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {limit} bytes (ingest.max_body_bytes)\n"))
            .into_response()
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => return too_large(),
        Err(e) => {
            s.metrics.reject("body_unreadable");
            return (StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}\n")).into_response();
        }
    };

    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    if let Err(e) = s.verifier.verify(signature, &bytes) {
        s.metrics.reject(match e {
            webhook::SignatureError::Missing => "signature_missing",
            webhook::SignatureError::Malformed => "signature_malformed",
            webhook::SignatureError::Mismatch => "signature_mismatch",
        });
        tracing::warn!(error = %e, trace_id = %trace_id(cx), "webhook rejected");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }

    if !igrelay_bus::connect::is_connected(&s.client) {
        return unavailable(s, cx, "NATS is not connected");
    }

    let ctx = DeliveryContext::with_max_event_bytes(
        &bytes,
        igrelay_core::time::now_ms(),
        s.max_event_bytes.load(Ordering::Relaxed),
    );
    let mut events = parse_delivery(&bytes, &ctx);
    if let Some(age) = too_old(&events, ctx.received_ms, s.max_delivery_age) {
        s.metrics.reject("replay_too_old");
        tracing::warn!(
            age_s = age.as_secs(),
            max_delivery_age_s = s.max_delivery_age.as_secs(),
            delivery = %ctx.delivery_id,
            trace_id = %trace_id(cx),
            "dropping a delivery older than ingest.max_delivery_age (a replay; its events would be stored twice)"
        );
        return Response::new(Body::from("EVENT_RECEIVED"));
    }
    for e in &events {
        if e.oversized {
            s.metrics.oversized.inc();
            tracing::warn!(event_id = e.event_id(), trace_id = %trace_id(cx), "event too large for NATS: stored as oversized");
        }
        if e.event.meta.as_ref().is_some_and(|m| !m.time_problem.is_empty()) {
            s.metrics.time_unreadable.inc();
        }
    }
    correlate_echoes(s, &mut events).await;
    cx.span().set_attribute(KeyValue::new("igrelay.events", events.len() as i64));
    let messages: Vec<OutgoingMessage> = events
        .iter()
        .map(|e| {
            let subject = subjects::event(&e.account, e.kind);
            OutgoingMessage::proto(subject, e.event_id().to_owned(), &e.event).with_kind(e.kind.token())
        })
        .collect();
    match s.publisher.publish_all(messages, cx, s.cfg.publish_deadline).await {
        Ok(ack) => {
            for e in &events {
                s.metrics.published(e.kind);
            }
            s.metrics.duplicates.inc_by(ack.duplicates as u64);
            tracing::debug!(stored = ack.stored, duplicates = ack.duplicates, delivery = %ctx.delivery_id, "delivery stored");
            // Meta only needs the 200; the body is the customary one. A bare body saves building
            // a header map on every delivery.
            Response::new(Body::from("EVENT_RECEIVED"))
        }
        Err(e) => unavailable(s, cx, &e.to_string()),
    }
}

/// Room NATS headers may take in a message (trace context, type, kind, a deduplication id).
const HEADER_ROOM: usize = 8 * 1024;

/// The largest encoded event one NATS message can carry: the server's max_payload (1 MiB, the
/// server's default, while not known yet) less room for headers.
fn max_event_bytes(max_payload: usize) -> usize {
    let max_payload = if max_payload == 0 { 1024 * 1024 } else { max_payload };
    max_payload.saturating_sub(HEADER_ROOM)
}

/// How old a delivery is when its newest `entry.time` lies more than `max_age` before
/// `received_ms`; `None` for a fresh delivery or one with no `entry.time` at all (its age is
/// not known, so it is kept).
fn too_old(events: &[crate::parse::ParsedEvent], received_ms: i64, max_age: Duration) -> Option<Duration> {
    let newest = events
        .iter()
        .filter_map(|e| e.event.meta.as_ref()?.sent_time.as_ref())
        .map(igrelay_core::time::timestamp_to_ms)
        .max()?;
    let age = Duration::from_millis(u64::try_from(received_ms.saturating_sub(newest)).ok()?);
    (age > max_age).then_some(age)
}

fn unavailable(s: &AppState, cx: &opentelemetry::Context, why: &str) -> Response {
    s.metrics.reject("nats_unavailable");
    tracing::warn!(reason = why, trace_id = %trace_id(cx), "answering 503: events not stored, Meta will deliver again");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, s.cfg.retry_after_s.to_string())],
        format!("events could not be stored ({why}); retry later\n"),
    )
        .into_response()
}

/// The request's trace id, for its log lines: the request span is an OpenTelemetry span, not a
/// `tracing` one, so log lines do not carry it by themselves.
fn trace_id(cx: &opentelemetry::Context) -> opentelemetry::trace::TraceId {
    cx.span().span_context().trace_id()
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

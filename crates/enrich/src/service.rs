//! The enrich service: the consume loop, the request/reply responders and the HTTP listener.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use igrelay_accounts::{AccountStore, AccountsConfig, Keyring};
use igrelay_bus::subjects::{self, EventKind};
use igrelay_bus::topology::{KvDef, StreamDef};
use igrelay_bus::{BusConfig, OutgoingMessage, Publisher};
use igrelay_core::AccountId;
use igrelay_core::v1::{
    EnrichedEvent, Event, ForgetUserRequest, ForgetUserResponse, GetUserProfileRequest, GetUserProfileResponse,
    NotEnrichedReason, event::Payload,
};
use igrelay_graph::{GraphClient, GraphConfig};
use prometheus_client::registry::Registry;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::EnrichConfig;
use crate::cache::ProfileCache;
use crate::deletion;
use crate::lookup::{Profiles, Resolved};
use crate::metrics::Metrics;

/// The inbound user events enrich consumes. Echoes (`message_echo`) are the business's own and
/// are not consumed.
pub const CONSUMED_KINDS: [EventKind; 4] =
    [EventKind::Message, EventKind::Postback, EventKind::Reaction, EventKind::Referral];

/// The queue group of the request/reply responders: one replica answers each request.
const QUEUE_GROUP: &str = "enrich";
/// The priority group of the exclusive consumer.
const PIN_GROUP: &str = "enrich";
/// How long an on-demand profile request may take (callers' NATS request timeout is 5 s).
const REQUEST_DEADLINE: Duration = Duration::from_secs(4);

struct Shared {
    cfg: Arc<EnrichConfig>,
    client: async_nats::Client,
    secrets: Vec<Vec<u8>>,
    metrics: Metrics,
    core: OnceLock<Arc<Core>>,
    consuming: AtomicBool,
}

struct Core {
    cfg: Arc<EnrichConfig>,
    profiles: Arc<Profiles>,
    publisher: Publisher,
    deletions: async_nats::jetstream::kv::Store,
    metrics: Metrics,
}

/// Binds `cfg.listen` and `cfg.ops_listen` and runs until `shutdown`.
pub async fn run(
    cfg: EnrichConfig,
    bus: BusConfig,
    graph: GraphConfig,
    accounts: AccountsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (enrich.listen)", cfg.listen))?;
    let ops = TcpListener::bind(cfg.ops_listen)
        .await
        .with_context(|| format!("cannot listen on {} (enrich.ops_listen)", cfg.ops_listen))?;
    run_with_listeners(cfg, bus, graph, accounts, listener, ops, shutdown).await
}

/// Runs with the callback on `listener` and `/healthz`, `/readyz`, `/metrics` on
/// `ops_listener`, both already bound (tests bind port 0), until `shutdown`; the event in hand
/// is finished, events fetched but not started are handed back.
pub async fn run_with_listeners(
    cfg: EnrichConfig,
    bus: BusConfig,
    graph: GraphConfig,
    accounts: AccountsConfig,
    listener: TcpListener,
    ops_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    // Our own stop (a failed consumer) must not stop the rest of an `igrelay dev` process.
    let shutdown = shutdown.child_token();
    let keyring = Keyring::from_config(&accounts)?;
    let graph = GraphClient::new(graph)?;
    let client = igrelay_bus::connect(&bus.nats).await?;
    let js = igrelay_bus::connect::jetstream(client.clone(), bus.nats.request_timeout);
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared {
        secrets: cfg.app_secrets.iter().map(|s| s.expose().as_bytes().to_vec()).collect(),
        cfg: cfg.clone(),
        client: client.clone(),
        metrics: metrics.clone(),
        core: OnceLock::new(),
        consuming: AtomicBool::new(false),
    });

    let readiness = {
        let s = shared.clone();
        Arc::new(move || {
            if !igrelay_bus::connect::is_connected(&s.client) {
                Err("not connected to NATS".to_string())
            } else if !s.consuming.load(Ordering::Relaxed) {
                Err("consumer on IGRELAY_EVENTS not running yet".to_string())
            } else {
                Ok(())
            }
        })
    };
    let app = Router::new()
        .route("/meta/data-deletion", post(data_deletion))
        .route("/meta/data-deletion/{code}", get(deletion_status))
        .with_state(shared.clone());
    let ops = igrelay_runtime::ops::router(Arc::new(registry), readiness);
    let (addr, ops_addr) = (listener.local_addr()?, ops_listener.local_addr()?);
    tracing::info!(%addr, %ops_addr, "enrich listening");
    let limits = cfg.http_limits();
    let http = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            tokio::join!(
                igrelay_runtime::server::serve(listener, app, limits, shutdown.clone()),
                igrelay_runtime::server::serve(ops_listener, ops, limits, shutdown),
            );
        }
    });

    // NATS may come up after us (Kubernetes): keep trying until the topology exists.
    let core = loop {
        match start(&cfg, &bus, &js, graph.clone(), keyring.clone(), metrics.clone()).await {
            Ok(core) => break Arc::new(core),
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up enrich yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = http.await;
                        return Ok(());
                    }
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    let _ = shared.core.set(core.clone());
    let follow = tokio::spawn(core.profiles.cache.clone().follow(shutdown.clone()));

    let responders = [
        tokio::spawn(serve_profile_requests(client.clone(), core.clone(), shutdown.clone())),
        tokio::spawn(serve_forget_requests(client.clone(), core.clone(), shutdown.clone())),
    ];
    let consumed = consume(&shared, core, &js, shutdown.clone()).await;
    shared.consuming.store(false, Ordering::Relaxed);
    shutdown.cancel();
    for r in responders {
        let _ = r.await;
    }
    let _ = follow.await;
    let _ = http.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    tracing::info!("enrich stopped");
    consumed
}

async fn start(
    cfg: &Arc<EnrichConfig>,
    bus: &BusConfig,
    js: &jetstream::Context,
    graph: GraphClient,
    keyring: Keyring,
    metrics: Metrics,
) -> anyhow::Result<Core> {
    igrelay_bus::ensure_streams(js, &bus.topology, &[StreamDef::Events, StreamDef::Enriched]).await?;
    let profiles = igrelay_bus::ensure_kv(js, &bus.topology, KvDef::Profiles).await?;
    let windows = igrelay_bus::ensure_kv(js, &bus.topology, KvDef::Windows).await?;
    let deletions = igrelay_bus::ensure_kv(js, &bus.topology, KvDef::Deletions).await?;
    let accounts = AccountStore::open(js, &bus.topology, keyring).await?;
    let cache = ProfileCache::new(profiles, windows);
    Ok(Core {
        cfg: cfg.clone(),
        profiles: Arc::new(Profiles::new(cfg.clone(), graph, accounts, cache, metrics.clone())),
        publisher: Publisher::new(js.clone()),
        deletions,
        metrics,
    })
}

/// One event taken from the stream, on its way to its sender's lane.
struct Job {
    msg: jetstream::Message,
    event: Event,
    account: AccountId,
    kind: EventKind,
    picked: Instant,
}

/// Events of one (account, sender) always go to the same lane and a lane handles one event at
/// a time, so their enriched copies are stored in stream order; `concurrency` lanes run at once.
async fn consume(
    shared: &Arc<Shared>,
    core: Arc<Core>,
    js: &jetstream::Context,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cfg = &shared.cfg;
    let stream = js.get_stream(StreamDef::Events.name()).await?;
    let mut config = pull::Config {
        durable_name: Some(cfg.durable.clone()),
        description: Some("enrich: inbound user events → ig.v1.enr.>".into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: cfg.max_ack_pending,
        filter_subjects: CONSUMED_KINDS.iter().map(|k| subjects::events_of_kind(*k)).collect(),
        ..Default::default()
    };
    if cfg.exclusive {
        // The server delivers to one pinned replica; the others take over if it stops pulling.
        config.priority_policy = jetstream::consumer::PriorityPolicy::PinnedClient;
        config.priority_groups = vec![PIN_GROUP.into()];
        config.priority_timeout = cfg.pin_timeout;
    }
    let consumer = stream
        .create_consumer(config)
        .await
        .with_context(|| format!("cannot create consumer {} on IGRELAY_EVENTS", cfg.durable))?;
    let mut builder = consumer.stream().max_messages_per_batch(512);
    if cfg.exclusive {
        // Pulls must expire well within pin_timeout or the pin lapses between them.
        builder = builder.group(PIN_GROUP).expires(Duration::from_secs(1)).heartbeat(Duration::from_millis(500));
    }
    let mut messages = builder.messages().await.context("cannot start pulling from IGRELAY_EVENTS")?;
    shared.consuming.store(true, Ordering::Relaxed);
    tracing::info!(durable = %cfg.durable, lanes = cfg.concurrency, "enrich consuming");

    let mut lanes = Vec::with_capacity(cfg.concurrency);
    let mut tasks = Vec::with_capacity(cfg.concurrency);
    for _ in 0..cfg.concurrency {
        let (tx, rx) = mpsc::channel::<Job>(256);
        lanes.push(tx);
        tasks.push(tokio::spawn(lane(rx, core.clone(), shutdown.clone())));
    }
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            m = messages.next() => m,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "pull from IGRELAY_EVENTS failed; continuing");
                // A lasting failure (NATS away) must not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            None => break,
        };
        let picked = Instant::now();
        let Some((account, kind)) = subjects::parse_event(&msg.subject) else {
            skip(&core, msg, "subject is not an event subject").await;
            continue;
        };
        let Ok(account) = AccountId::parse(account) else {
            skip(&core, msg, "account token is not valid").await;
            continue;
        };
        let event = match Event::decode(msg.payload.clone()) {
            Ok(e) => e,
            Err(_) => {
                skip(&core, msg, "payload is not an igrelay.v1.Event").await;
                continue;
            }
        };
        let mut h = DefaultHasher::new();
        account.as_str().hash(&mut h);
        sender_of(&event).hash(&mut h);
        let idx = (h.finish() % lanes.len() as u64) as usize;
        let job = Job { msg, event, account, kind, picked };
        if let Err(mpsc::error::SendError(job)) = lanes[idx].send(job).await {
            hand_back(&job.msg).await;
        }
    }
    // Lanes finish the event in hand and hand back what is queued; then hand back what was
    // pulled but not routed, so another replica takes it at once.
    drop(lanes);
    for t in tasks {
        let _ = t.await;
    }
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(50), messages.next()).await {
        hand_back(&msg).await;
    }
    drop(messages);
    if cfg.exclusive {
        // Hand over to a standby replica now rather than after pin_timeout.
        if let Err(e) = stream.unpin_consumer(&cfg.durable, PIN_GROUP).await {
            tracing::debug!(error = %e, "cannot unpin; a standby replica takes over after enrich.pin_timeout");
        }
    }
    tracing::info!("enrich consumer drained");
    Ok(())
}

async fn skip(core: &Core, msg: jetstream::Message, why: &str) {
    // The raw event stays in IGRELAY_EVENTS; retrying cannot make it decodable.
    core.metrics.undecodable.inc();
    tracing::warn!(subject = %msg.subject, reason = why, "skipping event");
    let _ = msg.ack_with(AckKind::Term).await;
}

/// How long a handed-back event waits before it is delivered again. Not at once: this process
/// is still the pinned one while it drains, so an immediate redelivery would come straight back
/// to it and be handed back again, round and round (a stop took up to a minute that way).
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

async fn hand_back(msg: &jetstream::Message) {
    if let Err(e) = msg.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await {
        tracing::debug!(error = %e, "could not hand back event; it returns after ack_wait");
    }
}

async fn lane(mut rx: mpsc::Receiver<Job>, core: Arc<Core>, shutdown: CancellationToken) {
    while let Some(job) = rx.recv().await {
        if shutdown.is_cancelled() {
            hand_back(&job.msg).await;
            continue;
        }
        process(&core, job, &shutdown).await;
    }
}

async fn process(core: &Core, job: Job, shutdown: &CancellationToken) {
    let span = tracing::info_span!(
        "enrich",
        otel.name = %format!("process {}", job.msg.subject),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.destination.name = %job.msg.subject,
        messaging.consumer.group.name = %core.cfg.durable,
        messaging.message.id = tracing::field::Empty,
    );
    let event_id = job.event.meta.as_ref().map(|m| m.event_id.clone()).unwrap_or_default();
    span.record("messaging.message.id", event_id.as_str());
    if let Some(headers) = &job.msg.headers
        && let Some(parent) = igrelay_bus::trace::extract(headers)
    {
        let _ = span.set_parent(parent);
    }
    let cx = span.context();
    async move {
        let enriched = enrich(core, job.account.as_str(), job.event, &event_id).await;
        let outcome = outcome_label(&enriched);
        // Redeliveries are stored once; an event without id falls back to its stream sequence.
        let msg_id = if event_id.is_empty() {
            format!("enr:seq:{}", job.msg.info().map(|i| i.stream_sequence).unwrap_or(0))
        } else {
            format!("enr:{event_id}")
        };
        let out = OutgoingMessage::proto(subjects::enriched(&job.account, job.kind), msg_id, &enriched)
            .with_kind(job.kind.token());
        // Retried here rather than NAKed: a NAK would let this user's next event overtake it.
        let mut backoff = Duration::from_millis(100);
        loop {
            match core.publisher.publish(out.clone(), &cx, Duration::from_secs(5)).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot store enriched event; retrying");
                    if shutdown.is_cancelled() {
                        hand_back(&job.msg).await;
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Err(e) = job.msg.ack().await {
            tracing::debug!(error = %e, "ack failed; the event comes again and is deduplicated");
        }
        Metrics::count(&core.metrics.published, outcome);
        core.metrics.latency.observe(job.picked.elapsed().as_secs_f64());
    }
    .instrument(span)
    .await
}

/// Who sent an event, and whether the event gives consent to a profile look-up.
enum Sender<'a> {
    User { igsid: &'a str, gives_consent: bool },
    NotAUser(&'static str),
}

fn sender_of(event: &Event) -> &str {
    match &event.payload {
        Some(Payload::Message(m)) => &m.sender_id,
        Some(Payload::Postback(p)) => &p.sender_id,
        Some(Payload::Reaction(r)) => &r.sender_id,
        Some(Payload::Referral(r)) => &r.sender_id,
        _ => "",
    }
}

fn classify<'a>(account: &str, event: &'a Event) -> Sender<'a> {
    let (igsid, gives_consent, own) = match &event.payload {
        Some(Payload::Message(m)) if m.is_echo || m.is_self => return Sender::NotAUser("an echo or self message"),
        Some(Payload::Message(m)) => (m.sender_id.as_str(), true, false),
        // Ice breakers, buttons and menu taps give consent (Meta's User Profile docs).
        Some(Payload::Postback(p)) => (p.sender_id.as_str(), true, p.is_self),
        Some(Payload::Reaction(r)) => (r.sender_id.as_str(), false, false),
        // ig.me links open the window but do not give consent.
        Some(Payload::Referral(r)) => (r.sender_id.as_str(), false, false),
        _ => return Sender::NotAUser("not an inbound user event"),
    };
    if own || igsid == account {
        return Sender::NotAUser("the business's own account");
    }
    if igrelay_core::ids::check_token(igsid).is_err() {
        return Sender::NotAUser("no valid sender id");
    }
    Sender::User { igsid, gives_consent }
}

async fn enrich(core: &Core, account: &str, event: Event, event_id: &str) -> EnrichedEvent {
    let resolved = match classify(account, &event) {
        Sender::NotAUser(why) => Resolved::Not { reason: NotEnrichedReason::NotAUser, detail: why.into() },
        Sender::User { igsid, gives_consent } => {
            let lookup = core.profiles.resolve(account, igsid, gives_consent, event_id, false);
            match tokio::time::timeout(core.cfg.deadline, lookup).await {
                Ok(r) => r,
                Err(_) => Resolved::Not {
                    reason: NotEnrichedReason::Deadline,
                    detail: format!("no profile within enrich.deadline ({} ms)", core.cfg.deadline.as_millis()),
                },
            }
        }
    };
    let mut out = EnrichedEvent { event: Some(event), ..Default::default() };
    match resolved {
        Resolved::Profile { profile, from_cache } => {
            out.profile = Some(profile);
            out.enriched = true;
            out.from_cache = from_cache;
        }
        Resolved::Not { reason, detail } => {
            out.not_enriched_reason = reason as i32;
            out.not_enriched_detail = detail;
        }
    }
    out
}

fn outcome_label(e: &EnrichedEvent) -> &'static str {
    if e.enriched {
        return "enriched";
    }
    reason_label(NotEnrichedReason::try_from(e.not_enriched_reason).unwrap_or(NotEnrichedReason::Unspecified))
}

/// Short lowercase names for metrics labels and logs.
pub fn reason_label(r: NotEnrichedReason) -> &'static str {
    match r {
        NotEnrichedReason::Unspecified => "unspecified",
        NotEnrichedReason::NoConsent => "no_consent",
        NotEnrichedReason::ConsentRequired => "consent_required",
        NotEnrichedReason::UserUnavailable => "user_unavailable",
        NotEnrichedReason::Deadline => "deadline",
        NotEnrichedReason::AccountUnavailable => "account_unavailable",
        NotEnrichedReason::Throttled => "throttled",
        NotEnrichedReason::LookupFailed => "lookup_failed",
        NotEnrichedReason::NotAUser => "not_a_user",
    }
}

impl Core {
    async fn profile(&self, req: GetUserProfileRequest) -> GetUserProfileResponse {
        let bad = |detail: &str| GetUserProfileResponse {
            not_found_reason: NotEnrichedReason::LookupFailed as i32,
            detail: detail.into(),
            ..Default::default()
        };
        if igrelay_core::ids::check_token(&req.account_id).is_err() {
            return bad("account_id is not a valid account id");
        }
        if igrelay_core::ids::check_token(&req.igsid).is_err() {
            return bad("igsid is not a valid user id");
        }
        let lookup = self.profiles.resolve(&req.account_id, &req.igsid, false, "", req.refresh);
        match tokio::time::timeout(REQUEST_DEADLINE, lookup).await {
            Ok(Resolved::Profile { profile, from_cache }) => {
                GetUserProfileResponse { profile: Some(profile), from_cache, ..Default::default() }
            }
            Ok(Resolved::Not { reason, detail }) => {
                GetUserProfileResponse { not_found_reason: reason as i32, detail, ..Default::default() }
            }
            Err(_) => GetUserProfileResponse {
                not_found_reason: NotEnrichedReason::Deadline as i32,
                detail: format!("no profile within {} ms", REQUEST_DEADLINE.as_millis()),
                ..Default::default()
            },
        }
    }

    /// Purges the user and records the deletion under a new confirmation code.
    async fn forget(&self, igsid: &str, account: Option<&str>) -> ForgetUserResponse {
        let code = match deletion::new_code() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no randomness for a confirmation code");
                Metrics::count(&self.metrics.deletions, "failed");
                return deletion::response(
                    "",
                    String::new(),
                    &Err(format!("cannot make a confirmation code (no randomness from the OS: {e}); retry")),
                );
            }
        };
        if igrelay_core::ids::check_token(igsid).is_err()
            || account.is_some_and(|a| igrelay_core::ids::check_token(a).is_err())
        {
            Metrics::count(&self.metrics.deletions, "invalid");
            return deletion::response(&code, String::new(), &Err("igsid or account_id is not a valid id".into()));
        }
        // Marked before and after the purge, so a look-up running meanwhile cannot re-cache it.
        self.profiles.forget(igsid);
        let purged = self.profiles.cache.forget(igsid, account).await.map_err(|e| e.to_string());
        self.profiles.forget(igsid);
        Metrics::count(&self.metrics.deletions, if purged.is_ok() { "completed" } else { "failed" });
        match &purged {
            Ok(n) => tracing::info!(entries = n, %code, "user forgotten"),
            Err(e) => tracing::error!(error = %e, %code, "forgetting a user failed"),
        }
        deletion::record(&self.deletions, &code, purged.clone()).await;
        deletion::response(&code, self.cfg.status_url(&code), &purged)
    }
}

/// The answer to a request past `enrich.max_concurrent_requests`.
fn busy_detail(limit: usize) -> String {
    format!("enrich is busy: {limit} requests in progress (enrich.max_concurrent_requests); retry shortly")
}

async fn serve_profile_requests(client: async_nats::Client, core: Arc<Core>, shutdown: CancellationToken) {
    let limit = core.cfg.max_concurrent_requests;
    let busy = move || {
        GetUserProfileResponse {
            not_found_reason: NotEnrichedReason::Throttled as i32,
            detail: busy_detail(limit),
            ..Default::default()
        }
        .encode_to_vec()
    };
    respond(client, subjects::PROFILE_REQUEST, shutdown, limit, busy, move |payload| {
        let core = core.clone();
        async move {
            let resp = match GetUserProfileRequest::decode(payload) {
                Ok(req) => core.profile(req).await,
                Err(e) => GetUserProfileResponse {
                    not_found_reason: NotEnrichedReason::LookupFailed as i32,
                    detail: format!("request is not an igrelay.v1.GetUserProfileRequest: {e}"),
                    ..Default::default()
                },
            };
            resp.encode_to_vec()
        }
    })
    .await
}

async fn serve_forget_requests(client: async_nats::Client, core: Arc<Core>, shutdown: CancellationToken) {
    let limit = core.cfg.max_concurrent_requests;
    let busy = move || ForgetUserResponse { error: busy_detail(limit), ..Default::default() }.encode_to_vec();
    respond(client, subjects::FORGET_USER_REQUEST, shutdown, limit, busy, move |payload| {
        let core = core.clone();
        async move {
            let resp = match ForgetUserRequest::decode(payload) {
                Ok(req) => {
                    let account = (!req.account_id.is_empty()).then_some(req.account_id.as_str());
                    core.forget(&req.igsid, account).await
                }
                Err(e) => ForgetUserResponse {
                    error: format!("request is not an igrelay.v1.ForgetUserRequest: {e}"),
                    ..Default::default()
                },
            };
            resp.encode_to_vec()
        }
    })
    .await
}

/// Answers requests on `subject` (queue group `enrich`) until shutdown, each in its own task,
/// at most `limit` at once; past that `busy` answers at once (a caller learns now, rather than
/// at its timeout, and tasks cannot pile up without bound).
async fn respond<F, Fut, B>(
    client: async_nats::Client,
    subject: &'static str,
    shutdown: CancellationToken,
    limit: usize,
    busy: B,
    handle: F,
) where
    F: Fn(bytes::Bytes) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Vec<u8>> + Send + 'static,
    B: Fn() -> Vec<u8>,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut sub = match client.queue_subscribe(subject, QUEUE_GROUP.into()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot subscribe; requests will time out");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = sub.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply) = msg.reply.clone() else { continue };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%subject, limit, "request refused: enrich.max_concurrent_requests reached");
            if let Err(e) = client.publish(reply, busy().into()).await {
                tracing::warn!(error = %e, "cannot answer request");
            }
            continue;
        };
        let fut = handle(msg.payload);
        let client = client.clone();
        tokio::spawn(async move {
            let body = fut.await;
            drop(slot);
            if let Err(e) = client.publish(reply, body.into()).await {
                tracing::warn!(error = %e, "cannot answer request");
            }
        });
    }
    let _ = sub.unsubscribe().await;
}

// ---------- HTTP: Meta's data deletion callback ----------

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

async fn data_deletion(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(core) = s.core.get() else {
        return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": "enrich is starting; retry"}));
    };
    let signed = form_urlencoded::parse(&body).find(|(k, _)| k == "signed_request").map(|(_, v)| v.into_owned());
    let user = match signed
        .ok_or(deletion::SignedRequestError::Missing)
        .and_then(|sr| deletion::verify_signed_request(&sr, s.secrets.iter().map(Vec::as_slice)))
    {
        Ok(u) => u,
        Err(e) => {
            Metrics::count(&s.metrics.deletions, if e.status() == 401 { "forged" } else { "malformed" });
            tracing::warn!(error = %e, "data deletion request refused");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return json(status, serde_json::json!({"error": e.to_string()}));
        }
    };
    let resp = core.forget(&user, None).await;
    if !resp.error.is_empty() {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": resp.error, "confirmation_code": resp.confirmation_code}),
        );
    }
    json(StatusCode::OK, serde_json::json!({"url": resp.status_url, "confirmation_code": resp.confirmation_code}))
}

async fn deletion_status(State(s): State<Arc<Shared>>, Path(code): Path<String>) -> Response {
    let Some(core) = s.core.get() else {
        return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": "enrich is starting; retry"}));
    };
    match deletion::status(&core.deletions, &code).await {
        Ok(Some(r)) => json(
            StatusCode::OK,
            serde_json::json!({
                "confirmation_code": r.confirmation_code,
                "status": r.status,
                "requested_ms": r.requested_time.as_ref().map(igrelay_core::time::timestamp_to_ms),
                "completed_ms": r.completed_time.as_ref().map(igrelay_core::time::timestamp_to_ms),
                "entries_purged": r.entries_purged,
            }),
        ),
        Ok(None) => {
            json(StatusCode::NOT_FOUND, serde_json::json!({"error": "no data deletion request with this code"}))
        }
        Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": e.to_string()})),
    }
}

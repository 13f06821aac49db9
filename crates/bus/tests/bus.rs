//! The bus against a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop the test loudly

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use igrelay_bus::subjects::{self, EventKind};
use igrelay_bus::topology::KvDef;
use igrelay_bus::{ConsumerDef, HandlerError, OutgoingMessage, Publisher, StreamDef, TopologyConfig, run_consumer};
use igrelay_core::AccountId;
use igrelay_testkit::Nats;
use tokio_util::sync::CancellationToken;

fn account() -> AccountId {
    AccountId::parse("17841400000000001").unwrap()
}

fn msg(id: &str, body: &str) -> OutgoingMessage {
    OutgoingMessage {
        subject: subjects::event(&account(), EventKind::Message),
        msg_id: id.into(),
        type_name: "igrelay.v1.Event",
        kind: Some("message"),
        payload: Bytes::from(body.to_owned()),
    }
}

#[tokio::test]
async fn topology_is_created_idempotently_and_updated() {
    let nats = Nats::start().await.unwrap();
    let mut cfg = TopologyConfig::default();
    igrelay_bus::ensure_streams(&nats.js, &cfg, &StreamDef::ALL).await.unwrap();
    igrelay_bus::ensure_streams(&nats.js, &cfg, &StreamDef::ALL).await.unwrap();
    cfg.events_max_age = Duration::from_secs(3600);
    igrelay_bus::ensure_streams(&nats.js, &cfg, &[StreamDef::Events]).await.unwrap();
    let mut s = nats.js.get_stream("IGRELAY_EVENTS").await.unwrap();
    assert_eq!(s.info().await.unwrap().config.max_age, Duration::from_secs(3600));
    let mut c = nats.js.get_stream("IGRELAY_COMMANDS").await.unwrap();
    assert_eq!(c.info().await.unwrap().config.retention, async_nats::jetstream::stream::RetentionPolicy::WorkQueue);
    for kv in KvDef::ALL {
        igrelay_bus::ensure_kv(&nats.js, &cfg, kv).await.unwrap();
        igrelay_bus::ensure_kv(&nats.js, &cfg, kv).await.unwrap();
    }
}

#[tokio::test]
async fn publish_deduplicates_and_sets_headers() {
    let nats = Nats::start().await.unwrap();
    nats.ensure_streams().await.unwrap();
    let publisher = Publisher::new(nats.js.clone());
    let cx = opentelemetry::Context::new();
    let ack = publisher.publish_all(vec![msg("a", "1"), msg("b", "2")], &cx, Duration::from_secs(2)).await.unwrap();
    assert_eq!((ack.stored, ack.duplicates), (2, 0));
    let ack = publisher
        .publish_all(vec![msg("a", "1"), msg("b", "2"), msg("c", "3")], &cx, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!((ack.stored, ack.duplicates), (1, 2));
    // A batch of one takes a shorter path; it counts the same way.
    for expected in [(1, 0), (0, 1)] {
        let ack = publisher.publish_all(vec![msg("d", "4")], &cx, Duration::from_secs(2)).await.unwrap();
        assert_eq!((ack.stored, ack.duplicates), expected);
    }
    let mut stream = nats.js.get_stream("IGRELAY_EVENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4);
    let raw = stream.get_raw_message(1).await.unwrap();
    let headers = raw.headers;
    assert_eq!(headers.get("Nats-Msg-Id").unwrap().as_str(), "a");
    assert_eq!(headers.get("Igrelay-Type").unwrap().as_str(), "igrelay.v1.Event");
    assert_eq!(headers.get("Igrelay-Kind").unwrap().as_str(), "message");
}

#[tokio::test]
async fn publish_fails_within_deadline_when_nats_is_down() {
    let mut nats = Nats::start().await.unwrap();
    nats.ensure_streams().await.unwrap();
    let publisher = Publisher::new(nats.js.clone());
    nats.server.kill();
    let err =
        publisher.publish_all(vec![msg("x", "1")], &opentelemetry::Context::new(), Duration::from_millis(300)).await;
    assert!(err.is_err(), "publish must not succeed with the server down");
}

/// Handler outcomes by payload: "ok" succeeds, "flaky" fails once then succeeds, "poison" is
/// rejected, "forever" always asks to retry.
#[tokio::test]
async fn consumer_acks_retries_and_dead_letters() {
    let nats = Nats::start().await.unwrap();
    nats.ensure_streams().await.unwrap();
    let publisher = Publisher::new(nats.js.clone());
    let cx = opentelemetry::Context::new();
    let batch = vec![msg("1", "ok"), msg("2", "flaky"), msg("3", "poison"), msg("4", "forever")];
    publisher.publish_all(batch, &cx, Duration::from_secs(2)).await.unwrap();

    let seen: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let mut def = ConsumerDef::new(StreamDef::Events, "test-consumer");
    def.max_deliver = 3;
    let js = nats.js.clone();
    let task = {
        let seen = seen.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_consumer(
                &js,
                &def,
                move |d| {
                    let seen = seen.clone();
                    async move {
                        let body = String::from_utf8(d.payload.to_vec()).unwrap();
                        seen.lock().unwrap().push((body.clone(), d.delivered));
                        match body.as_str() {
                            "flaky" if d.delivered == 1 => {
                                Err(HandlerError::Retry { reason: "flaky".into(), after: Duration::from_millis(10) })
                            }
                            "poison" => Err(HandlerError::Reject { reason: "cannot decode\r\nat all".into() }),
                            "forever" => Err(HandlerError::Retry {
                                reason: "still down".into(),
                                after: Duration::from_millis(10),
                            }),
                            _ => Ok(()),
                        }
                    }
                },
                shutdown,
            )
            .await
        })
    };

    // Wait (bounded) until both dead letters arrived.
    let mut dlq = Vec::new();
    for _ in 0..100 {
        dlq = igrelay_testkit::events::read_stream(&nats.js, "IGRELAY_DLQ", ">").await.unwrap_or_default();
        if dlq.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&("flaky".into(), 2)), "flaky is retried: {seen:?}");
    assert_eq!(seen.iter().filter(|(b, _)| b == "ok").count(), 1, "ok is handled once: {seen:?}");
    assert_eq!(seen.iter().filter(|(b, _)| b == "poison").count(), 1, "poison is not retried: {seen:?}");
    assert_eq!(seen.iter().filter(|(b, _)| b == "forever").count(), 3, "forever is tried max_deliver times: {seen:?}");

    // The dead letters carry the reason and the original subject; reading them as events fails to
    // decode, so look at the raw messages instead.
    let mut stream = nats.js.get_stream("IGRELAY_DLQ").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2, "{dlq:?}");
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(first.subject.as_str(), "ig.v1.dlq.IGRELAY_EVENTS.test-consumer");
    assert_eq!(first.headers.get("Igrelay-Dlq-Reason").unwrap().as_str(), "cannot decode  at all");
    assert_eq!(first.headers.get("Igrelay-Dlq-Subject").unwrap().as_str(), "ig.v1.evt.17841400000000001.message");
    assert_eq!(&first.payload[..], b"poison");
    let second = stream.get_raw_message(2).await.unwrap();
    assert!(second.headers.get("Igrelay-Dlq-Reason").unwrap().as_str().starts_with("gave up after 3 deliveries"));

    // Nothing is left pending on the consumer.
    let events = nats.js.get_stream("IGRELAY_EVENTS").await.unwrap();
    let info = events.consumer_info("test-consumer").await.unwrap();
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);
}

#[tokio::test]
async fn shutdown_finishes_the_current_message_and_hands_back_the_rest() {
    let nats = Nats::start().await.unwrap();
    nats.ensure_streams().await.unwrap();
    let publisher = Publisher::new(nats.js.clone());
    let batch: Vec<_> = (0..20).map(|i| msg(&i.to_string(), &i.to_string())).collect();
    publisher.publish_all(batch, &opentelemetry::Context::new(), Duration::from_secs(2)).await.unwrap();

    // A long ack_wait: if unstarted messages were not handed back, the next replica would only
    // see them after a minute and the bounded wait below would fail.
    let mut def = ConsumerDef::new(StreamDef::Events, "drain-test");
    def.ack_wait = Duration::from_secs(60);

    let shutdown = CancellationToken::new();
    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let (h, s) = (handled.clone(), shutdown.clone());
    run_consumer(
        &nats.js,
        &def,
        move |d| {
            let (h, s) = (h.clone(), s.clone());
            async move {
                let n = {
                    let mut v = h.lock().unwrap();
                    v.push(String::from_utf8(d.payload.to_vec()).unwrap());
                    v.len()
                };
                // The third message triggers shutdown while it is being handled.
                if n == 3 {
                    s.cancel();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(())
            }
        },
        shutdown,
    )
    .await
    .unwrap();
    assert_eq!(handled.lock().unwrap().len(), 3, "no new message is started after shutdown");
    let events = nats.js.get_stream("IGRELAY_EVENTS").await.unwrap();
    let info = events.consumer_info("drain-test").await.unwrap();
    assert_eq!(info.ack_floor.consumer_sequence, 3, "the message in hand was finished and acked");

    // Another replica takes over the rest at once.
    let shutdown = CancellationToken::new();
    let (h, s) = (handled.clone(), shutdown.clone());
    let replica = tokio::spawn({
        let js = nats.js.clone();
        async move {
            run_consumer(
                &js,
                &def,
                move |d| {
                    let h = h.clone();
                    async move {
                        h.lock().unwrap().push(String::from_utf8(d.payload.to_vec()).unwrap());
                        Ok(())
                    }
                },
                s,
            )
            .await
        }
    });
    for _ in 0..100 {
        if handled.lock().unwrap().len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    replica.await.unwrap().unwrap();
    let mut all = handled.lock().unwrap().clone();
    all.sort_by_key(|s| s.parse::<u32>().unwrap());
    all.dedup();
    assert_eq!(all.len(), 20, "every message handled by one replica or the other: {all:?}");
}

/// Runs a consumer that rejects every message with `reason` until `n` dead letters are stored.
async fn reject_all(nats: &Nats, durable: &str, reason: &'static str, dead_letters: u64) {
    let shutdown = CancellationToken::new();
    let def = ConsumerDef::new(StreamDef::Events, durable);
    let js = nats.js.clone();
    let task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_consumer(
                &js,
                &def,
                move |_| async move { Err(HandlerError::Reject { reason: reason.into() }) },
                shutdown,
            )
            .await
        })
    };
    for _ in 0..100 {
        if igrelay_testkit::events::count(&nats.js, "IGRELAY_DLQ").await.unwrap_or(0) >= dead_letters {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn dead_letters_of_one_message_are_never_deduplicated_into_one() {
    let nats = Nats::start().await.unwrap();
    nats.ensure_streams().await.unwrap();
    let publisher = Publisher::new(nats.js.clone());
    publisher.publish(msg("evt-1", "poison"), &opentelemetry::Context::new(), Duration::from_secs(2)).await.unwrap();

    // Two consumers of the same stream both give up on the same message.
    reject_all(&nats, "first", "cannot decode", 1).await;
    reject_all(&nats, "second", "cannot decode", 2).await;
    let mut stream = nats.js.get_stream("IGRELAY_DLQ").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2, "one dead letter per consumer");
    let a = stream.get_raw_message(1).await.unwrap().headers;
    let b = stream.get_raw_message(2).await.unwrap().headers;
    assert_ne!(a.get("Nats-Msg-Id"), b.get("Nats-Msg-Id"));
    assert_eq!(a.get("Igrelay-Dlq-Msg-Id").unwrap().as_str(), "evt-1", "the original id is kept for correlation");

    // A retried publish of the same dead letter is stored once.
    let id = igrelay_bus::consume::dead_letter_id("IGRELAY_EVENTS", "first", 1, "cannot decode");
    assert_eq!(a.get("Nats-Msg-Id").unwrap().as_str(), id);
    let mut again = async_nats::HeaderMap::new();
    again.insert("Nats-Msg-Id", id.as_str());
    let ack = nats
        .js
        .publish_with_headers("ig.v1.dlq.IGRELAY_EVENTS.first", again, Bytes::from_static(b"poison"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate);
}

#[tokio::test]
async fn connects_with_user_password_or_token_and_names_refused_credentials() {
    let server =
        igrelay_bus::local_server::LocalNatsServer::start_with_args(&["--user", "relay", "--pass", "s3cret-pass"])
            .unwrap();
    let good = igrelay_bus::ConnectConfig {
        url: server.url(),
        user: "relay".into(),
        password: igrelay_runtime::Secret::new("s3cret-pass"),
        ..Default::default()
    };
    let client = igrelay_bus::connect(&good).await.unwrap();
    client.publish("x", Bytes::from_static(b"1")).await.unwrap();
    client.flush().await.unwrap();

    let wrong = igrelay_bus::ConnectConfig { password: igrelay_runtime::Secret::new("wrong-pass"), ..good.clone() };
    let e = tokio::time::timeout(Duration::from_secs(10), igrelay_bus::connect(&wrong))
        .await
        .expect("refused credentials are an error at once, not a retry forever")
        .unwrap_err()
        .to_string();
    assert!(e.contains("refused our credentials") && e.contains("nats.user/nats.password"), "{e}");
    assert!(!e.contains("wrong-pass"), "{e}");
    // Credentials in the URL are redacted from the error too.
    let in_url = igrelay_bus::ConnectConfig {
        url: server.url().replace("nats://", "nats://relay:url-pass@"),
        ..Default::default()
    };
    let e = igrelay_bus::connect(&in_url).await.unwrap_err().to_string();
    assert!(e.contains("<redacted>@127.0.0.1") && !e.contains("url-pass"), "{e}");

    let token_server =
        igrelay_bus::local_server::LocalNatsServer::start_with_args(&["--auth", "s3cret-token"]).unwrap();
    let good = igrelay_bus::ConnectConfig {
        url: token_server.url(),
        token: igrelay_runtime::Secret::new("s3cret-token"),
        ..Default::default()
    };
    let client = igrelay_bus::connect(&good).await.unwrap();
    client.flush().await.unwrap();
    let none = igrelay_bus::ConnectConfig { url: token_server.url(), ..Default::default() };
    let e = igrelay_bus::connect(&none).await.unwrap_err().to_string();
    assert!(e.contains("refused our credentials") && e.contains("none configured"), "{e}");
    let wrong = igrelay_bus::ConnectConfig { token: igrelay_runtime::Secret::new("nope"), ..good };
    let e = igrelay_bus::connect(&wrong).await.unwrap_err().to_string();
    assert!(e.contains("nats.token"), "{e}");

    // Two ways at once cannot both be meant.
    let both = igrelay_bus::ConnectConfig {
        url: token_server.url(),
        user: "relay".into(),
        password: igrelay_runtime::Secret::new("p"),
        token: igrelay_runtime::Secret::new("t"),
        ..Default::default()
    };
    let e = igrelay_bus::connect(&both).await.unwrap_err().to_string();
    assert!(e.contains("only one of"), "{e}");
}

#[tokio::test]
async fn connects_over_tls_with_the_configured_ca_and_refuses_an_unknown_one() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let (cert, key) = (dir.join("server.pem"), dir.join("server-key.pem"));
    let server = igrelay_bus::local_server::LocalNatsServer::start_with_args(&[
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ])
    .unwrap();
    let good = igrelay_bus::ConnectConfig {
        url: server.url(),
        tls_ca_file: Some(dir.join("ca.pem")),
        require_tls: true,
        ..Default::default()
    };
    let client = igrelay_bus::connect(&good).await.unwrap();
    client.publish("x", Bytes::from_static(b"1")).await.unwrap();
    client.flush().await.unwrap();

    // Without the CA the server's certificate is not trusted: an error at once, not retries.
    let unknown = igrelay_bus::ConnectConfig { tls_ca_file: None, ..good.clone() };
    let e = tokio::time::timeout(Duration::from_secs(10), igrelay_bus::connect(&unknown))
        .await
        .expect("a TLS failure is an error at once")
        .unwrap_err()
        .to_string();
    assert!(e.contains("TLS with NATS") && e.contains("nats.tls_ca_file"), "{e}");

    let missing = igrelay_bus::ConnectConfig { tls_ca_file: Some(dir.join("nope.pem")), ..good };
    let e = igrelay_bus::connect(&missing).await.unwrap_err().to_string();
    assert!(e.contains("nats.tls_ca_file") && e.contains("does not exist"), "{e}");
}

#[tokio::test]
async fn connects_with_an_nkey_seed_file_and_names_a_wrong_one() {
    // A fresh user key pair; the server knows only its public key.
    let user = nkeys::KeyPair::new_user();
    let dir = std::env::temp_dir().join(format!("igrelay-nkey-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nkey.conf");
    // The local server's JetStream limits again, since this file replaces its own config.
    std::fs::write(
        &conf,
        format!(
            "jetstream {{\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}}\n\
             authorization {{\n  users = [ {{ nkey: {} }} ]\n}}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let server = igrelay_bus::local_server::LocalNatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let seed_file = dir.join("user.nk");
    std::fs::write(&seed_file, format!("{}\n", user.seed().unwrap())).unwrap();
    let good =
        igrelay_bus::ConnectConfig { url: server.url(), nkey_seed_file: Some(seed_file.clone()), ..Default::default() };
    let client = igrelay_bus::connect(&good).await.unwrap();
    client.publish("x", Bytes::from_static(b"1")).await.unwrap();
    client.flush().await.unwrap();

    // Without credentials the server refuses: it really checks nkeys.
    let none = igrelay_bus::ConnectConfig { url: server.url(), ..Default::default() };
    let e = igrelay_bus::connect(&none).await.unwrap_err().to_string();
    assert!(e.contains("refused our credentials"), "{e}");

    // A well-formed seed of another user: refused at once, naming the setting, never the seed.
    let other = nkeys::KeyPair::new_user().seed().unwrap();
    let other_file = dir.join("other.nk");
    std::fs::write(&other_file, &other).unwrap();
    let wrong = igrelay_bus::ConnectConfig { nkey_seed_file: Some(other_file), ..good.clone() };
    let e = tokio::time::timeout(Duration::from_secs(10), igrelay_bus::connect(&wrong))
        .await
        .expect("a refused nkey is an error at once, not a retry forever")
        .unwrap_err()
        .to_string();
    assert!(e.contains("refused our credentials") && e.contains("nats.nkey_seed_file"), "{e}");
    assert!(!e.contains(&other), "{e}");

    // A file that is no user seed (here a public key) is named before connecting.
    let not_seed = dir.join("public.nk");
    std::fs::write(&not_seed, user.public_key()).unwrap();
    let bad = igrelay_bus::ConnectConfig { nkey_seed_file: Some(not_seed), ..good.clone() };
    let e = igrelay_bus::connect(&bad).await.unwrap_err().to_string();
    assert!(e.contains("nats.nkey_seed_file") && e.contains("not an nkey user seed"), "{e}");

    // A damaged seed (right prefix, broken checksum) is refused at once too.
    let seed = user.seed().unwrap();
    let damaged = dir.join("damaged.nk");
    let last = if seed.ends_with('A') { 'B' } else { 'A' };
    std::fs::write(&damaged, format!("{}{last}", &seed[..seed.len() - 1])).unwrap();
    let bad = igrelay_bus::ConnectConfig { nkey_seed_file: Some(damaged), ..good };
    let e = tokio::time::timeout(Duration::from_secs(10), igrelay_bus::connect(&bad))
        .await
        .expect("a damaged seed is an error at once")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nats.nkey_seed_file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A JWT as nsc signs them: header, claims, ed25519 signature by `issuer` (base64url, no padding).
fn signed_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{name}-{}", std::process::id()),
        "iat": 1_700_000_000,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let body = format!("{header}.{}", b64.encode(claims.to_string()));
    let sig = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", b64.encode(sig))
}

fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

#[tokio::test]
async fn connects_with_a_creds_file_and_names_a_refused_one() {
    // Decentralised auth as nsc sets it up: operator -> account -> user, JWTs preloaded.
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let no_limits = serde_json::json!({"subs": -1, "data": -1, "payload": -1, "imports": -1,
        "exports": -1, "wildcards": true, "conn": -1, "leaf": -1});
    let op_jwt =
        signed_jwt(&operator, &operator.public_key(), "op", serde_json::json!({"type": "operator", "version": 2}));
    let acct_jwt = signed_jwt(
        &operator,
        &account.public_key(),
        "acct",
        serde_json::json!({"limits": no_limits, "type": "account", "version": 2}),
    );
    // The local server runs JetStream, which needs a system account in operator mode.
    let system = nkeys::KeyPair::new_account();
    let sys_jwt = signed_jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"limits": no_limits, "type": "account", "version": 2}),
    );
    let user_claims = serde_json::json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
        "type": "user", "version": 2});
    let user_jwt = signed_jwt(&account, &user.public_key(), "user", user_claims.clone());

    let dir = std::env::temp_dir().join(format!("igrelay-creds-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("creds.conf");
    std::fs::write(
        &conf,
        format!(
            "jetstream {{\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}}\n\
             operator: {op_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acct}: {acct_jwt}\n  {sys}: {sys_jwt}\n}}\n",
            acct = account.public_key(),
            sys = system.public_key(),
        ),
    )
    .unwrap();
    let server = igrelay_bus::local_server::LocalNatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).unwrap();
    let creds_file = dir.join("user.creds");
    std::fs::write(&creds_file, creds(&user_jwt, &user.seed().unwrap())).unwrap();
    let good = igrelay_bus::ConnectConfig { url: server.url(), creds_file: Some(creds_file), ..Default::default() };
    let client = igrelay_bus::connect(&good).await.unwrap();
    client.publish("x", Bytes::from_static(b"1")).await.unwrap();
    client.flush().await.unwrap();

    // A user signed by an account the server does not know: refused at once, naming the setting.
    let stranger = nkeys::KeyPair::new_account();
    let other_user = nkeys::KeyPair::new_user();
    let other_jwt = signed_jwt(&stranger, &other_user.public_key(), "other", user_claims);
    let other_file = dir.join("other.creds");
    std::fs::write(&other_file, creds(&other_jwt, &other_user.seed().unwrap())).unwrap();
    let wrong = igrelay_bus::ConnectConfig { creds_file: Some(other_file), ..good.clone() };
    let e = tokio::time::timeout(Duration::from_secs(10), igrelay_bus::connect(&wrong))
        .await
        .expect("refused creds are an error at once, not a retry forever")
        .unwrap_err()
        .to_string();
    assert!(e.contains("refused our credentials") && e.contains("nats.creds_file"), "{e}");

    // A file that is no creds file is named before connecting.
    let junk = dir.join("junk.creds");
    std::fs::write(&junk, "not a creds file\n").unwrap();
    let bad = igrelay_bus::ConnectConfig { creds_file: Some(junk), ..good };
    let e = igrelay_bus::connect(&bad).await.unwrap_err().to_string();
    assert!(e.contains("nats.creds_file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Enrich against a real nats-server and the Graph API emulator.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use igrelay_core::v1::{
    ForgetUserRequest, ForgetUserResponse, GetUserProfileRequest, GetUserProfileResponse, NotEnrichedReason,
};
use serde_json::json;
use support::{ACCOUNT, App, SECRET, signed_request, urlencode};

fn reason(e: &igrelay_core::v1::EnrichedEvent) -> NotEnrichedReason {
    NotEnrichedReason::try_from(e.not_enriched_reason).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_from_10_users_makes_10_profile_calls_in_order() {
    let app = App::start().await;
    let users: Vec<String> = (0..10).map(|i| format!("55000000000001{i:02}")).collect();
    for u in &users {
        app.user_with_consent(u).await;
    }
    let events: Vec<_> = (0..1000).map(|i| app.message(&users[i % 10], &format!("burst {i}"))).collect();
    let sent_order: Vec<String> = events.iter().map(|e| e.meta.as_ref().unwrap().event_id.clone()).collect();
    app.publish(&events).await;

    let out = app.enriched(1000).await;
    assert_eq!(out.len(), 1000);
    assert!(out.iter().all(|(_, e)| e.enriched), "every event carries a profile");
    assert_eq!(app.profile_calls().await, 10, "one Graph call per user");

    // Per user, the enriched events are in the order the raw ones were published.
    let mut per_user: HashMap<String, Vec<String>> = HashMap::new();
    for (subject, e) in &out {
        assert_eq!(subject, &format!("ig.v1.enr.{ACCOUNT}.message"));
        let p = e.profile.as_ref().unwrap();
        assert_eq!(p.account_id, ACCOUNT);
        per_user
            .entry(p.igsid.clone())
            .or_default()
            .push(e.event.as_ref().unwrap().meta.as_ref().unwrap().event_id.clone());
    }
    for (i, u) in users.iter().enumerate() {
        let expected: Vec<String> = sent_order.iter().skip(i).step_by(10).cloned().collect();
        assert_eq!(per_user[u], expected, "order of user {u}");
    }
    // The profile is the emulator's user.
    let (_, first) = &out[0];
    let p = first.profile.as_ref().unwrap();
    assert!(!p.username.is_empty() && !p.profile_pic.is_empty() && p.fetched_time.is_some(), "{p:?}");
    assert!(p.follower_count.is_some() && p.is_verified_user.is_some());
    assert_eq!(out.iter().filter(|(_, e)| !e.from_cache).count(), 10);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_consent_means_no_lookup_and_230_is_remembered() {
    let app = App::start().await;
    let user = "5500000000000201";
    app.user_without_consent(user).await;

    // A reaction does not give consent: not asked for at all.
    app.publish(&[app.reaction(user)]).await;
    let e = app.nth_enriched(1).await;
    assert!(!e.enriched);
    assert_eq!(reason(&e), NotEnrichedReason::NoConsent);
    assert_eq!(app.profile_calls().await, 0);

    // A message gives consent on igrelay's side, but Meta says 230: remembered.
    app.publish(&[app.message(user, "hi")]).await;
    let e = app.nth_enriched(2).await;
    assert_eq!(reason(&e), NotEnrichedReason::ConsentRequired, "{}", e.not_enriched_detail);
    assert!(e.not_enriched_detail.contains("230"), "{}", e.not_enriched_detail);
    app.publish(&[app.message(user, "again")]).await;
    let e = app.nth_enriched(3).await;
    assert_eq!(reason(&e), NotEnrichedReason::ConsentRequired);
    assert_eq!(app.profile_calls().await, 1, "the refusal is cached");

    // Echo-like events and the business's own account are never looked up.
    let mut own = app.message(ACCOUNT, "from the business");
    app.publish(&[own.clone()]).await;
    let e = app.nth_enriched(4).await;
    assert_eq!(reason(&e), NotEnrichedReason::NotAUser);
    if let Some(igrelay_core::v1::event::Payload::Message(m)) = own.payload.as_mut() {
        m.sender_id = "5500000000000202".into();
        m.is_self = true;
    }
    own.meta.as_mut().unwrap().event_id.push_str("-self");
    app.publish(&[own]).await;
    let e = app.nth_enriched(5).await;
    assert_eq!(reason(&e), NotEnrichedReason::NotAUser);
    assert_eq!(app.profile_calls().await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_user_is_published_unenriched_and_remembered() {
    let app = App::start().await;
    let user = "5500000000000301";
    app.user_with_consent(user).await;
    app.emulator.with_state(|s| {
        s.accounts.get_mut(ACCOUNT).unwrap().blocked.insert(user.to_owned());
    });
    app.publish(&[app.message(user, "one"), app.postback(user)]).await;
    let out = app.enriched(2).await;
    for (_, e) in &out {
        assert!(!e.enriched);
        assert_eq!(reason(e), NotEnrichedReason::UserUnavailable, "{}", e.not_enriched_detail);
    }
    assert_eq!(out[1].0, format!("ig.v1.enr.{ACCOUNT}.postback"));
    assert_eq!(app.profile_calls().await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_gives_account_unavailable_and_pauses_lookups() {
    let app = App::start().await;
    let (a, b) = ("5500000000000401", "5500000000000402");
    app.user_with_consent(a).await;
    app.user_with_consent(b).await;
    app.emulator.admin.post("/_admin/tokens", &json!({"token": support::TOKEN, "state": "expired"})).await.unwrap();
    app.publish(&[app.message(a, "one")]).await;
    let e = app.nth_enriched(1).await;
    assert_eq!(reason(&e), NotEnrichedReason::AccountUnavailable, "{}", e.not_enriched_detail);
    assert!(e.not_enriched_detail.contains("190"), "{}", e.not_enriched_detail);
    // The account is paused: another user's event does not call Meta again.
    app.publish(&[app.message(b, "two")]).await;
    let e = app.nth_enriched(2).await;
    assert_eq!(reason(&e), NotEnrichedReason::AccountUnavailable);
    assert_eq!(app.all_calls().await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_graph_beyond_the_deadline_goes_out_unenriched_then_cache_fills() {
    let app = App::start_with(|c| c.deadline = Duration::from_millis(200)).await;
    let user = "5500000000000501";
    app.user_with_consent(user).await;
    app.emulator.admin.fault(&json!({"endpoint": "user_profile", "latency_ms": 1500})).await.unwrap();

    app.publish(&[app.message(user, "one")]).await;
    let e = app.nth_enriched(1).await;
    assert!(!e.enriched);
    assert_eq!(reason(&e), NotEnrichedReason::Deadline);

    // The look-up was not cancelled: it lands in the cache.
    let kv = app.kv("igrelay_profiles").await;
    let key = format!("p.{ACCOUNT}.{user}");
    let mut cached = false;
    for _ in 0..200 {
        if kv.get(&key).await.unwrap().is_some() {
            cached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cached, "the late answer was cached");
    app.publish(&[app.message(user, "two")]).await;
    let e = app.nth_enriched(2).await;
    assert!(e.enriched && e.from_cache);
    assert_eq!(app.profile_calls().await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_cache_entry_is_looked_up_again() {
    let app = App::start_with(|c| c.cache_ttl = Duration::from_millis(500)).await;
    let user = "5500000000000601";
    app.user_with_consent(user).await;
    app.publish(&[app.message(user, "one")]).await;
    let e = app.nth_enriched(1).await;
    assert!(e.enriched && !e.from_cache);
    assert_eq!(app.profile_calls().await, 1);
    // Past the TTL the entry is stale.
    tokio::time::sleep(Duration::from_millis(700)).await;
    app.publish(&[app.message(user, "two")]).await;
    let e = app.nth_enriched(2).await;
    assert!(e.enriched && !e.from_cache, "looked up again");
    assert_eq!(app.profile_calls().await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_deletion_callback_verifies_signed_request_and_purges() {
    let app = App::start().await;
    let (user, other) = ("5500000000000701", "5500000000000702");
    for u in [user, other] {
        app.user_with_consent(u).await;
    }
    app.publish(&[app.message(user, "hi"), app.message(other, "hi")]).await;
    app.enriched(2).await;
    // Dispatch's messaging windows for both users, on two accounts.
    let windows = app.kv("igrelay_windows").await;
    for key in [format!("w.{ACCOUNT}.{user}"), format!("w.17841400000000009.{user}"), format!("w.{ACCOUNT}.{other}")] {
        windows.put(key, Bytes::from_static(b"window")).await.unwrap();
    }
    let profiles = app.kv("igrelay_profiles").await;

    // Forged: signed with another secret.
    let payload = json!({"algorithm": "HMAC-SHA256", "user_id": user, "issued_at": 1_760_000_000});
    let forged = signed_request("not-the-app-secret", &payload);
    let r = app.post_form("/meta/data-deletion", &format!("signed_request={}", urlencode(&forged))).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("signature"), "{}", r.text());
    assert!(profiles.get(format!("p.{ACCOUNT}.{user}")).await.unwrap().is_some(), "nothing purged");
    let r = app.post_form("/meta/data-deletion", "signed_request=garbage").await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Valid.
    let valid = signed_request(SECRET, &payload);
    let r = app.post_form("/meta/data-deletion", &format!("signed_request={}", urlencode(&valid))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let code = body["confirmation_code"].as_str().unwrap();
    let url = body["url"].as_str().unwrap();
    assert_eq!(url, format!("{}/meta/data-deletion/{code}", app.base));
    for key in [format!("p.{ACCOUNT}.{user}"), format!("c.{ACCOUNT}.{user}")] {
        assert!(profiles.get(&key).await.unwrap().is_none(), "{key} purged");
    }
    assert!(windows.get(format!("w.{ACCOUNT}.{user}")).await.unwrap().is_none());
    assert!(windows.get(format!("w.17841400000000009.{user}")).await.unwrap().is_none());
    assert!(windows.get(format!("w.{ACCOUNT}.{other}")).await.unwrap().is_some(), "other users kept");
    assert!(profiles.get(format!("p.{ACCOUNT}.{other}")).await.unwrap().is_some(), "other users kept");

    let status = igrelay_testkit::http::get(&app.http, url).await.unwrap();
    assert_eq!(status.status, 200);
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(status["status"], "completed");
    assert_eq!(status["entries_purged"], 4);
    let missing =
        igrelay_testkit::http::get(&app.http, &format!("{}/meta/data-deletion/NOPE", app.base)).await.unwrap();
    assert_eq!(missing.status, 404);

    // Forgotten: consent is gone too, so a reaction is not looked up.
    app.publish(&[app.reaction(user)]).await;
    let e = app.nth_enriched(3).await;
    assert_eq!(reason(&e), NotEnrichedReason::NoConsent);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_and_forget_on_nats_request_reply() {
    let app = App::start().await;
    let (user, stranger) = ("5500000000000801", "5500000000000802");
    app.user_with_consent(user).await;
    app.publish(&[app.message(user, "hi")]).await;
    app.enriched(1).await;

    let req = GetUserProfileRequest { account_id: ACCOUNT.into(), igsid: user.into(), refresh: false };
    let r: GetUserProfileResponse = app.request(igrelay_bus::subjects::PROFILE_REQUEST, &req).await;
    assert!(r.from_cache);
    assert_eq!(r.profile.as_ref().unwrap().igsid, user);
    let fresh: GetUserProfileResponse = app
        .request(igrelay_bus::subjects::PROFILE_REQUEST, &GetUserProfileRequest { refresh: true, ..req.clone() })
        .await;
    assert!(fresh.profile.is_some() && !fresh.from_cache);
    assert_eq!(app.profile_calls().await, 2);

    let none: GetUserProfileResponse = app
        .request(
            igrelay_bus::subjects::PROFILE_REQUEST,
            &GetUserProfileRequest { account_id: ACCOUNT.into(), igsid: stranger.into(), refresh: false },
        )
        .await;
    assert!(none.profile.is_none());
    assert_eq!(NotEnrichedReason::try_from(none.not_found_reason).unwrap(), NotEnrichedReason::NoConsent);

    let f: ForgetUserResponse = app
        .request(
            igrelay_bus::subjects::FORGET_USER_REQUEST,
            &ForgetUserRequest { igsid: user.into(), account_id: String::new() },
        )
        .await;
    assert!(f.error.is_empty(), "{}", f.error);
    assert_eq!(f.entries_purged, 2, "profile and consent");
    assert!(f.status_url.ends_with(&f.confirmation_code));
    let after: GetUserProfileResponse = app.request(igrelay_bus::subjects::PROFILE_REQUEST, &req).await;
    assert_eq!(NotEnrichedReason::try_from(after.not_found_reason).unwrap(), NotEnrichedReason::NoConsent);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_cache_and_a_forget_reaches_both() {
    // Both replicas consume at once here, so both may miss the cache for the same user.
    let app = App::start_with(|c| c.exclusive = false).await;
    let replica = app.start_replica().await;
    let user = "5500000000000901";
    app.user_with_consent(user).await;
    // Whichever replica takes each event, the profile is fetched once.
    let events: Vec<_> = (0..40).map(|i| app.message(user, &format!("m{i}"))).collect();
    app.publish(&events).await;
    let out = app.enriched(40).await;
    assert!(out.iter().all(|(_, e)| e.enriched));
    assert_eq!(app.profile_calls().await, 1);

    // Forget through the replica's callback; then neither process may still know the user.
    let payload = json!({"algorithm": "HMAC-SHA256", "user_id": user});
    let form = format!("signed_request={}", urlencode(&signed_request(SECRET, &payload)));
    let r = app.post_form_to(&replica.base, "/meta/data-deletion", &form).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reactions: Vec<_> = (0..20).map(|_| app.reaction(user)).collect();
    app.publish(&reactions).await;
    let out = app.enriched(60).await;
    for (_, e) in &out[40..] {
        assert_eq!(reason(e), NotEnrichedReason::NoConsent, "{}", e.not_enriched_detail);
    }
    replica.shutdown.cancel();
    replica.task.await.unwrap().unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_and_throttling_pauses_the_account() {
    let app = App::start().await;
    let (a, b, c) = ("5500000000001001", "5500000000001002", "5500000000001003");
    for u in [a, b, c] {
        app.user_with_consent(u).await;
    }
    // One transient failure (code 2, HTTP 500): retried within the same look-up.
    app.emulator.admin.fault(&json!({"endpoint": "user_profile", "times": 1})).await.unwrap();
    app.publish(&[app.message(a, "one")]).await;
    let e = app.nth_enriched(1).await;
    assert!(e.enriched, "{}", e.not_enriched_detail);
    assert_eq!(app.profile_calls().await, 2);

    // Throttled (80002): the event goes out unenriched and the account's look-ups pause.
    app.emulator
        .admin
        .fault(&json!({"endpoint": "user_profile", "times": 1, "error": {"code": 80002, "message": "too many calls", "status": 400}}))
        .await
        .unwrap();
    app.publish(&[app.message(b, "two")]).await;
    let e = app.nth_enriched(2).await;
    assert_eq!(reason(&e), NotEnrichedReason::Throttled, "{}", e.not_enriched_detail);
    app.publish(&[app.message(c, "three")]).await;
    let e = app.nth_enriched(3).await;
    assert_eq!(reason(&e), NotEnrichedReason::Throttled);
    assert!(e.not_enriched_detail.contains("paused"), "{}", e.not_enriched_detail);
    assert_eq!(app.profile_calls().await, 3, "no call while paused");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_headers_near_the_limit_pause_lookups() {
    // Meta's budget for the account: 4 calls; the 4th answer reports 100 %.
    let app = App::start_full(|_| {}, |em| em.rate_limits.buc_calls_per_24h = 4).await;
    let users: Vec<String> = (1..=5).map(|i| format!("55000000000011{i:02}")).collect();
    for u in &users {
        app.user_with_consent(u).await;
    }
    for (i, u) in users.iter().enumerate() {
        app.publish(&[app.message(u, "hi")]).await;
        let e = app.nth_enriched(i + 1).await;
        if i < 4 {
            assert!(e.enriched, "user {i}: {}", e.not_enriched_detail);
        } else {
            assert_eq!(reason(&e), NotEnrichedReason::Throttled);
            assert!(e.not_enriched_detail.contains('%'), "{}", e.not_enriched_detail);
        }
    }
    assert_eq!(app.profile_calls().await, 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_holds_across_replicas_and_a_standby_takes_over() {
    let mut app = App::start().await;
    let replica = app.start_replica().await;
    let users: Vec<String> = (1..=5).map(|i| format!("55000000000012{i:02}")).collect();
    for u in &users {
        app.user_with_consent(u).await;
    }
    let mut sent = Vec::new();
    let first: Vec<_> = (0..100).map(|i| app.message(&users[i % 5], &format!("a{i}"))).collect();
    sent.extend(first.iter().map(|e| e.meta.as_ref().unwrap().event_id.clone()));
    app.publish(&first).await;
    app.enriched(100).await;

    // The active process stops; the standby one carries on.
    app.shutdown.cancel();
    (&mut app.task).await.unwrap().unwrap();
    let second: Vec<_> = (0..100).map(|i| app.message(&users[i % 5], &format!("b{i}"))).collect();
    sent.extend(second.iter().map(|e| e.meta.as_ref().unwrap().event_id.clone()));
    app.publish(&second).await;
    let out = app.enriched(200).await;
    assert!(out.iter().all(|(_, e)| e.enriched));
    for u in &users {
        let got: Vec<String> = out
            .iter()
            .filter(|(_, e)| e.profile.as_ref().unwrap().igsid == *u)
            .map(|(_, e)| e.event.as_ref().unwrap().meta.as_ref().unwrap().event_id.clone())
            .collect();
        let idx = users.iter().position(|x| x == u).unwrap();
        let expected: Vec<String> = sent.iter().skip(idx).step_by(5).cloned().collect();
        assert_eq!(got, expected, "order of {u}");
    }
    assert_eq!(app.profile_calls().await, 5);
    replica.shutdown.cancel();
    replica.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_through_ingest_come_out_enriched() {
    let app = App::start().await;
    // Ingest receives the emulator's signed webhooks, as in `igrelay dev`.
    let mut bus = igrelay_bus::BusConfig::default();
    bus.nats.url = app.nats.url();
    let ingest_cfg = igrelay_ingest::IngestConfig {
        verify_token: igrelay_runtime::Secret::new("vt"),
        app_secrets: vec![igrelay_runtime::Secret::new("emulator-app-secret")],
        // The test emulator's clock is frozen in 2025: its deliveries would be too old.
        max_delivery_age: Some(Duration::from_secs(100 * 365 * 86_400)),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest_base = format!("http://{}", listener.local_addr().unwrap());
    let ingest_ops = format!("http://{}", ops_listener.local_addr().unwrap());
    let callback = format!("{ingest_base}/webhooks/instagram");
    let stop_ingest = tokio_util::sync::CancellationToken::new();
    let ingest =
        tokio::spawn(igrelay_ingest::run_with_listeners(ingest_cfg, bus, listener, ops_listener, stop_ingest.clone()));
    app.emulator.admin.post("/_admin/webhook", &json!({"callback_url": callback})).await.unwrap();
    let mut ready = false;
    for _ in 0..200 {
        let r = igrelay_testkit::http::get(&app.http, &format!("{ingest_ops}/readyz")).await;
        if r.is_ok_and(|r| r.status == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "ingest became ready");

    let user = "5500000000001301";
    let dm = app.emulator.admin.simulate_dm(ACCOUNT, user, "hello from Instagram").await.unwrap();
    app.enriched(1).await;
    app.emulator
        .admin
        .simulate("postback", &json!({"from": user, "title": "Prices", "payload": "PRICES"}))
        .await
        .unwrap();
    app.emulator.admin.simulate("reaction", &json!({"from": user, "mid": dm["mid"]})).await.unwrap();
    let out = app.enriched(3).await;
    let kinds: Vec<&str> = out.iter().map(|(s, _)| s.rsplit('.').next().unwrap()).collect();
    assert_eq!(kinds, ["message", "postback", "reaction"]);
    for (_, e) in &out {
        assert!(e.enriched, "{}", e.not_enriched_detail);
        assert_eq!(e.profile.as_ref().unwrap().igsid, user);
    }
    assert_eq!(app.profile_calls().await, 1);
    stop_ingest.cancel();
    ingest.await.unwrap().unwrap();
    app.stop().await;
}

/// Polls `f` (bounded) until it is true.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_on_one_replica_keeps_a_slow_lookup_on_another_out_of_the_cache() {
    // The first process consumes (pinned); the replica only answers the deletion callback.
    let app = App::start_with(|c| c.deadline = Duration::from_millis(200)).await;
    let replica = app.start_replica().await;
    let user = "5500000000001301";
    app.user_with_consent(user).await;
    app.emulator.admin.fault(&json!({"endpoint": "user_profile", "latency_ms": 3000})).await.unwrap();
    app.publish(&[app.message(user, "hi")]).await;

    // The look-up is in flight: its claim is in the bucket.
    let kv = app.kv("igrelay_profiles").await;
    let claim = format!("l.{ACCOUNT}.{user}");
    eventually("the look-up claims the user", || async { kv.get(&claim).await.unwrap().is_some() }).await;
    let payload = json!({"algorithm": "HMAC-SHA256", "user_id": user});
    let form = format!("signed_request={}", urlencode(&signed_request(SECRET, &payload)));
    let r = app.post_form_to(&replica.base, "/meta/data-deletion", &form).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The look-up ends (its claim is released after its answer was, or was not, cached).
    eventually("the look-up ends", || async { kv.get(&claim).await.unwrap().is_none() }).await;
    eventually("Meta was asked", || async { app.profile_calls().await == 1 }).await;
    let profile = format!("p.{ACCOUNT}.{user}");
    assert!(kv.get(&profile).await.unwrap().is_none(), "the forgotten user's profile was cached again");
    let e = app.nth_enriched(1).await;
    assert_eq!(reason(&e), NotEnrichedReason::Deadline);
    replica.shutdown.cancel();
    replica.task.await.unwrap().unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_max_concurrent_requests_get_a_busy_reply() {
    let app = App::start_with(|c| c.max_concurrent_requests = 1).await;
    let (a, b) = ("5500000000001401", "5500000000001402");
    for u in [a, b] {
        app.user_with_consent(u).await;
    }
    app.publish(&[app.message(a, "hi"), app.message(b, "hi")]).await;
    app.enriched(2).await;
    app.emulator.admin.fault(&json!({"endpoint": "user_profile", "latency_ms": 2000})).await.unwrap();

    let req = |igsid: &str| GetUserProfileRequest { account_id: ACCOUNT.into(), igsid: igsid.into(), refresh: true };
    let first_req = req(a);
    let slow = app.request::<_, GetUserProfileResponse>(igrelay_bus::subjects::PROFILE_REQUEST, &first_req);
    let second = async {
        // Sent once the first is surely being handled.
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.request::<_, GetUserProfileResponse>(igrelay_bus::subjects::PROFILE_REQUEST, &req(b)).await
    };
    let (first, second) = tokio::join!(slow, second);
    assert!(first.profile.is_some(), "{}", first.detail);
    assert!(second.profile.is_none());
    assert_eq!(NotEnrichedReason::try_from(second.not_found_reason).unwrap(), NotEnrichedReason::Throttled);
    assert!(second.detail.contains("enrich.max_concurrent_requests"), "{}", second.detail);

    // Once the first is answered there is room again.
    let again: GetUserProfileResponse = app.request(igrelay_bus::subjects::PROFILE_REQUEST, &req(b)).await;
    assert!(again.profile.is_some(), "{}", again.detail);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_events_in_flight_hands_them_back_and_ends() {
    let app = App::start_with(|c| c.deadline = Duration::from_millis(100)).await;
    let events: Vec<_> = (0..5).map(|i| app.message(&format!("55000000000016{i:02}"), "hi")).collect();
    app.publish(&events).await;
    // Stopped while the events are being fetched and handled: what is handed back must not
    // come straight back to the process that is stopping, round and round (a stop of
    // `igrelay dev` took up to a minute that way).
    app.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.task).await;
    assert!(stopped.is_ok(), "enrich did not stop within 10 s");
    stopped.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn ops_endpoints_are_on_the_ops_listener_not_the_callback_port() {
    let app = App::start().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let ops = igrelay_testkit::http::get(&app.http, &format!("{}{path}", app.ops)).await.unwrap();
        assert_eq!(ops.status, 200, "{path} on the ops listener");
        let public = igrelay_testkit::http::get(&app.http, &format!("{}{path}", app.base)).await.unwrap();
        assert_eq!(public.status, 404, "{path} is served on the data deletion callback port");
    }
    app.stop().await;
}

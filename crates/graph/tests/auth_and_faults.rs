// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use futures::TryStreamExt;
use igrelay_graph::messaging::SendRequest;
use igrelay_graph::{AccessToken, AccountAuth, ErrorClass, GraphClient, GraphConfig, GraphError, TransportKind};
use serde_json::json;

#[tokio::test]
async fn invalid_expired_and_revoked_tokens_are_auth_errors_and_never_printed() {
    let c = start().await;
    let (user, _) = c.dm("6100000000000801", "hi").await;
    let bogus = AccountAuth::instagram("IGAAnot-a-real-token");
    let e = c.client.send_message(&bogus, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();
    assert_err(&e, 190, None, ErrorClass::Auth);
    for text in [format!("{e}"), format!("{e:?}"), format!("{bogus:?}"), format!("{:?}", c.client)] {
        assert!(!text.contains("IGAAnot-a-real-token"), "token leaked: {text}");
    }
    c.emu.admin.post("/_admin/tokens", &json!({"token": c.seed.token, "state": "revoked"})).await.unwrap();
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();
    assert_err(&e, 190, Some(460), ErrorClass::Auth);
    assert!(!format!("{e:?}").contains(&c.seed.token));
    c.emu.admin.post("/_admin/tokens", &json!({"token": c.seed.token, "state": "expired"})).await.unwrap();
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();
    assert_err(&e, 190, Some(463), ErrorClass::Auth);
    // Expiry at a given moment.
    let now = c.emu.admin.get("/_admin/clock").await.unwrap()["now_ms"].as_i64().unwrap();
    c.emu
        .admin
        .post("/_admin/tokens", &json!({"token": c.seed.token, "state": "valid", "expires_at_ms": now + 60_000}))
        .await
        .unwrap();
    c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap();
    c.emu.admin.advance_clock(60_000).await.unwrap();
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();
    assert_err(&e, 190, Some(463), ErrorClass::Auth);
    // Another account's token cannot reach this account's objects.
    let other = c.emu.admin.post("/_admin/accounts", &json!({})).await.unwrap();
    let other_auth = AccountAuth::instagram(other["token"].as_str().unwrap());
    let e = c.client.send_message(&other_auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();
    assert_err(&e, 100, Some(33), permanent());
}

#[tokio::test]
async fn appsecret_proof_is_sent_when_configured() {
    let c = start_with(|cfg| cfg.require_appsecret_proof = true).await;
    let e = c.client.subscribed_apps(&c.auth, &c.ig).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    let cfg = GraphConfig {
        app_secret: Some(AccessToken::new("emulator-app-secret")),
        ..GraphConfig::single_host(c.emu.base_url.clone())
    };
    assert!(!format!("{cfg:?}").contains("emulator-app-secret"));
    let client = GraphClient::new(cfg).unwrap();
    client.subscribed_apps(&c.auth, &c.ig).await.unwrap();
    let wrong = GraphClient::new(GraphConfig {
        app_secret: Some(AccessToken::new("wrong")),
        ..GraphConfig::single_host(c.emu.base_url.clone())
    })
    .unwrap();
    assert!(wrong.subscribed_apps(&c.auth, &c.ig).await.is_err());
}

#[tokio::test]
async fn refresh_access_token_needs_a_day_old_valid_token() {
    let c = start().await;
    let token = AccessToken::new(c.seed.token.clone());
    let e = c.client.refresh_access_token(&token).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    let now = c.emu.admin.get("/_admin/clock").await.unwrap()["now_ms"].as_i64().unwrap();
    c.emu
        .admin
        .post("/_admin/tokens", &json!({"token": c.seed.token, "issued_ms": now - 25 * 3_600_000}))
        .await
        .unwrap();
    let r = c.client.refresh_access_token(&token).await.unwrap().value;
    assert_eq!(r.token_type.as_deref(), Some("bearer"));
    assert_eq!(r.expires_in, Some(5_184_000));
    assert!(!format!("{r:?}").contains(r.access_token.expose()));
    let fresh = AccountAuth::instagram(r.access_token.clone());
    c.client.subscribed_apps(&fresh, &c.ig).await.unwrap();
    c.emu.admin.post("/_admin/tokens", &json!({"token": c.seed.token, "state": "expired"})).await.unwrap();
    let e = c.client.refresh_access_token(&token).await.unwrap_err();
    assert_err(&e, 190, Some(463), ErrorClass::Auth);
}

#[tokio::test]
async fn page_token_look_ups_of_facebook_login() {
    let c = start().await;
    let user_token = AccessToken::new(c.seed.user_token.clone());
    let pages: Vec<_> = c.client.pages(&user_token).try_collect().await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].id, c.page);
    assert_eq!(pages[0].instagram_business_account.as_ref().unwrap().id, c.ig);
    assert_eq!(pages[0].access_token.as_ref().unwrap().expose(), c.seed.page_token);
    assert!(pages[0].tasks.contains(&"MESSAGING".to_owned()));
    let page = c.client.page(&user_token, &c.page).await.unwrap().value;
    assert_eq!(page.instagram_business_account.unwrap().id, c.ig);
    // The Page token works on the Facebook Login host for the linked account.
    let (user, _) = c.dm("6100000000000802", "hi").await;
    c.client.send_message(&c.page_auth, &c.ig, &SendRequest::text(&user, "via page token")).await.unwrap();
}

#[tokio::test]
async fn injected_faults_are_classified() {
    let c = start().await;
    let (user, _) = c.dm("6100000000000901", "hi").await;
    let send = SendRequest::text(&user, "x");
    // A scripted Meta error, once.
    c.emu.admin.fault(&json!({"endpoint": "messages", "times": 1, "error": {"code": 2, "message": "Service temporarily unavailable", "status": 503, "is_transient": true}})).await.unwrap();
    let e = c.client.send_message(&c.auth, &c.ig, &send).await.unwrap_err();
    assert_err(&e, 2, None, ErrorClass::Transient);
    c.client.send_message(&c.auth, &c.ig, &send).await.unwrap();
    // A throttling error scripted for another endpoint does not touch this one.
    c.emu.admin.fault(&json!({"endpoint": "conversations", "times": 1, "error": {"code": 4, "message": "(#4) Application request limit reached"}})).await.unwrap();
    c.client.send_message(&c.auth, &c.ig, &send).await.unwrap();
    let e = c.client.conversations_page(&c.auth, &c.ig, None, None).await.unwrap_err();
    assert!(matches!(e.class(), ErrorClass::Throttled { .. }));
    // 5xx from a proxy, without a Graph body.
    c.emu.admin.fault(&json!({"endpoint": "messages", "times": 1, "kind": "http5xx", "status": 502})).await.unwrap();
    let e = c.client.send_message(&c.auth, &c.ig, &send).await.unwrap_err();
    assert!(matches!(e, GraphError::Http { status: 502, .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Transient);
    // A dropped connection.
    c.emu.admin.fault(&json!({"endpoint": "messages", "times": 1, "kind": "drop"})).await.unwrap();
    let e = c.client.send_message(&c.auth, &c.ig, &send).await.unwrap_err();
    assert!(matches!(e, GraphError::Transport { kind: TransportKind::Interrupted, .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Transient);
    // An error rate of 1 fails every call until cleared; latency is only added.
    c.emu.admin.fault(&json!({"endpoint": "messages", "error_rate": 1.0, "latency_ms": 5})).await.unwrap();
    assert!(c.client.send_message(&c.auth, &c.ig, &send).await.is_err());
    c.emu.admin.delete("/_admin/faults").await.unwrap();
    c.client.send_message(&c.auth, &c.ig, &send).await.unwrap();
    let calls = c.emu.admin.calls().await.unwrap();
    let m = calls["calls"].as_array().unwrap().iter().find(|x| x["endpoint"] == "messages").unwrap().clone();
    assert_eq!(m["errors"], 4);
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transient() {
    let c = start().await;
    let (user, _) = c.dm("6100000000000902", "hi").await;
    c.emu.admin.fault(&json!({"endpoint": "messages", "latency_ms": 2_000})).await.unwrap();
    let slow =
        GraphClient::new(GraphConfig { timeout_ms: 100, ..GraphConfig::single_host(c.emu.base_url.clone()) }).unwrap();
    let e = slow.send_message(&c.auth, &c.ig, &SendRequest::text(&user, "x")).await.unwrap_err();
    assert!(matches!(e, GraphError::Transport { kind: TransportKind::Timeout, .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Transient);
    let nowhere = GraphClient::new(GraphConfig::single_host(closed_port_url().await)).unwrap();
    let e = nowhere.subscribed_apps(&c.auth, &c.ig).await.unwrap_err();
    assert!(matches!(e, GraphError::Transport { kind: TransportKind::Connect, .. }), "{e:?}");
    assert!(!format!("{e:?}").contains(&c.seed.token));
    let e = c.client.send_message(&c.auth, "../me", &SendRequest::text(&user, "x")).await.unwrap_err();
    assert!(matches!(e, GraphError::InvalidArgument(_)));
}

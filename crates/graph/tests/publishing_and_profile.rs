// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use igrelay_graph::ErrorClass;
use igrelay_graph::insights::InsightsQuery;
use igrelay_graph::messaging::Button;
use igrelay_graph::profile::{IceBreaker, IceBreakers, MenuLocale, ProfileField};
use igrelay_graph::publishing::{ContainerRequest, ContainerStatusCode};
use serde_json::json;

#[tokio::test]
async fn image_container_life_cycle_publish_and_quota() {
    let c = start_with(|cfg| cfg.container_delay_ms = 5_000).await;
    let id = c
        .client
        .create_container(&c.auth, &c.ig, &ContainerRequest::image("https://cdn.example/a.jpg", Some("hello".into())))
        .await
        .unwrap()
        .value
        .id;
    let st = c.client.container_status(&c.auth, &id).await.unwrap().value;
    assert_eq!(st.status_code, ContainerStatusCode::InProgress);
    let e = c.client.publish_container(&c.auth, &c.ig, &id).await.unwrap_err();
    assert_err(&e, 9007, Some(2207027), ErrorClass::Transient);
    c.emu.advance(5_000);
    assert_eq!(c.client.container_status(&c.auth, &id).await.unwrap().value.status_code, ContainerStatusCode::Finished);
    let media = c.client.publish_container(&c.auth, &c.ig, &id).await.unwrap().value.id;
    assert_eq!(
        c.client.container_status(&c.auth, &id).await.unwrap().value.status_code,
        ContainerStatusCode::Published
    );
    let limit = c.client.content_publishing_limit(&c.auth, &c.ig).await.unwrap().value;
    assert_eq!(limit.quota_usage, 1);
    assert_eq!(limit.config.unwrap().quota_total, 100);
    // The published media takes comments and shares.
    c.emu.admin.simulate("comment", &json!({"account": c.ig, "media_id": media, "text": "wow"})).await.unwrap();
    let e = c.client.create_container(&c.auth, &c.ig, &ContainerRequest::image("ftp://nope", None)).await.unwrap_err();
    assert_err(&e, 9004, Some(2207052), permanent());
    let e = c
        .client
        .create_container(&c.auth, &c.ig, &ContainerRequest::image("https://cdn.example/a.jpg", Some("x".repeat(2201))))
        .await
        .unwrap_err();
    assert_err(&e, 36004, Some(2207010), permanent());
    let e = c.client.publish_container(&c.auth, &c.ig, "18100000000000").await.unwrap_err();
    assert_err(&e, 24, Some(2207008), ErrorClass::Transient);
}

#[tokio::test]
async fn reels_stories_and_carousels_with_2_to_10_children() {
    let c = start_with(|cfg| cfg.container_delay_ms = 0).await;
    let reel = c
        .client
        .create_container(
            &c.auth,
            &c.ig,
            &ContainerRequest::reel("https://cdn.example/r.mp4", Some("Hello World!".into()), false),
        )
        .await
        .unwrap()
        .value
        .id;
    c.client.publish_container(&c.auth, &c.ig, &reel).await.unwrap();
    let story = c
        .client
        .create_container(&c.auth, &c.ig, &ContainerRequest::story_image("https://cdn.example/s.jpg"))
        .await
        .unwrap()
        .value
        .id;
    c.client.publish_container(&c.auth, &c.ig, &story).await.unwrap();
    let mut kids = Vec::new();
    for i in 0..11 {
        kids.push(
            c.client
                .create_container(
                    &c.auth,
                    &c.ig,
                    &ContainerRequest::carousel_item(format!("https://cdn.example/{i}.jpg")),
                )
                .await
                .unwrap()
                .value
                .id,
        );
    }
    for n in [1usize, 11] {
        let e = c
            .client
            .create_container(&c.auth, &c.ig, &ContainerRequest::carousel(kids[..n].to_vec(), None))
            .await
            .unwrap_err();
        assert_err(&e, 100, Some(2207028), permanent());
    }
    let e = c.client.publish_container(&c.auth, &c.ig, &kids[0]).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    let carousel = c
        .client
        .create_container(
            &c.auth,
            &c.ig,
            &ContainerRequest::carousel(kids[..10].to_vec(), Some("New Carousel!".into())),
        )
        .await
        .unwrap()
        .value
        .id;
    c.client.publish_container(&c.auth, &c.ig, &carousel).await.unwrap();
    assert_eq!(c.client.content_publishing_limit(&c.auth, &c.ig).await.unwrap().value.quota_usage, 3);
}

#[tokio::test]
async fn container_error_expiry_and_daily_publishing_cap() {
    let c = start_with(|cfg| {
        cfg.container_delay_ms = 0;
        cfg.rate_limits.publishes_per_24h = 1;
    })
    .await;
    let bad = c
        .client
        .create_container(&c.auth, &c.ig, &ContainerRequest::image("https://cdn.example/a.jpg", None))
        .await
        .unwrap()
        .value
        .id;
    c.emu.admin.post(&format!("/_admin/containers/{bad}"), &json!({"status": "ERROR"})).await.unwrap();
    assert_eq!(c.client.container_status(&c.auth, &bad).await.unwrap().value.status_code, ContainerStatusCode::Error);
    let e = c.client.publish_container(&c.auth, &c.ig, &bad).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    let old = c
        .client
        .create_container(&c.auth, &c.ig, &ContainerRequest::image("https://cdn.example/a.jpg", None))
        .await
        .unwrap()
        .value
        .id;
    c.emu.advance(24 * 3_600_000);
    assert_eq!(c.client.container_status(&c.auth, &old).await.unwrap().value.status_code, ContainerStatusCode::Expired);
    let e = c.client.publish_container(&c.auth, &c.ig, &old).await.unwrap_err();
    assert_err(&e, -2, Some(2207020), permanent());
    let a = c
        .client
        .create_container(&c.auth, &c.ig, &ContainerRequest::image("https://cdn.example/a.jpg", None))
        .await
        .unwrap()
        .value
        .id;
    let b = c
        .client
        .create_container(&c.auth, &c.ig, &ContainerRequest::image("https://cdn.example/b.jpg", None))
        .await
        .unwrap()
        .value
        .id;
    c.client.publish_container(&c.auth, &c.ig, &a).await.unwrap();
    let e = c.client.publish_container(&c.auth, &c.ig, &b).await.unwrap_err();
    assert_eq!(e.code(), Some((9, Some(2207042))));
    assert!(matches!(e.class(), ErrorClass::Throttled { .. }));
    // The moving 24 h window frees the slot.
    c.emu.advance(24 * 3_600_000);
    let b2 = c
        .client
        .create_container(&c.auth, &c.ig, &ContainerRequest::image("https://cdn.example/b.jpg", None))
        .await
        .unwrap()
        .value
        .id;
    c.client.publish_container(&c.auth, &c.ig, &b2).await.unwrap();
}

#[tokio::test]
async fn account_and_media_insights_are_deterministic_series() {
    let c = start_with(|cfg| cfg.container_delay_ms = 0).await;
    let q = InsightsQuery { metrics: vec!["reach".into(), "views".into()], period: "day".into(), ..Default::default() };
    let a = c.client.account_insights(&c.auth, &c.ig, &q).await.unwrap().value;
    let b = c.client.account_insights(&c.auth, &c.ig, &q).await.unwrap().value;
    assert_eq!(a, b);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].name, "reach");
    assert_eq!(a[0].values.len(), 2);
    assert!(a[0].values[0].end_time.as_deref().unwrap().ends_with("T08:00:00+0000"));
    assert_eq!(a[0].id, format!("{}/insights/reach/day", c.ig));
    let total = InsightsQuery { metric_type: Some("total_value".into()), ..q.clone() };
    let t = c.client.account_insights(&c.auth, &c.ig, &total).await.unwrap().value;
    let sum: i64 = a[0].values.iter().map(|v| v.value.as_i64().unwrap()).sum();
    assert_eq!(t[0].total_value.as_ref().unwrap().value, json!(sum));
    for bad in [
        InsightsQuery { metrics: vec!["impressions".into()], period: "day".into(), ..Default::default() },
        InsightsQuery {
            metrics: vec!["follower_count".into()],
            period: "day".into(),
            metric_type: Some("total_value".into()),
            ..Default::default()
        },
        InsightsQuery {
            metrics: vec!["reach".into()],
            period: "day".into(),
            since: Some(1_700_000_000),
            until: Some(1_700_000_000 + 31 * 86_400),
            ..Default::default()
        },
    ] {
        let e = c.client.account_insights(&c.auth, &c.ig, &bad).await.unwrap_err();
        assert_err(&e, 100, None, permanent());
    }
    let id = c
        .client
        .create_container(&c.auth, &c.ig, &ContainerRequest::reel("https://cdn.example/r.mp4", None, true))
        .await
        .unwrap()
        .value
        .id;
    let media = c.client.publish_container(&c.auth, &c.ig, &id).await.unwrap().value.id;
    let m = c.client.media_insights(&c.auth, &media, &["shares", "comments"]).await.unwrap().value;
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].period, "lifetime");
    assert_eq!(m[0].id, format!("{media}/insights/shares/lifetime"));
    let e = c.client.media_insights(&c.auth, &media, &["plays"]).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
}

#[tokio::test]
async fn ice_breakers_and_persistent_menu_get_set_delete() {
    let c = start().await;
    assert!(c.client.ice_breakers(&c.auth, &c.ig).await.unwrap().value.is_empty());
    let q = |s: &str| IceBreaker { question: s.into(), payload: format!("P_{s}") };
    let ib = vec![IceBreakers {
        call_to_actions: vec![q("What is your favorite sport?"), q("Capital of USA?")],
        locale: "default".into(),
    }];
    assert_eq!(c.client.set_ice_breakers(&c.auth, &c.ig, &ib).await.unwrap().value.result, "success");
    assert_eq!(c.client.ice_breakers(&c.auth, &c.ig).await.unwrap().value, ib);
    let five =
        vec![IceBreakers { call_to_actions: (0..5).map(|i| q(&i.to_string())).collect(), locale: "default".into() }];
    let e = c.client.set_ice_breakers(&c.auth, &c.ig, &five).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    let menu = vec![MenuLocale {
        locale: "default".into(),
        call_to_actions: vec![
            Button::Postback { title: "Talk to an agent".into(), payload: "CARE_HELP".into() },
            Button::WebUrl { title: "Shop now".into(), url: "https://www.originalcoastclothing.com/".into() },
        ],
    }];
    c.client.set_persistent_menu(&c.auth, &c.ig, &menu).await.unwrap();
    assert_eq!(c.client.persistent_menu(&c.auth, &c.ig).await.unwrap().value, menu);
    c.client.delete_messenger_profile(&c.auth, &c.ig, &[ProfileField::IceBreakers]).await.unwrap();
    assert!(c.client.ice_breakers(&c.auth, &c.ig).await.unwrap().value.is_empty());
    assert_eq!(c.client.persistent_menu(&c.auth, &c.ig).await.unwrap().value, menu);
    c.client.delete_messenger_profile(&c.auth, &c.ig, &[ProfileField::PersistentMenu]).await.unwrap();
    assert!(c.client.persistent_menu(&c.auth, &c.ig).await.unwrap().value.is_empty());
}

#[tokio::test]
async fn welcome_message_flows_create_list_get_update_delete() {
    let c = start().await;
    let flow = json!([{"message": {"text": "Learn more about our summer sale!", "quick_replies": [
        {"content_type": "text", "title": "I am interested!", "payload": "summer-sale-interest"}]}}]);
    let id = c.client.create_welcome_flow(&c.auth, &c.ig, "Customer intake flow", &flow).await.unwrap().value.flow_id;
    let list = c.client.welcome_flows(&c.auth, &c.ig).await.unwrap().value;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].eligible_platforms, vec!["INSTAGRAM"]);
    let stored: serde_json::Value = serde_json::from_str(list[0].welcome_message_flow.as_deref().unwrap()).unwrap();
    assert_eq!(stored, flow);
    assert!(c.client.update_welcome_flow(&c.auth, &c.ig, &id, Some("Winter 2025"), None).await.unwrap().value.success);
    assert_eq!(
        c.client.welcome_flow(&c.auth, &c.ig, &id).await.unwrap().value.unwrap().name.as_deref(),
        Some("Winter 2025")
    );
    let bad = json!([{"message": {"text": "x".repeat(1001)}}]);
    let e = c.client.create_welcome_flow(&c.auth, &c.ig, "bad", &bad).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    assert!(c.client.delete_welcome_flow(&c.auth, &c.ig, &id).await.unwrap().value.success);
    let e = c.client.welcome_flow(&c.auth, &c.ig, &id).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
}

#[tokio::test]
async fn webhook_subscriptions_gate_what_is_sent() {
    let c = start().await;
    let subs = c.client.subscribed_apps(&c.auth, &c.ig).await.unwrap().value;
    assert!(subs[0].subscribed_fields.contains(&"messages".to_owned()));
    assert!(c.client.unsubscribe_app(&c.auth, &c.ig).await.unwrap().value.success);
    assert!(c.client.subscribed_apps(&c.auth, &c.ig).await.unwrap().value.is_empty());
    c.dm("6100000000000701", "unheard").await;
    let ev = c.emu.admin.get("/_admin/webhooks/events").await.unwrap();
    assert_eq!(ev["events"][0]["subscribed"], false);
    c.client.subscribe_app(&c.auth, &c.ig, &["messages", "comments"]).await.unwrap();
    assert_eq!(
        c.client.subscribed_apps(&c.auth, &c.ig).await.unwrap().value[0].subscribed_fields,
        vec!["comments", "messages"]
    );
    let e = c.client.subscribe_app(&c.auth, &c.ig, &["not_a_field"]).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
}

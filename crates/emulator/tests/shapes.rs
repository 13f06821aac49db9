//! The emulator's success answers have the shapes of the seed documents' example responses
//! (`/work/shared/seeds`, Meta's Instagram API collection and guides). Each expected value below
//! is copied from a seed; every key it has must be present in the emulator's answer with a
//! value of the same JSON type (first elements of arrays compared recursively). An array the
//! seed shows with elements must have elements: an empty `data: []` is not the seed's shape.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use igrelay_emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::{Value, json};

#[track_caller]
fn same_shape(path: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let av = a.get(k).unwrap_or_else(|| panic!("{path}.{k} missing in {actual}"));
                same_shape(&format!("{path}.{k}"), ev, av);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let Some(e0) = e.first() {
                let a0 = a.first().unwrap_or_else(|| panic!("{path} is empty; the seed shows elements like {e0}"));
                same_shape(&format!("{path}[0]"), e0, a0);
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_)) => {}
        _ => panic!("{path}: expected the type of {expected}, got {actual}"),
    }
}

struct T {
    emu: EmulatorHandle,
    http: reqwest::Client,
    ig: String,
    page: String,
    token: String,
    page_token: String,
    user_token: String,
}

impl T {
    async fn new() -> Self {
        let mut cfg = EmulatorConfig::for_tests();
        cfg.container_delay_ms = 0;
        let s = cfg.accounts[0].clone();
        let emu = igrelay_emulator::spawn(cfg).await.unwrap();
        T {
            emu,
            http: reqwest::Client::new(),
            ig: s.ig_id,
            page: s.page_id,
            token: s.token,
            page_token: s.page_token,
            user_token: s.user_token,
        }
    }

    async fn call(&self, method: http::Method, path_and_query: &str, token: &str, body: Option<Value>) -> Value {
        let sep = if path_and_query.contains('?') { '&' } else { '?' };
        let url = format!("{}/v23.0/{path_and_query}{sep}access_token={token}", self.emu.base_url);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        assert!(resp.headers().contains_key("x-app-usage"));
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "{path_and_query}: {v}");
        v
    }

    async fn get(&self, p: &str) -> Value {
        self.call(http::Method::GET, p, &self.token, None).await
    }

    async fn post(&self, p: &str, body: Value) -> Value {
        self.call(http::Method::POST, p, &self.token, Some(body)).await
    }
}

#[tokio::test]
async fn messaging_and_conversations_answers_match_the_seeds() {
    let t = T::new().await;
    let dm = t.emu.admin.simulate_dm(&t.ig, "20802401916297", "hi").await.unwrap();
    let user = dm["user_id"].as_str().unwrap();
    let send = t
        .post(&format!("{}/messages", t.ig), json!({"recipient": {"id": user}, "message": {"text": "Hello World!"}}))
        .await;
    same_shape(
        "send",
        &json!({"recipient_id": "20802401916297", "message_id": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjEy"}),
        &send,
    );

    let convs = t.get(&format!("{}/conversations?platform=instagram", t.ig)).await;
    same_shape(
        "conversations",
        &json!({"data": [{"id": "converasationID1", "updated_time": "2025-07-28T22:44:49+0000"}]}),
        &convs,
    );
    let by_user = t.get(&format!("{}/conversations?user_id={user}", t.ig)).await;
    same_shape(
        "conversation by user",
        &json!({"data": [{"id": "conversationID1", "updated_time": "2025-07-28T22:44:49+0000"}]}),
        &by_user,
    );
    let conv_id = convs["data"][0]["id"].as_str().unwrap();
    let msgs = t.get(&format!("{conv_id}?fields=messages{{from,to}}")).await;
    same_shape(
        "messages",
        &json!({"messages": {"data": [{"id": "messageID1", "created_time": "2025-07-28T22:44:49+0000", "is_unsupported": false}], "paging": {"cursors": {"after": "x"}}}, "id": "converasationID1"}),
        &msgs,
    );
    let mid = msgs["messages"]["data"][0]["id"].as_str().unwrap();
    let details = t.get(&format!("{mid}?fields=id,created_time,from,to,message")).await;
    same_shape(
        "message details",
        &json!({"id": "messageID1", "created_time": "2025-07-28T22:44:49+0000", "from": {"username": "u", "id": "i"}, "to": {"data": [{"username": "u", "id": "i"}]}, "message": "hi"}),
        &details,
    );
    let profile = t.get(&format!("{user}?fields=name,username,profile_pic,follower_count,is_user_follow_business,is_business_follow_user,is_verified_user")).await;
    same_shape(
        "profile",
        &json!({"name": "Stories Store", "username": "stories.in.store", "profile_pic": "https://scontent", "is_verified_user": false, "follower_count": 1, "is_user_follow_business": false, "is_business_follow_user": false, "id": "819898670256713"}),
        &profile,
    );
    let up = t.post(&format!("{}/message_attachments", t.ig), json!({"message": {"attachment": {"type": "image", "payload": {"url": "https://cdn.example/a.jpg", "is_reusable": true}}}})).await;
    same_shape("attachment upload", &json!({"attachment_id": "1854626884821032"}), &up);
    let moderated = t
        .call(
            http::Method::POST,
            &format!("{}/moderate_conversations", t.page),
            &t.page_token,
            Some(json!({"user_ids": [{"id": user}], "actions": ["move_to_spam"]})),
        )
        .await;
    assert_eq!(moderated, json!({"success": "true"}), "seed 000 answers a string");
}

#[tokio::test]
async fn profile_flows_and_subscriptions_answers_match_the_seeds() {
    let t = T::new().await;
    let flow = json!({"name": "Customer intake flow", "welcome_message_flow": [{"message": {"text": "Learn more about our summer sale!", "quick_replies": [{"content_type": "text", "title": "I am interested!", "payload": "summer-sale-interest"}]}}], "eligible_platforms": ["instagram"]});
    let created = t.post(&format!("{}/welcome_message_flows", t.ig), flow).await;
    same_shape("create flow", &json!({"flow_id": "1234567890"}), &created);
    let list = t.get(&format!("{}/welcome_message_flows", t.ig)).await;
    let seed_flow = json!({"data": [{"name": "Customer intake flow", "eligible_platforms": ["INSTAGRAM"], "welcome_message_flow": "[{\"message\":{}}]", "last_update_time": "2025-08-14T19:06:34+0000", "is_used_in_ad": false, "id": "<flow_id_1>"}], "paging": {"cursors": {"before": "b", "after": "a"}}});
    same_shape("flows", &seed_flow, &list);
    let one = t.get(&format!("{}/welcome_message_flows?flow_id={}", t.ig, created["flow_id"].as_str().unwrap())).await;
    same_shape("flow", &seed_flow, &one);
    let upd = t
        .post(
            &format!("{}/welcome_message_flows?flow_id={}", t.ig, created["flow_id"].as_str().unwrap()),
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(upd, json!({"success": true}));

    let ib = t.post(&format!("{}/messenger_profile", t.ig), json!({"platform": "instagram", "ice_breakers": [{"question": "What is your favorite sport?", "payload": "P1"}, {"question": "What is the capital of USA?", "payload": "P2"}]})).await;
    assert_eq!(ib, json!({"result": "success"}));
    let got = t.get(&format!("{}/messenger_profile?fields=ice_breakers", t.ig)).await;
    same_shape(
        "ice breakers",
        &json!({"data": [{"call_to_actions": [{"question": "q", "payload": "p"}], "locale": "default"}]}),
        &got,
    );
    let menu = json!([{"locale": "default", "call_to_actions": [{"type": "postback", "title": "Talk to an agent", "payload": "CARE_HELP"}, {"type": "web_url", "title": "Shop now", "url": "https://www.originalcoastclothing.com/"}]}]);
    // The seed sends it as form data: the menu as JSON text.
    let resp = t
        .http
        .post(format!("{}/v23.0/{}/messenger_profile?access_token={}", t.emu.base_url, t.ig, t.token))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new()).append_pair("persistent_menu", &menu.to_string()).finish(),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let got = t.get(&format!("{}/messenger_profile?fields=persistent_menu", t.ig)).await;
    assert_eq!(got, json!({"data": [{"persistent_menu": menu}]}));
    let del = t
        .call(http::Method::DELETE, &format!("{}/messenger_profile?fields=['persistent_menu']", t.ig), &t.token, None)
        .await;
    assert_eq!(del, json!({"result": "success"}));

    let sub = t.post(&format!("{}/subscribed_apps?subscribed_fields=messages,comments", t.ig), json!({})).await;
    assert_eq!(sub, json!({"success": true}));
    let subs = t.get(&format!("{}/subscribed_apps", t.ig)).await;
    same_shape("subscriptions", &json!({"data": [{"subscribed_fields": ["messages"]}]}), &subs);

    let accounts = t
        .call(
            http::Method::GET,
            "me/accounts?fields=name,access_token,tasks,instagram_business_account",
            &t.user_token,
            None,
        )
        .await;
    same_shape(
        "me/accounts",
        &json!({"data": [{"name": "n", "access_token": "t", "instagram_business_account": {"id": "i"}, "id": "p", "tasks": ["ANALYZE"]}]}),
        &accounts,
    );
    let page = t
        .call(
            http::Method::GET,
            &format!("{}?fields=name,access_token,instagram_business_account", t.page),
            &t.user_token,
            None,
        )
        .await;
    same_shape(
        "page",
        &json!({"name": "n", "access_token": "t", "instagram_business_account": {"id": "i"}, "id": "p"}),
        &page,
    );
}

#[tokio::test]
async fn publishing_insights_and_comments_answers_match_the_seeds() {
    let t = T::new().await;
    let c = t.post(&format!("{}/media?media_type=REELS&video_url=https://cdn.example/v.mp4&caption=Hello%20World!&share_to_feed=false", t.ig), json!({})).await;
    same_shape("container", &json!({"id": "18270815569115548"}), &c);
    let cid = c["id"].as_str().unwrap();
    let st = t.get(&format!("{cid}?fields=status_code,status")).await;
    same_shape(
        "status",
        &json!({"status_code": "FINISHED", "status": "Finished: Media has been uploaded and it is ready to be published.", "id": "18270815569115548"}),
        &st,
    );
    assert_eq!(st["status"], "Finished: Media has been uploaded and it is ready to be published.");
    let published = t.post(&format!("{}/media_publish?creation_id={cid}", t.ig), json!({})).await;
    same_shape("publish", &json!({"id": "90011803596441"}), &published);
    let limit = t.get(&format!("{}/content_publishing_limit?fields=quota_usage,config", t.ig)).await;
    same_shape(
        "limit",
        &json!({"data": [{"quota_usage": 2, "config": {"quota_total": 50, "quota_duration": 86400}}]}),
        &limit,
    );
    let media = published["id"].as_str().unwrap();

    let ins = t.get(&format!("{}/insights?metric=reach&period=day", t.ig)).await;
    same_shape(
        "account insights",
        &json!({"data": [{"name": "reach", "period": "day", "values": [{"value": 0, "end_time": "2025-12-09T08:00:00+0000"}], "title": "Reach", "description": "d", "id": "INSTAGRAM_USER_ID/insights/reach/day"}]}),
        &ins,
    );
    let mins = t.get(&format!("{media}/insights?metric=shares,comments")).await;
    same_shape(
        "media insights",
        &json!({"data": [{"name": "shares", "period": "lifetime", "values": [{"value": 0}], "title": "Shares", "description": "d", "id": "INSTAGRAM_MEDIA_ID/insights/shares/lifetime"}]}),
        &mins,
    );

    let com = t
        .emu
        .admin
        .simulate("comment", &json!({"account": t.ig, "media_id": media, "text": "so cool!"}))
        .await
        .unwrap();
    let comments = t.get(&format!("{media}/comments?fields=from,text")).await;
    same_shape(
        "comments",
        &json!({"data": [{"from": {"id": "1", "username": "u"}, "text": "so cool!", "id": "1"}], "paging": {"cursors": {"before": "b", "after": "a"}}}),
        &comments,
    );
    let reply = t
        .post(
            &format!("{}/replies", com["comment_id"].as_str().unwrap()),
            json!({"message": "Thanks for your comment!"}),
        )
        .await;
    same_shape("reply", &json!({"id": "18006022967821076"}), &reply);
}

// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use futures::TryStreamExt;
use igrelay_graph::messaging::SendRequest;
use igrelay_graph::moderation::ModerationAction;
use igrelay_graph::{ErrorClass, GraphError};
use serde_json::json;

#[tokio::test]
async fn conversations_list_page_by_cursor_and_find_by_user() {
    let c = start().await;
    let mut users = Vec::new();
    for i in 0..30 {
        let (u, _) = c.dm(&format!("61000000000002{i:02}"), "hi").await;
        c.emu.advance(1_000);
        users.push(u);
    }
    // 30 conversations span two pages of 25; the stream follows the cursor.
    let all: Vec<_> = c.client.conversations(&c.auth, &c.ig, None).try_collect().await.unwrap();
    assert_eq!(all.len(), 30);
    let first = c.client.conversations_page(&c.auth, &c.ig, None, None).await.unwrap();
    assert_eq!(first.value.data.len(), 25);
    assert!(first.value.next_cursor().is_some());
    // Most recent first.
    let newest = c.client.conversation_with(&c.auth, &c.ig, &users[29]).await.unwrap().value.unwrap();
    assert_eq!(all[0].id, newest.id);
    assert!(all[0].updated_time.as_deref().unwrap().ends_with("+0000"));
    let none = c.client.conversation_with(&c.auth, "me", &c.ig).await;
    assert!(none.is_err());
}

#[tokio::test]
async fn messages_of_a_conversation_and_details_only_for_the_20_most_recent() {
    let c = start().await;
    let (user, first_mid) = c.dm("6100000000000301", "first").await;
    for i in 0..21 {
        c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, format!("reply {i}"))).await.unwrap();
    }
    let conv = c.client.conversation_with(&c.auth, &c.ig, &user).await.unwrap().value.unwrap();
    let page = c.client.conversation_messages(&c.auth, &conv.id).await.unwrap();
    assert_eq!(page.value.id, conv.id);
    assert_eq!(page.value.messages.data.len(), 22);
    let all: Vec<_> = c.client.all_conversation_messages(&c.auth, &conv.id).try_collect().await.unwrap();
    assert_eq!(all.len(), 22);
    assert_eq!(all.last().unwrap().id, first_mid, "newest first");
    let newest = c.client.message_details(&c.auth, &all[0].id).await.unwrap().value;
    assert_eq!(newest.message.as_deref(), Some("reply 20"));
    assert_eq!(newest.from.unwrap().id, c.ig);
    assert_eq!(newest.to.unwrap().data[0].id, user);
    c.client.message_details(&c.auth, &all[19].id).await.unwrap();
    let e = c.client.message_details(&c.auth, &first_mid).await.unwrap_err();
    assert_err(&e, 9000001, None, permanent());
}

#[tokio::test]
async fn messages_of_a_conversation_page_by_cursor() {
    let c = start().await;
    let (user, first_mid) = c.dm("6100000000000311", "first").await;
    for i in 0..29 {
        c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&user, format!("reply {i}"))).await.unwrap();
    }
    let conv = c.client.conversation_with(&c.auth, &c.ig, &user).await.unwrap().value.unwrap();
    // 30 messages: a first page of Meta's default 25, then the rest by cursor.
    let first = c.client.conversation_messages_page(&c.auth, &conv.id, None, None).await.unwrap().value;
    assert_eq!(first.data.len(), 25);
    let cursor = first.next_cursor().expect("a second page");
    let second = c.client.conversation_messages_page(&c.auth, &conv.id, Some(&cursor), None).await.unwrap().value;
    assert_eq!(second.data.len(), 5);
    assert_eq!(second.next_cursor(), None, "last page");
    assert_eq!(second.data.last().unwrap().id, first_mid, "newest first");
    // The cursor of the conversation's embedded first page continues on the edge too.
    let embedded = c.client.conversation_messages(&c.auth, &conv.id).await.unwrap().value.messages;
    assert_eq!(embedded.data, first.data);
    let cursor = embedded.next_cursor().expect("a second page");
    let again = c.client.conversation_messages_page(&c.auth, &conv.id, Some(&cursor), None).await.unwrap().value;
    assert_eq!(again.data, second.data);
    // An explicit limit, and every id exactly once across the pages.
    let mut ids = Vec::new();
    let mut after = None::<String>;
    loop {
        let page = c.client.conversation_messages_page(&c.auth, &conv.id, after.as_deref(), Some(7)).await.unwrap();
        assert!(page.value.data.len() <= 7);
        ids.extend(page.value.data.iter().map(|m| m.id.clone()));
        match page.value.next_cursor() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let all: Vec<String> =
        c.client.all_conversation_messages(&c.auth, &conv.id).map_ok(|m| m.id).try_collect().await.unwrap();
    assert_eq!(ids, all);
    assert_eq!(ids.len(), 30);
    let e = c.client.conversation_messages_page(&c.auth, "../x", None, None).await.unwrap_err();
    assert!(matches!(e, GraphError::InvalidArgument(_)), "{e:?}");
}

#[tokio::test]
async fn user_profile_needs_consent_and_hides_blocked_users() {
    let c = start().await;
    c.emu.admin.post("/_admin/users", &json!({"id": "6100000000000401", "username": "peter_chang_live", "name": "Peter Chang", "follower_count": 1234, "is_business_follow_user": true})).await.unwrap();
    let (cid, _) = c.comment("6100000000000401", "nice").await;
    let _ = cid;
    let e = c.client.user_profile(&c.auth, "6100000000000401").await.unwrap_err();
    assert_err(&e, 230, None, permanent());
    c.dm("6100000000000401", "hi").await;
    let p = c.client.user_profile(&c.auth, "6100000000000401").await.unwrap().value;
    assert_eq!(p.name.as_deref(), Some("Peter Chang"));
    assert_eq!(p.username.as_deref(), Some("peter_chang_live"));
    assert_eq!(p.follower_count, Some(1234));
    assert_eq!(p.is_business_follow_user, Some(true));
    assert_eq!(p.is_user_follow_business, Some(false));
    assert!(p.profile_pic.is_some());
    c.client
        .moderate_conversations(
            &c.page_auth,
            &c.page,
            &["6100000000000401".into()],
            &[ModerationAction::BlockUser],
            true,
        )
        .await
        .unwrap();
    let e = c.client.user_profile(&c.auth, "6100000000000401").await.unwrap_err();
    assert_err(&e, 100, Some(33), permanent());
}

#[tokio::test]
async fn moderate_conversations_blocks_unblocks_and_moves_to_spam_within_metas_rules() {
    let c = start().await;
    let (u1, _) = c.dm("6100000000000501", "spam spam").await;
    let (u2, _) = c.dm("6100000000000502", "spam too").await;
    let r = c
        .client
        .moderate_conversations(
            &c.page_auth,
            &c.page,
            &[u1.clone(), u2.clone()],
            &[ModerationAction::BlockUser, ModerationAction::MoveToSpam],
            true,
        )
        .await
        .unwrap();
    assert!(r.value.success);
    let acct = c.emu.admin.get(&format!("/_admin/accounts/{}", c.ig)).await.unwrap();
    assert_eq!(acct["blocked"], json!([u1, u2]));
    assert_eq!(acct["spam"], json!([u1, u2]));
    // Blocked: no sending, no receiving.
    let e = c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&u1, "x")).await.unwrap_err();
    assert_err(&e, 551, Some(1545041), permanent());
    assert!(c.emu.admin.simulate_dm(&c.ig, &u1, "let me in").await.is_err());
    c.client
        .moderate_conversations(
            &c.page_auth,
            &c.page,
            std::slice::from_ref(&u1),
            &[ModerationAction::UnblockUser],
            true,
        )
        .await
        .unwrap();
    c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&u1, "unblocked")).await.unwrap();

    // Meta's batching rules, checked by the client before any call...
    let eleven: Vec<String> = (0..11).map(|i| format!("61000000000005{i:02}")).collect();
    let e = c
        .client
        .moderate_conversations(&c.page_auth, &c.page, &eleven, &[ModerationAction::BlockUser], true)
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::InvalidArgument(_)));
    // ...and by the emulator when sent anyway, with code 100.
    let e = c
        .client
        .moderate_conversations(&c.page_auth, &c.page, &eleven, &[ModerationAction::BlockUser], false)
        .await
        .unwrap_err();
    assert_err(&e, 100, None, permanent());
    let three = [ModerationAction::BlockUser, ModerationAction::MoveToSpam, ModerationAction::MoveToSpam];
    let e = c
        .client
        .moderate_conversations(&c.page_auth, &c.page, std::slice::from_ref(&u1), &three, false)
        .await
        .unwrap_err();
    assert_err(&e, 100, None, permanent());
    let both = [ModerationAction::BlockUser, ModerationAction::UnblockUser];
    let e = c
        .client
        .moderate_conversations(&c.page_auth, &c.page, std::slice::from_ref(&u1), &both, false)
        .await
        .unwrap_err();
    assert_err(&e, 100, None, permanent());
    let e = c
        .client
        .moderate_conversations(&c.page_auth, &c.page, &["nobody".into()], &[ModerationAction::BlockUser], true)
        .await
        .unwrap_err();
    assert_err(&e, 100, None, permanent());
    // A user without a conversation: code 1, which Meta says to retry one user at a time.
    c.emu.admin.post("/_admin/users", &json!({"id": "6100000000000599"})).await.unwrap();
    let e = c
        .client
        .moderate_conversations(
            &c.page_auth,
            &c.page,
            &["6100000000000599".into()],
            &[ModerationAction::BlockUser],
            true,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some((1, None)));
    assert_eq!(e.class(), ErrorClass::Transient);
    // An Instagram token cannot address the Page.
    let e = c
        .client
        .moderate_conversations(&c.auth, &c.page, std::slice::from_ref(&u2), &[ModerationAction::UnblockUser], true)
        .await
        .unwrap_err();
    assert_err(&e, 100, Some(33), permanent());
}

#[tokio::test]
async fn comments_list_reply_hide_delete_and_disable() {
    let c = start().await;
    let (cid, media) = c.comment("6100000000000601", "so cool!").await;
    c.comment("6100000000000602", "äöå 😀").await;
    let list: Vec<_> = c.client.comments(&c.auth, &media).try_collect().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, cid);
    assert_eq!(list[0].text.as_deref(), Some("so cool!"));
    assert_eq!(list[1].text.as_deref(), Some("äöå 😀"));
    assert!(list[0].from.as_ref().unwrap().username.is_some());
    let reply = c.client.reply_to_comment(&c.auth, &cid, "Thanks for your comment!").await.unwrap().value;
    let replies: Vec<_> = c.client.replies(&c.auth, &cid).try_collect().await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].id, reply.id);
    // Only top-level comments take replies.
    let e = c.client.reply_to_comment(&c.auth, &reply.id, "nested").await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    // The owner's own comments cannot be hidden.
    let e = c.client.set_comment_hidden(&c.auth, &reply.id, true).await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    assert!(c.client.set_comment_hidden(&c.auth, &cid, true).await.unwrap().value.success);
    let e = c.client.reply_to_comment(&c.auth, &cid, "to hidden").await.unwrap_err();
    assert_err(&e, 100, None, permanent());
    let listed: Vec<_> = c.client.comments(&c.auth, &media).try_collect().await.unwrap();
    assert_eq!(listed[0].hidden, Some(true));
    c.client.set_comment_hidden(&c.auth, &cid, false).await.unwrap();
    assert!(c.client.delete_comment(&c.auth, &cid).await.unwrap().value.success);
    let after: Vec<_> = c.client.comments(&c.auth, &media).try_collect().await.unwrap();
    assert_eq!(after.len(), 1);
    let e = c.client.delete_comment(&c.auth, &cid).await.unwrap_err();
    assert_err(&e, 100, Some(33), permanent());
    assert!(c.client.set_comments_enabled(&c.auth, &media, false).await.unwrap().value.success);
    assert!(c.emu.admin.simulate("comment", &json!({"account": c.ig, "media_id": media, "text": "x"})).await.is_err());
    c.client.set_comments_enabled(&c.auth, &media, true).await.unwrap();
    c.emu.admin.simulate("comment", &json!({"account": c.ig, "media_id": media, "text": "x"})).await.unwrap();
}

#[tokio::test]
async fn unanswered_requests_idle_30_days_are_not_listed_and_account_info_resolves_me() {
    let c = start().await;
    let (answered, _) = c.dm("6100000000000701", "hi").await;
    c.client.send_message(&c.auth, &c.ig, &SendRequest::text(&answered, "hello")).await.unwrap();
    c.dm("6100000000000702", "anyone?").await;
    c.emu.advance(31 * 24 * 3_600_000);
    let all: Vec<_> = c.client.conversations(&c.auth, &c.ig, None).try_collect().await.unwrap();
    assert_eq!(all.len(), 1);
    let me = c.client.account_info(&c.auth, "me").await.unwrap().value;
    assert_eq!(me.id, c.ig);
    assert_eq!(me.username.as_deref(), Some("emulated.business"));
    assert_eq!(me.account_type.as_deref(), Some("BUSINESS"));
}

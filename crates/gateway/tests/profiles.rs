#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! ProfilesService: the gateway forwards to enrich (running in-process on the same NATS) over
//! NATS request/reply.

mod support;

use std::time::Duration;

use igrelay_core::v1::{ForgetUserRequest, GetUserProfileRequest, NotEnrichedReason};
use support::*;
use tonic::Code;
use tonic_types::StatusExt;

/// User Profile API calls the emulator saw.
async fn profile_calls(stack: &Stack) -> u64 {
    stack.emulator.admin.calls_to("user_profile").await.unwrap()
}

/// Waits (bounded) until enrich has stored `n` enriched events: their senders' consent is
/// recorded and their profiles cached by then.
async fn enriched(stack: &Stack, n: u64) {
    for _ in 0..400 {
        if let Ok(mut s) = stack.nats.js.get_stream("IGRELAY_ENRICHED").await
            && s.info().await.is_ok_and(|i| i.state.messages >= n)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("IGRELAY_ENRICHED never held {n} messages");
}

fn get(igsid: &str, refresh: bool) -> GetUserProfileRequest {
    GetUserProfileRequest { account_id: ACCOUNT.into(), igsid: igsid.into(), refresh }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_on_demand_and_forgetting_a_user() {
    let stack = Stack::start().await;
    stack.register_default().await;
    stack.start_enrich().await;
    let user = "5500000000000071";
    stack.emulator.admin.simulate_dm(ACCOUNT, user, "hi there").await.unwrap();
    enriched(&stack, 1).await;
    let mut profiles = stack.profiles();

    // Cached while the message was enriched; profiles:read is enough.
    let got = profiles.get_user_profile(req(get(user, false), PROFILES_READER_KEY)).await.unwrap().into_inner();
    let profile = got.profile.expect("a profile");
    assert_eq!(profile.igsid, user);
    assert_eq!(profile.account_id, ACCOUNT);
    assert!(!profile.username.is_empty(), "{profile:?}");
    assert!(got.from_cache);
    assert_eq!(profile_calls(&stack).await, 1);
    // refresh asks Meta again; profiles:admin implies profiles:read.
    let fresh = profiles.get_user_profile(req(get(user, true), ADMIN_KEY)).await.unwrap().into_inner();
    assert!(!fresh.from_cache);
    assert_eq!(fresh.profile.unwrap().username, profile.username);
    assert_eq!(profile_calls(&stack).await, 2);

    // Forget: the cached profile and the consent are gone.
    let forgot = profiles
        .forget_user(req(ForgetUserRequest { igsid: user.into(), account_id: ACCOUNT.into() }, ADMIN_KEY))
        .await
        .unwrap()
        .into_inner();
    assert!(!forgot.confirmation_code.is_empty());
    assert!(forgot.status_url.ends_with(&forgot.confirmation_code), "{forgot:?}");
    assert!(forgot.entries_purged >= 2, "{forgot:?}");
    assert!(forgot.error.is_empty());
    let kv = stack.nats.js.get_key_value("igrelay_profiles").await.unwrap();
    assert_eq!(kv.get(format!("p.{ACCOUNT}.{user}")).await.unwrap(), None);
    assert_eq!(kv.get(format!("c.{ACCOUNT}.{user}")).await.unwrap(), None);
    // Without consent enrich does not look the user up: FAILED_PRECONDITION with the reason.
    let e = profiles.get_user_profile(req(get(user, false), ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let info = e.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, NotEnrichedReason::NoConsent.as_str_name());
    assert_eq!(profile_calls(&stack).await, 2);

    // The user writes again: consent again, and the profile is looked up again.
    stack.emulator.admin.simulate_dm(ACCOUNT, user, "me again").await.unwrap();
    enriched(&stack, 2).await;
    let again = profiles.get_user_profile(req(get(user, false), ADMIN_KEY)).await.unwrap().into_inner();
    assert_eq!(again.profile.unwrap().igsid, user);
    assert_eq!(profile_calls(&stack).await, 3);

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_calls_need_their_scope_and_the_account() {
    let stack = Stack::start().await;
    stack.register_default().await;
    stack.start_enrich().await;
    let mut profiles = stack.profiles();
    let user = "5500000000000081";
    let forget = || ForgetUserRequest { igsid: user.into(), account_id: ACCOUNT.into() };

    let e = profiles.get_user_profile(req(get(user, false), READER_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("profiles:read"), "{e:?}");
    let e = profiles.forget_user(req(forget(), PROFILES_READER_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("profiles:admin"), "{e:?}");
    let e = profiles.get_user_profile(req(get(user, false), "")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // A key limited to account 999.
    let e = profiles.get_user_profile(req(get(user, false), LIMITED_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = profiles.forget_user(req(forget(), LIMITED_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = profiles
        .forget_user(req(ForgetUserRequest { igsid: user.into(), account_id: String::new() }, LIMITED_KEY))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // Malformed ids never reach enrich.
    let e = profiles
        .get_user_profile(req(GetUserProfileRequest { account_id: ACCOUNT.into(), ..Default::default() }, ADMIN_KEY))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(e.get_details_bad_request().unwrap().field_violations[0].field, "igsid");
    // A user who never wrote: no consent, no Graph call.
    let e = profiles.get_user_profile(req(get(user, false), ADMIN_KEY)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(profile_calls(&stack).await, 0);
    // Forgetting every account's data needs an unrestricted key; forgetting an unknown user works.
    let forgot = profiles
        .forget_user(req(ForgetUserRequest { igsid: user.into(), account_id: String::new() }, ADMIN_KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forgot.entries_purged, 0);
    assert!(!forgot.confirmation_code.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_enrich_profile_calls_are_unavailable() {
    let stack = Stack::start().await;
    stack.register_default().await;
    let mut profiles = stack.profiles();
    let e = profiles.get_user_profile(req(get("5500000000000091", false), ADMIN_KEY)).await.unwrap_err();
    assert!(matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded), "{e:?}");
    let e = profiles
        .forget_user(req(ForgetUserRequest { igsid: "5500000000000091".into(), account_id: String::new() }, ADMIN_KEY))
        .await
        .unwrap_err();
    assert!(matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded), "{e:?}");
    stack.stop().await;
}

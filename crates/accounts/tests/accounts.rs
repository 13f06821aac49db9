//! The registry against a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use igrelay_accounts::{AccountStore, AccountsConfig, Keyring, TokenKeyConfig};
use igrelay_core::v1::{Account, AccountStatus, LoginType};
use igrelay_runtime::Secret;
use igrelay_testkit::Nats;

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";

fn keys(list: &[(&str, &str)]) -> Keyring {
    let cfg = AccountsConfig {
        token_keys: list.iter().map(|(id, k)| TokenKeyConfig { id: (*id).into(), key: Secret::new(*k) }).collect(),
    };
    Keyring::from_config(&cfg).unwrap()
}

fn account(id: &str) -> Account {
    Account {
        account_id: id.into(),
        login_type: LoginType::Instagram as i32,
        app_id: "app".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn tokens_are_encrypted_at_rest_and_keys_rotate() {
    let nats = Nats::start().await.unwrap();
    let topo = igrelay_bus::TopologyConfig::default();
    let store = AccountStore::open(&nats.js, &topo, keys(&[("a", KEY_A)])).await.unwrap();
    store.put(account("17841400000000001"), "IGQVJ-secret-token").await.unwrap();

    // The raw KV value does not contain the token.
    let raw = store.kv().get("17841400000000001").await.unwrap().unwrap();
    assert!(!raw.windows(10).any(|w| w == b"IGQVJ-secr"));

    let (acct, token) = store.credentials("17841400000000001").await.unwrap().unwrap();
    assert_eq!(token.expose(), "IGQVJ-secret-token");
    assert_eq!(acct.status, AccountStatus::Active as i32);
    assert!(!format!("{acct:?} {token:?}").contains("IGQVJ"), "never in Debug output");

    // Rotation: new key first, old key still decrypts; a store with only the new key cannot.
    let rotated = AccountStore::open(&nats.js, &topo, keys(&[("b", KEY_B), ("a", KEY_A)])).await.unwrap();
    assert_eq!(rotated.credentials("17841400000000001").await.unwrap().unwrap().1.expose(), "IGQVJ-secret-token");
    rotated.put(account("17841400000000002"), "second").await.unwrap();
    let only_b = AccountStore::open(&nats.js, &topo, keys(&[("b", KEY_B)])).await.unwrap();
    assert_eq!(only_b.credentials("17841400000000002").await.unwrap().unwrap().1.expose(), "second");
    let err = only_b.credentials("17841400000000001").await.unwrap_err().to_string();
    assert!(err.contains("\"a\"") && err.contains("not configured"), "{err}");
    let wrong = AccountStore::open(&nats.js, &topo, keys(&[("a", KEY_B)])).await.unwrap();
    assert!(wrong.credentials("17841400000000001").await.unwrap_err().to_string().contains("cannot be decrypted"));
}

#[tokio::test]
async fn status_changes_list_and_remove() {
    let nats = Nats::start().await.unwrap();
    let store =
        AccountStore::open(&nats.js, &igrelay_bus::TopologyConfig::default(), keys(&[("a", KEY_A)])).await.unwrap();
    store.put(account("17841400000000001"), "t1").await.unwrap();
    store.put(account("17841400000000002"), "t2").await.unwrap();

    let (prev, acct) = store
        .set_status("17841400000000001", AccountStatus::NeedsReauth, "(#190) token expired")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(prev, AccountStatus::Active);
    assert_eq!(acct.status_reason, "(#190) token expired");
    assert!(
        store.set_status("17841400000000001", AccountStatus::NeedsReauth, "again").await.unwrap().is_none(),
        "no change, no event"
    );
    assert!(store.set_status("nope", AccountStatus::Paused, "").await.unwrap().is_none());

    // A new token makes it active again.
    store.put(account("17841400000000001"), "t1-new").await.unwrap();
    assert_eq!(store.get("17841400000000001").await.unwrap().unwrap().status, AccountStatus::Active as i32);

    let ids: Vec<_> = store.list().await.unwrap().into_iter().map(|a| a.account_id).collect();
    assert_eq!(ids, ["17841400000000001", "17841400000000002"]);
    assert!(store.remove("17841400000000002").await.unwrap());
    assert!(!store.remove("17841400000000002").await.unwrap());
    assert!(store.get("17841400000000002").await.unwrap().is_none());
    assert!(store.put(account("bad.id"), "t").await.is_err());
}

#[test]
fn bad_keys_are_named() {
    let cfg = |k: &str| AccountsConfig { token_keys: vec![TokenKeyConfig { id: "k".into(), key: Secret::new(k) }] };
    assert!(Keyring::from_config(&AccountsConfig::default()).unwrap_err().to_string().contains("accounts.token_keys"));
    assert!(Keyring::from_config(&cfg("not base64!")).unwrap_err().to_string().contains("base64"));
    assert!(Keyring::from_config(&cfg("AAAA")).unwrap_err().to_string().contains("32 bytes"));
}

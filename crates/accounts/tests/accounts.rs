//! The registry against a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use bytes::Bytes;
use igrelay_accounts::{AccountStore, AccountsConfig, Keyring, TokenKeyConfig};
use igrelay_core::v1::{Account, AccountStatus, LoginType, StoredAccount};
use igrelay_runtime::Secret;
use igrelay_testkit::Nats;
use prost::Message as _;

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";

fn keys(list: &[(&str, &str)]) -> Keyring {
    let cfg = AccountsConfig {
        token_keys: list.iter().map(|(id, k)| TokenKeyConfig { id: (*id).into(), key: Secret::new(*k) }).collect(),
        ..Default::default()
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
    let cfg = |k: &str| AccountsConfig {
        token_keys: vec![TokenKeyConfig { id: "k".into(), key: Secret::new(k) }],
        ..Default::default()
    };
    assert!(Keyring::from_config(&AccountsConfig::default()).unwrap_err().to_string().contains("accounts.token_keys"));
    assert!(Keyring::from_config(&cfg("not base64!")).unwrap_err().to_string().contains("base64"));
    assert!(Keyring::from_config(&cfg("AAAA")).unwrap_err().to_string().contains("32 bytes"));
}

const A: &str = "17841400000000001";
const B: &str = "17841400000000002";

/// A record copied under another account's key is refused, whether or not its embedded id was
/// rewritten too: the id check catches the plain copy, the associated data the rewritten one.
#[tokio::test]
async fn a_record_moved_to_another_account_does_not_read() {
    let nats = Nats::start().await.unwrap();
    let store =
        AccountStore::open(&nats.js, &igrelay_bus::TopologyConfig::default(), keys(&[("a", KEY_A)])).await.unwrap();
    store.put(account(A), "token-of-a").await.unwrap();
    store.put(account(B), "token-of-b").await.unwrap();
    let raw = store.kv().get(A).await.unwrap().unwrap();

    // A's record, as it is, under B's key.
    store.kv().put(B, raw.clone()).await.unwrap();
    let err = store.credentials(B).await.unwrap_err().to_string();
    assert!(err.contains(B) && err.contains(&format!("names account \"{A}\"")), "{err}");
    assert!(store.get(B).await.is_err(), "get returned a record naming another account");
    // The bad record is left out of the list, the good one is listed.
    let listed: Vec<_> = store.list().await.unwrap().into_iter().map(|a| a.account_id).collect();
    assert_eq!(listed, [A]);

    // A's record rewritten to name B: its ciphertext is still bound to A.
    let mut moved = StoredAccount::decode(raw).unwrap();
    moved.account.as_mut().unwrap().account_id = B.into();
    store.kv().put(B, Bytes::from(moved.encode_to_vec())).await.unwrap();
    let err = store.credentials(B).await.unwrap_err().to_string();
    assert!(err.contains("cannot be decrypted"), "{err}");
    // A itself still reads.
    assert_eq!(store.credentials(A).await.unwrap().unwrap().1.expose(), "token-of-a");
}

/// Records written before tokens were bound (no associated data) are refused with a message
/// naming the migration switch; with it, they are read and re-encrypted bound when the store
/// opens, after which they read without it.
#[tokio::test]
async fn unbound_tokens_are_migrated_only_when_allowed() {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let nats = Nats::start().await.unwrap();
    let topo = igrelay_bus::TopologyConfig::default();
    let store = AccountStore::open(&nats.js, &topo, keys(&[("a", KEY_A)])).await.unwrap();
    // As an older igrelay wrote it.
    let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, KEY_A).unwrap();
    let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key).unwrap();
    let nonce = [7u8; 12];
    let legacy = StoredAccount {
        account: Some(Account { status: AccountStatus::Active as i32, ..account(A) }),
        token_ciphertext: cipher.encrypt((&nonce).into(), b"old-token".as_ref()).unwrap(),
        token_nonce: nonce.to_vec(),
        token_key_id: "a".into(),
        token_aad_version: 0,
    };
    store.kv().put(A, Bytes::from(legacy.encode_to_vec())).await.unwrap();
    let err = store.credentials(A).await.unwrap_err().to_string();
    assert!(err.contains("accounts.accept_unbound_tokens"), "{err}");

    let migrating = AccountsConfig {
        token_keys: vec![TokenKeyConfig { id: "a".into(), key: Secret::new(KEY_A) }],
        accept_unbound_tokens: true,
    };
    let migrated = AccountStore::open(&nats.js, &topo, Keyring::from_config(&migrating).unwrap()).await.unwrap();
    assert_eq!(migrated.credentials(A).await.unwrap().unwrap().1.expose(), "old-token");
    let stored = StoredAccount::decode(store.kv().get(A).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored.token_aad_version, 1);
    assert_eq!(store.credentials(A).await.unwrap().unwrap().1.expose(), "old-token");
}

/// `put_at` applies only at the revision it read: a removal or a new registration in between
/// wins.
#[tokio::test]
async fn put_at_never_undoes_a_removal_or_a_newer_write() {
    let nats = Nats::start().await.unwrap();
    let store =
        AccountStore::open(&nats.js, &igrelay_bus::TopologyConfig::default(), keys(&[("a", KEY_A)])).await.unwrap();
    store.put(account(A), "t1").await.unwrap();
    let (acct, _, revision) = store.credentials_at(A).await.unwrap().unwrap();
    store.put(account(A), "t2-registered").await.unwrap();
    let err = store.put_at(acct.clone(), "t1-refreshed", revision).await.unwrap_err();
    assert!(matches!(err, igrelay_accounts::AccountsError::Changed(_)), "{err}");
    assert_eq!(store.credentials(A).await.unwrap().unwrap().1.expose(), "t2-registered");

    let (acct, _, revision) = store.credentials_at(A).await.unwrap().unwrap();
    assert!(store.remove(A).await.unwrap());
    assert!(store.put_at(acct.clone(), "t2-refreshed", revision).await.is_err());
    assert!(store.get(A).await.unwrap().is_none(), "the removal was undone");
    // A status meant for a replaced token is not applied to its successor.
    store.put(account(A), "t3").await.unwrap();
    let (_, _, revision) = store.credentials_at(A).await.unwrap().unwrap();
    store.put(account(A), "t4").await.unwrap();
    assert!(store.set_status_at(A, AccountStatus::NeedsReauth, "refused", Some(revision)).await.unwrap().is_none());
    assert_eq!(store.get(A).await.unwrap().unwrap().status, AccountStatus::Active as i32);
}

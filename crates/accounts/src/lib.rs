//! The account registry every service shares: one KV entry per Instagram professional account
//! (bucket `igrelay_accounts`, key = account id), its access token encrypted with
//! ChaCha20-Poly1305 under a key from configuration. Several keys may be configured: the first
//! encrypts, all decrypt, so keys can be rotated (tokens are re-encrypted when next written).
//!
//! Each ciphertext is bound to its record: the AEAD associated data is the account id and the key
//! id, so a record copied (or rewritten) under another account's key does not decrypt, and a
//! record whose embedded id differs from its key is refused before that.

use std::collections::HashMap;

use async_nats::jetstream::kv;
use base64::Engine as _;
use bytes::Bytes;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use futures::StreamExt;
use igrelay_bus::TopologyConfig;
use igrelay_bus::topology::KvDef;
use igrelay_core::v1::{Account, AccountStatus, StoredAccount};
use igrelay_runtime::Secret;
use prost::Message as _;

/// One encryption key: an id (kept next to each ciphertext) and 32 bytes, base64.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKeyConfig {
    pub id: String,
    /// 32 random bytes, standard base64 (e.g. `openssl rand -base64 32`).
    pub key: Secret,
}

/// `[accounts]`: how tokens are protected at rest.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// The first key encrypts; every key decrypts. Required wherever tokens are stored or used.
    pub token_keys: Vec<TokenKeyConfig>,
    /// Migration from igrelay versions that stored tokens without associated data: when set,
    /// such records are still read, and `AccountStore::open` re-encrypts them bound to their
    /// account. Off by default, because an unbound record could be moved to another account.
    pub accept_unbound_tokens: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("invalid configuration: accounts.token_keys: {0}")]
    Config(String),
    #[error("account store: {0}")]
    Kv(String),
    #[error("account {account}: stored value cannot be decoded: {reason}")]
    Decode { account: String, reason: String },
    #[error(
        "account {account}: token was encrypted with key {key_id:?}, which is not configured in accounts.token_keys"
    )]
    UnknownKey { account: String, key_id: String },
    #[error("account {account}: token cannot be decrypted with key {key_id:?} (wrong key material?)")]
    Decrypt { account: String, key_id: String },
    #[error(
        "account {key}: the stored record names account {stored:?}; refusing it (a record copied under another account's key?)"
    )]
    Mismatch { key: String, stored: String },
    #[error(
        "account {0}: token was stored by an older igrelay without account binding; set accounts.accept_unbound_tokens = true once to read and re-encrypt such tokens"
    )]
    Unbound(String),
    #[error("account {0} changed while this update was prepared (removed or registered again); update not applied")]
    Changed(String),
    #[error("account {0} is not registered")]
    NotFound(String),
    #[error("account id {0:?} is not valid: {1}")]
    InvalidId(String, igrelay_core::IdError),
}

/// The configured keys.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: HashMap<String, ChaCha20Poly1305>,
    accept_unbound: bool,
}

/// `StoredAccount.token_aad_version` of tokens bound to their account.
const BOUND: u32 = 1;

/// Associated data binding a ciphertext to its account and key.
fn aad(account: &str, key_id: &str) -> Vec<u8> {
    format!("igrelay/account-token/v1\0{account}\0{key_id}").into_bytes()
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("current", &self.current).field("keys", &self.keys.len()).finish()
    }
}

impl Keyring {
    pub fn from_config(cfg: &AccountsConfig) -> Result<Self, AccountsError> {
        let first = cfg.token_keys.first().ok_or_else(|| {
            AccountsError::Config(
                "at least one key is required (32 random bytes, base64: `openssl rand -base64 32`)".into(),
            )
        })?;
        let mut keys = HashMap::new();
        for k in &cfg.token_keys {
            if k.id.is_empty() {
                return Err(AccountsError::Config("every key needs a non-empty id".into()));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(k.key.expose().trim())
                .map_err(|_| AccountsError::Config(format!("key {:?} is not valid base64", k.id)))?;
            if bytes.len() != 32 {
                return Err(AccountsError::Config(format!("key {:?} must be 32 bytes, is {}", k.id, bytes.len())));
            }
            if keys.insert(k.id.clone(), ChaCha20Poly1305::new(Key::from_slice(&bytes))).is_some() {
                return Err(AccountsError::Config(format!("key id {:?} appears twice", k.id)));
            }
        }
        Ok(Self { current: first.id.clone(), keys, accept_unbound: cfg.accept_unbound_tokens })
    }

    /// Encrypts `plaintext` for `account` into `stored`'s token fields.
    fn seal(&self, account: &str, plaintext: &str, stored: &mut StoredAccount) {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = aad(account, &self.current);
        // Encryption with a valid key and in-memory buffers does not fail.
        let ct = self
            .keys
            .get(&self.current)
            .and_then(|c| c.encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: &aad }).ok())
            .unwrap_or_default();
        stored.token_ciphertext = ct;
        stored.token_nonce = nonce.to_vec();
        stored.token_key_id = self.current.clone();
        stored.token_aad_version = BOUND;
    }

    fn decrypt(&self, account: &str, stored: &StoredAccount) -> Result<String, AccountsError> {
        if stored.token_aad_version != BOUND && !self.accept_unbound {
            return Err(AccountsError::Unbound(account.into()));
        }
        let cipher = self.keys.get(&stored.token_key_id).ok_or_else(|| AccountsError::UnknownKey {
            account: account.into(),
            key_id: stored.token_key_id.clone(),
        })?;
        let fail = || AccountsError::Decrypt { account: account.into(), key_id: stored.token_key_id.clone() };
        if stored.token_nonce.len() != 12 {
            return Err(fail());
        }
        let aad = aad(account, &stored.token_key_id);
        let aad: &[u8] = if stored.token_aad_version == BOUND { &aad } else { &[] };
        let pt = cipher
            .decrypt(Nonce::from_slice(&stored.token_nonce), Payload { msg: &stored.token_ciphertext, aad })
            .map_err(|_| fail())?;
        String::from_utf8(pt).map_err(|_| fail())
    }
}

/// The registry.
#[derive(Debug, Clone)]
pub struct AccountStore {
    kv: kv::Store,
    keyring: Keyring,
}

impl AccountStore {
    /// Opens (creating if needed) the accounts bucket.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        topology: &TopologyConfig,
        keyring: Keyring,
    ) -> Result<Self, AccountsError> {
        let kv = igrelay_bus::ensure_kv(js, topology, KvDef::Accounts)
            .await
            .map_err(|e| AccountsError::Kv(e.to_string()))?;
        let store = Self { kv, keyring };
        if store.keyring.accept_unbound {
            store.bind_unbound().await?;
        }
        Ok(store)
    }

    /// Re-encrypts every token stored without associated data, bound to its account
    /// (compare-and-swap: a record written meanwhile is left to its writer). Returns how many.
    async fn bind_unbound(&self) -> Result<usize, AccountsError> {
        let mut keys = self.kv.keys().await.map_err(|e| AccountsError::Kv(e.to_string()))?;
        let mut ids = Vec::new();
        while let Some(key) = keys.next().await {
            ids.push(key.map_err(|e| AccountsError::Kv(e.to_string()))?);
        }
        let mut bound = 0;
        for id in ids {
            let Some((mut stored, revision)) = self.load(&id).await? else { continue };
            if stored.token_aad_version == BOUND {
                continue;
            }
            let token = self.keyring.decrypt(&id, &stored)?;
            self.keyring.seal(&id, &token, &mut stored);
            match self.kv.update(&id, Bytes::from(stored.encode_to_vec()), revision).await {
                Ok(_) => bound += 1,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(AccountsError::Kv(e.to_string())),
            }
        }
        if bound > 0 {
            tracing::info!(bound, "re-encrypted tokens stored without account binding");
        }
        Ok(bound)
    }

    /// Registers or updates an account with a new token. The account becomes active.
    pub async fn put(&self, account: Account, token: &str) -> Result<Account, AccountsError> {
        let (account, value) = self.seal_active(account, token)?;
        self.kv.put(&account.account_id, value).await.map_err(|e| AccountsError::Kv(e.to_string()))?;
        Ok(account)
    }

    /// As `put`, but only if the account's record is still at `revision` (from
    /// `credentials_at`): `Changed` when it was removed or written meanwhile, so a slow writer
    /// (a token refresh) never undoes a removal or a new registration.
    pub async fn put_at(&self, account: Account, token: &str, revision: u64) -> Result<Account, AccountsError> {
        let (account, value) = self.seal_active(account, token)?;
        match self.kv.update(&account.account_id, value, revision).await {
            Ok(_) => Ok(account),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(AccountsError::Changed(account.account_id))
            }
            Err(e) => Err(AccountsError::Kv(e.to_string())),
        }
    }

    /// The active account and its encoded record with `token` sealed in.
    fn seal_active(&self, mut account: Account, token: &str) -> Result<(Account, Bytes), AccountsError> {
        igrelay_core::ids::check_token(&account.account_id)
            .map_err(|e| AccountsError::InvalidId(account.account_id.clone(), e))?;
        account.status = AccountStatus::Active as i32;
        account.status_reason.clear();
        account.updated_time = Some(igrelay_core::time::now());
        let mut stored = StoredAccount { account: Some(account.clone()), ..Default::default() };
        self.keyring.seal(&account.account_id, token, &mut stored);
        Ok((account, Bytes::from(stored.encode_to_vec())))
    }

    async fn load(&self, id: &str) -> Result<Option<(StoredAccount, u64)>, AccountsError> {
        if igrelay_core::ids::check_token(id).is_err() {
            return Ok(None);
        }
        let entry = self.kv.entry(id).await.map_err(|e| AccountsError::Kv(e.to_string()))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let stored = StoredAccount::decode(e.value.clone())
                    .map_err(|err| AccountsError::Decode { account: id.into(), reason: err.to_string() })?;
                // The key is what callers asked for; a record naming another account is refused.
                let named = stored.account.as_ref().map(|a| a.account_id.as_str()).unwrap_or_default();
                if named != id {
                    return Err(AccountsError::Mismatch { key: id.into(), stored: named.into() });
                }
                Ok(Some((stored, e.revision)))
            }
            _ => Ok(None),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Account>, AccountsError> {
        Ok(self.load(id).await?.and_then(|(s, _)| s.account))
    }

    /// The account and its decrypted token.
    pub async fn credentials(&self, id: &str) -> Result<Option<(Account, Secret)>, AccountsError> {
        Ok(self.credentials_at(id).await?.map(|(a, t, _)| (a, t)))
    }

    /// The account, its decrypted token, and the record's revision (for `put_at` and
    /// `set_status_at`).
    pub async fn credentials_at(&self, id: &str) -> Result<Option<(Account, Secret, u64)>, AccountsError> {
        let Some((stored, revision)) = self.load(id).await? else {
            return Ok(None);
        };
        let token = self.keyring.decrypt(id, &stored)?;
        Ok(stored.account.map(|a| (a, Secret::new(token), revision)))
    }

    /// Changes an account's status (compare-and-swap, so concurrent writers do not lose a new
    /// token). Returns the previous status and the account, or `None` if the status was
    /// already `status` or the account does not exist.
    pub async fn set_status(
        &self,
        id: &str,
        status: AccountStatus,
        reason: &str,
    ) -> Result<Option<(AccountStatus, Account)>, AccountsError> {
        self.set_status_at(id, status, reason, None).await
    }

    /// As `set_status`, but with `Some(revision)` only while the record is still at that
    /// revision (`None` otherwise: a status meant for a token that was replaced or removed
    /// meanwhile is not applied to its successor).
    pub async fn set_status_at(
        &self,
        id: &str,
        status: AccountStatus,
        reason: &str,
        expected: Option<u64>,
    ) -> Result<Option<(AccountStatus, Account)>, AccountsError> {
        for _ in 0..10 {
            let Some((mut stored, revision)) = self.load(id).await? else {
                return Ok(None);
            };
            if expected.is_some_and(|r| r != revision) {
                return Ok(None);
            }
            let Some(account) = stored.account.as_mut() else {
                return Ok(None);
            };
            let previous = AccountStatus::try_from(account.status).unwrap_or(AccountStatus::Unspecified);
            if previous == status {
                return Ok(None);
            }
            account.status = status as i32;
            account.status_reason = reason.to_owned();
            account.updated_time = Some(igrelay_core::time::now());
            let account = account.clone();
            match self.kv.update(id, Bytes::from(stored.encode_to_vec()), revision).await {
                Ok(_) => return Ok(Some((previous, account))),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(AccountsError::Kv(e.to_string())),
            }
        }
        Err(AccountsError::Kv(format!("account {id}: status update kept conflicting with other writers")))
    }

    pub async fn list(&self) -> Result<Vec<Account>, AccountsError> {
        let mut keys = self.kv.keys().await.map_err(|e| AccountsError::Kv(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| AccountsError::Kv(e.to_string()))?;
            match self.get(&key).await {
                Ok(Some(a)) => out.push(a),
                Ok(None) => {}
                // One bad record does not hide the others; it is refused, not listed.
                Err(e @ (AccountsError::Mismatch { .. } | AccountsError::Decode { .. })) => {
                    tracing::error!(error = %e, "account record skipped");
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        Ok(out)
    }

    pub async fn remove(&self, id: &str) -> Result<bool, AccountsError> {
        if self.get(id).await?.is_none() {
            return Ok(false);
        }
        self.kv.purge(id).await.map_err(|e| AccountsError::Kv(e.to_string()))?;
        Ok(true)
    }

    /// The underlying bucket, to watch for changes (a new token resumes a paused account).
    pub fn kv(&self) -> &kv::Store {
        &self.kv
    }
}

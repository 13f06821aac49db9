//! API keys and scopes. Keys are configured by their SHA-256 only; a presented key is hashed and
//! compared with every configured hash in constant time.

use std::collections::HashSet;

use igrelay_core::v1::Caller;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tonic::{Request, Status};

use crate::config::ApiKeyConfig;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// List accounts and read their status.
    AccountsRead,
    /// Register and remove accounts (implies accounts:read).
    AccountsAdmin,
    /// Send commands and read their outcomes.
    MessagesSend,
    /// Read conversations and messages through the Graph API.
    ConversationsRead,
    /// Stream events.
    EventsRead,
    /// Read users' profiles (through enrich).
    ProfilesRead,
    /// Forget users (implies profiles:read).
    ProfilesAdmin,
}

impl Scope {
    const ALL: [Scope; 7] = [
        Self::AccountsRead,
        Self::AccountsAdmin,
        Self::MessagesSend,
        Self::ConversationsRead,
        Self::EventsRead,
        Self::ProfilesRead,
        Self::ProfilesAdmin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::AccountsRead => "accounts:read",
            Self::AccountsAdmin => "accounts:admin",
            Self::MessagesSend => "messages:send",
            Self::ConversationsRead => "conversations:read",
            Self::EventsRead => "events:read",
            Self::ProfilesRead => "profiles:read",
            Self::ProfilesAdmin => "profiles:admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|s| s.name()).collect()
    }
}

#[derive(Debug, Clone)]
struct Key {
    id: String,
    hash: [u8; 32],
    scopes: HashSet<Scope>,
    accounts: Option<HashSet<String>>,
}

/// The configured keys.
#[derive(Debug, Clone)]
pub struct Authenticator {
    keys: Vec<Key>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    scopes: HashSet<Scope>,
    accounts: Option<HashSet<String>>,
}

impl Authenticator {
    /// From validated configuration (entries that do not parse are skipped).
    pub fn new(keys: &[ApiKeyConfig]) -> Self {
        let keys = keys
            .iter()
            .filter_map(|k| {
                let bytes = hex::decode(k.sha256.trim()).ok()?;
                let hash: [u8; 32] = bytes.try_into().ok()?;
                Some(Key {
                    id: k.id.clone(),
                    hash,
                    scopes: k.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
                    accounts: (!k.accounts.is_empty()).then(|| k.accounts.iter().cloned().collect()),
                })
            })
            .collect();
        Self { keys }
    }

    /// The caller of `req`: UNAUTHENTICATED without a key or with an unknown one.
    pub fn authenticate<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let md = req.metadata();
        let presented = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let v = v.trim();
                v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim())
            })
            .or_else(|| md.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "an API key is required: metadata `authorization: Bearer <key>` or `x-api-key: <key>`",
                )
            })?;
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let k = self.find(&hash).ok_or_else(|| Status::unauthenticated("unknown API key"))?;
        Ok(Principal { key_id: k.id.clone(), scopes: k.scopes.clone(), accounts: k.accounts.clone() })
    }
}

impl Authenticator {
    /// The key whose hash is `hash`. Every configured hash is compared in constant time
    /// (`subtle`), and the match is selected without a branch on which one it was, so the time
    /// taken says nothing about the presented key.
    fn find(&self, hash: &[u8; 32]) -> Option<&Key> {
        let mut index = 0u32;
        let mut found = subtle::Choice::from(0);
        for (i, k) in self.keys.iter().enumerate() {
            let eq = k.hash.ct_eq(hash);
            index.conditional_assign(&(i as u32), eq);
            found |= eq;
        }
        bool::from(found).then(|| self.keys.get(index as usize)).flatten()
    }
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        let implied_by = match scope {
            Scope::AccountsRead => Some(Scope::AccountsAdmin),
            Scope::ProfilesRead => Some(Scope::ProfilesAdmin),
            _ => None,
        };
        self.scopes.contains(&scope) || implied_by.is_some_and(|s| self.scopes.contains(&s))
    }

    /// PERMISSION_DENIED unless the key carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), Status> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!("API key {:?} lacks scope {}", self.key_id, scope.name())))
        }
    }

    pub fn may_act_for(&self, account: &str) -> bool {
        self.accounts.as_ref().is_none_or(|a| a.contains(account))
    }

    /// PERMISSION_DENIED unless the key may act for `account`.
    pub fn require_account(&self, account: &str) -> Result<(), Status> {
        if self.may_act_for(account) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!("API key {:?} may not act for account {account}", self.key_id)))
        }
    }

    /// The accounts the key is limited to (`None`: all).
    pub fn accounts(&self) -> Option<Vec<String>> {
        self.accounts.as_ref().map(|a| {
            let mut v: Vec<String> = a.iter().cloned().collect();
            v.sort();
            v
        })
    }

    /// Who is asking, for commands and audit records.
    pub fn caller(&self) -> Caller {
        Caller { id: self.key_id.clone(), name: "grpc".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(&[ApiKeyConfig {
            id: "crm".into(),
            sha256: hex::encode(Sha256::digest(b"secret-key")),
            scopes: vec!["accounts:admin".into(), "messages:send".into(), "profiles:admin".into()],
            accounts: vec!["111".into()],
        }])
    }

    #[test]
    fn bearer_and_x_api_key_are_accepted() {
        let a = auth();
        let mut r = Request::new(());
        r.metadata_mut().insert("authorization", "Bearer secret-key".parse().unwrap());
        let p = a.authenticate(&r).unwrap();
        assert_eq!(p.key_id, "crm");
        assert!(p.has(Scope::AccountsRead));
        assert!(!p.has(Scope::EventsRead));
        assert!(p.has(Scope::ProfilesRead) && p.has(Scope::ProfilesAdmin));
        assert!(p.may_act_for("111") && !p.may_act_for("222"));
        let mut r = Request::new(());
        r.metadata_mut().insert("x-api-key", "secret-key".parse().unwrap());
        assert!(a.authenticate(&r).is_ok());
        let mut r = Request::new(());
        r.metadata_mut().insert("x-api-key", "wrong".parse().unwrap());
        assert_eq!(a.authenticate(&r).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(a.authenticate(&Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn the_matching_key_is_found_among_several() {
        let key = |id: &str, secret: &str| ApiKeyConfig {
            id: id.into(),
            sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            scopes: vec!["events:read".into()],
            accounts: vec![],
        };
        let a = Authenticator::new(&[key("first", "k1"), key("middle", "k2"), key("last", "k3")]);
        for (secret, id) in [("k1", "first"), ("k2", "middle"), ("k3", "last")] {
            let mut r = Request::new(());
            r.metadata_mut().insert("x-api-key", secret.parse().unwrap());
            assert_eq!(a.authenticate(&r).unwrap().key_id, id);
        }
        let mut r = Request::new(());
        r.metadata_mut().insert("x-api-key", "k4".parse().unwrap());
        assert!(a.authenticate(&r).is_err());
        assert!(Authenticator::new(&[]).authenticate(&r).is_err());
    }
}

//! Identifiers that travel inside NATS subjects.
//!
//! A subject token may not contain `.`, `*`, `>` or white space; an id that does would split or
//! widen a subject, so ids are checked once, here, before they reach the bus.

use std::fmt;

/// Why a string is not a usable id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("id contains {0:?}, which is not allowed in a NATS subject token (allowed: A-Z a-z 0-9 _ -)")]
    InvalidChar(char),
}

/// Longest id accepted. Instagram ids are ~17 digits; this leaves room for other id schemes.
pub const MAX_ID_LEN: usize = 64;

/// Checks that `s` can be one NATS subject token.
pub fn check_token(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { max: MAX_ID_LEN });
    }
    match s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        Some(c) => Err(IdError::InvalidChar(c)),
        None => Ok(()),
    }
}

/// Appends `bytes` as lower-case hex to `out`. Ids on the webhook path (delivery ids, trace
/// context) are written with this: `hex::encode` goes through a char iterator, several times slower.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    // Through a stack buffer: one `push_str` per 32 bytes instead of a `push` per digit.
    for chunk in bytes.chunks(32) {
        let mut buf = [0u8; 64];
        for (pair, b) in buf.chunks_exact_mut(2).zip(chunk) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
        // Only ASCII digits were written, so this never falls back.
        out.push_str(std::str::from_utf8(&buf[..chunk.len() * 2]).unwrap_or_default());
    }
}

/// `bytes` as lower-case hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// A new unguessable id: 128 bits from the operating system's CSPRNG as 32 lower-case hex
/// digits (a valid subject token). For ids that must not be predictable from earlier ones
/// (command ids, audit ids), unlike a NUID sequence.
pub fn random_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex_lower(&bytes))
}

/// An Instagram professional account id (the IG user id of the business), valid as a subject token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// The token used for events whose account could not be determined (e.g. invalid JSON).
    pub const UNKNOWN: &'static str = "_unknown";

    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        check_token(&s)?;
        Ok(Self(s))
    }

    /// The account for events that name no usable account.
    pub fn unknown() -> Self {
        Self(Self::UNKNOWN.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_lower(&bytes), hex::encode(&bytes));
        assert_eq!(hex_lower(&[]), "");
    }

    #[test]
    fn random_ids_are_128_bit_tokens_and_differ() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(check_token(&a).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn accepts_instagram_ids() {
        assert_eq!(AccountId::parse("17841400000000000").unwrap().as_str(), "17841400000000000");
    }

    #[test]
    fn rejects_subject_metacharacters() {
        assert_eq!(AccountId::parse("a.b"), Err(IdError::InvalidChar('.')));
        assert_eq!(AccountId::parse("*"), Err(IdError::InvalidChar('*')));
        assert_eq!(AccountId::parse(">"), Err(IdError::InvalidChar('>')));
        assert_eq!(AccountId::parse("a b"), Err(IdError::InvalidChar(' ')));
        assert_eq!(AccountId::parse(""), Err(IdError::Empty));
        assert!(matches!(AccountId::parse("x".repeat(65)), Err(IdError::TooLong { .. })));
    }
}

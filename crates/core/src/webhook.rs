//! Meta's webhook signature (`X-Hub-Signature-256`) and Meta's JSON escaping.
//!
//! Meta signs the exact bytes it sends, and it sends non-ASCII characters as `\uXXXX` escapes.
//! Verification must therefore run over the raw body, never over a re-serialisation; anything
//! that plays Meta (the emulator, the tests) must escape the same way before signing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Why a signature was not accepted. The expected value is never part of the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body for any configured app secret")]
    Mismatch,
}

/// The header value Meta would send for `body`: `sha256=<lowercase hex HMAC-SHA256>`.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(app_secret, body)))
}

/// Hex HMAC-SHA256 of `data` keyed with `key` (also Meta's `appsecret_proof` over an access token).
pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    hex::encode(hmac_sha256(key, data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; fall back to an empty
    // MAC input rather than panic if that ever changes.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Checks `header` (the raw header value, if any) against `body` for each of `secrets` in turn,
/// so an app secret can be rotated without downtime. Comparison is constant-time.
pub fn verify<'a>(
    secrets: impl IntoIterator<Item = &'a [u8]>,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    Verifier::new(secrets).verify(header, body)
}

/// Verifies signatures against a fixed set of app secrets. The HMAC key schedule of each secret
/// is computed once here instead of on every delivery.
#[derive(Clone)]
pub struct Verifier {
    macs: Vec<HmacSha256>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("secrets", &self.macs.len()).finish()
    }
}

impl Verifier {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a [u8]>) -> Self {
        // HMAC accepts keys of any length, so `new_from_slice` does not fail in practice.
        Self { macs: secrets.into_iter().filter_map(|s| HmacSha256::new_from_slice(s).ok()).collect() }
    }

    /// See [`verify`].
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_sig = header.strip_prefix(b"sha256=").ok_or(SignatureError::Malformed)?;
        let sig = decode_signature(hex_sig).ok_or(SignatureError::Malformed)?;
        for mac in &self.macs {
            let mut mac = mac.clone();
            mac.update(body);
            // verify_slice compares in constant time.
            if mac.verify_slice(&sig).is_ok() {
                return Ok(());
            }
        }
        Err(SignatureError::Mismatch)
    }
}

/// The 32 bytes of a 64-digit hex signature (either case). The header is not secret, so this
/// need not run in constant time; the comparison with the expected MAC does.
fn decode_signature(hex: &[u8]) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Compares two secrets (a verify token, a signature) without stopping at the first differing
/// byte, through `subtle`. Lengths are not secret (the other side knows them).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.ct_eq(b))
}

/// Serialises `value` as Meta does: compact, with every non-ASCII character as `\uXXXX`
/// (UTF-16 surrogate pairs above U+FFFF).
pub fn to_meta_json(value: &serde_json::Value) -> Vec<u8> {
    let compact = value.to_string();
    escape_non_ascii(&compact).into_bytes()
}

/// Replaces every non-ASCII character of an already-serialised JSON text with `\uXXXX` escapes.
/// Non-ASCII characters can only occur inside JSON strings, so this keeps the JSON equivalent.
pub fn escape_non_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_round_trips_and_rotation_works() {
        let body = br#"{"object":"instagram","entry":[]}"#;
        let header = sign(b"new-secret", body);
        assert!(header.starts_with("sha256=") && header.len() == 71);
        let secrets: [&[u8]; 2] = [b"old-secret", b"new-secret"];
        assert_eq!(verify(secrets, Some(header.as_bytes()), body), Ok(()));
        assert_eq!(verify([b"old-secret".as_slice()], Some(header.as_bytes()), body), Err(SignatureError::Mismatch));
        assert_eq!(verify(secrets, None, body), Err(SignatureError::Missing));
        assert_eq!(verify(secrets, Some(b"sha1=abc"), body), Err(SignatureError::Malformed));
        assert_eq!(verify(secrets, Some(&b"sha256=zz".repeat(8)[..71]), body), Err(SignatureError::Malformed));
        assert_eq!(verify(secrets, Some(&header.as_bytes()[..70]), body), Err(SignatureError::Malformed));
        assert_eq!(verify(secrets, Some(format!("{header}0").as_bytes()), body), Err(SignatureError::Malformed));
        let upper = format!("sha256={}", header["sha256=".len()..].to_ascii_uppercase());
        assert_eq!(verify(secrets, Some(upper.as_bytes()), body), Ok(()), "hex digits in either case");
        let mut flipped = header.clone().into_bytes();
        flipped[70] = if flipped[70] == b'0' { b'1' } else { b'0' };
        assert_eq!(verify(secrets, Some(&flipped), body), Err(SignatureError::Mismatch));
    }

    #[test]
    fn signature_digits_decode_like_the_hex_crate() {
        for c in 0..=255u8 {
            let digits = [c; 64];
            let mut expected = [0u8; 32];
            let ok = hex::decode_to_slice(digits, &mut expected).is_ok();
            assert_eq!(decode_signature(&digits), ok.then_some(expected), "{c}");
        }
    }

    #[test]
    fn one_verifier_serves_many_deliveries() {
        let verifier = Verifier::new([b"a".as_slice(), b"b".as_slice()]);
        for (i, secret) in [b"a", b"b", b"a"].iter().enumerate() {
            let body = format!("{{\"n\":{i}}}");
            let header = sign(*secret, body.as_bytes());
            assert_eq!(verifier.verify(Some(header.as_bytes()), body.as_bytes()), Ok(()));
            assert_eq!(verifier.verify(Some(header.as_bytes()), b"tampered"), Err(SignatureError::Mismatch));
        }
        assert_eq!(format!("{verifier:?}"), "Verifier { secrets: 2 }", "secrets never printed");
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"token", b"tokeN"));
        assert!(!constant_time_eq(b"Token", b"token"));
        assert!(!constant_time_eq(b"token", b"token-longer"), "a prefix is not equal");
        assert!(!constant_time_eq(b"token-longer", b"token"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn known_hmac_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn escapes_like_meta() {
        let v = serde_json::json!({"text": "äöå 😀"});
        assert_eq!(to_meta_json(&v), br#"{"text":"\u00e4\u00f6\u00e5 \ud83d\ude00"}"#.to_vec());
        let back: serde_json::Value = serde_json::from_slice(&to_meta_json(&v)).unwrap();
        assert_eq!(back, v);
    }
}

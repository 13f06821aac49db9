//! A borrowed JSON tree for the webhook parser, built by a small parser of its own into one arena
//! per delivery. Strings point into the request body (only strings with escapes are copied,
//! into the arena) and objects are slices of pairs in body order, so a delivery parses with one
//! allocation. Through `serde_json` (a `Value`, or even a borrowed tree through serde's visitor)
//! this was the largest part of ingest's own CPU per webhook after the signature.
//!
//! It accepts exactly what `serde_json` accepts (RFC 8259, nesting up to 127 levels), tested
//! against it; numbers other than plain integers are read by `serde_json` itself, so they
//! compare equal too. Lookups keep `serde_json`'s rule for a repeated key: the last one wins.

use std::fmt;

use bumpalo::Bump;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Number;

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(&'a str),
    Array(&'a [Json<'a>]),
    Object(&'a [(&'a str, Json<'a>)]),
}

pub const NULL: Json<'static> = Json::Null;

/// Same limit as `serde_json`: deeper input is refused rather than risking the stack.
const MAX_DEPTH: usize = 127;

/// Why a body is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct JsonError {
    pub what: &'static str,
    pub at: usize,
}

impl<'a> Json<'a> {
    /// Parses `body`. Strings without escapes borrow from it; everything else lives in `arena`.
    pub fn parse(body: &'a [u8], arena: &'a Bump) -> Result<Self, JsonError> {
        let text = std::str::from_utf8(body).map_err(|e| JsonError { what: "invalid UTF-8", at: e.valid_up_to() })?;
        let mut p = Parser { text, bytes: body, pos: 0, arena, values: Vec::new(), pairs: Vec::new(), depth: 0 };
        let root = p.value()?;
        p.skip_ws();
        if p.pos != body.len() {
            return Err(p.err("trailing characters"));
        }
        Ok(root)
    }

    /// The value of `key` when `self` is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(pairs) => pairs.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&'a [Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The keys of an object, in body order.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let pairs: &'a [(&'a str, Json<'a>)] = match self {
            Json::Object(pairs) => pairs,
            _ => &[],
        };
        pairs.iter().map(|(k, _)| *k)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    arena: &'a Bump,
    /// Elements of the arrays and objects being parsed, innermost last; moved into the arena
    /// when their container closes, so building a tree needs no allocation per container.
    values: Vec<Json<'a>>,
    pairs: Vec<(&'a str, Json<'a>)>,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError { what, at: self.pos }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    fn value(&mut self) -> Result<Json<'a>, JsonError> {
        match self.peek() {
            None => Err(self.err("unexpected end of input, expected a value")),
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a value")),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Json<'a>, JsonError>) -> Result<Json<'a>, JsonError> {
        if self.depth == MAX_DEPTH {
            return Err(self.err("nesting deeper than 127 levels"));
        }
        self.depth += 1;
        self.pos += 1; // the opening bracket
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn literal(&mut self, word: &'static str, v: Json<'a>) -> Result<Json<'a>, JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("expected a value"))
        }
    }

    fn array(&mut self) -> Result<Json<'a>, JsonError> {
        let start = self.values.len();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(&[]));
        }
        loop {
            let v = self.value()?;
            self.values.push(v);
            if !self.more(b']', "unexpected end of input in an array", "expected `,` or `]` in an array")? {
                break;
            }
        }
        let items = self.arena.alloc_slice_fill_iter(self.values.drain(start..));
        Ok(Json::Array(items))
    }

    fn object(&mut self) -> Result<Json<'a>, JsonError> {
        let start = self.pairs.len();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(&[]));
        }
        loop {
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err("unexpected end of input in an object")),
                Some(_) => return Err(self.err("expected a string key in an object")),
            }
            let key = self.string()?;
            self.expect(b':', "unexpected end of input in an object", "expected `:` after an object key")?;
            let v = self.value()?;
            self.pairs.push((key, v));
            if !self.more(b'}', "unexpected end of input in an object", "expected `,` or `}` in an object")? {
                break;
            }
        }
        let pairs = self.arena.alloc_slice_fill_iter(self.pairs.drain(start..));
        Ok(Json::Object(pairs))
    }

    /// Consumes `byte` (after whitespace), or fails with `at_end` or `other`.
    fn expect(&mut self, byte: u8, at_end: &'static str, other: &'static str) -> Result<(), JsonError> {
        match self.peek() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            None => Err(self.err(at_end)),
            Some(_) => Err(self.err(other)),
        }
    }

    /// After an element: `true` past a `,` (another follows), `false` past `close`.
    fn more(&mut self, close: u8, at_end: &'static str, other: &'static str) -> Result<bool, JsonError> {
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(false);
        }
        self.expect(b',', at_end, other).map(|()| true)
    }

    /// A string starting at the opening quote. The body is valid UTF-8 and quotes and
    /// backslashes are ASCII, so the slices below fall on character boundaries.
    fn string(&mut self) -> Result<&'a str, JsonError> {
        self.pos += 1;
        let start = self.pos;
        self.pos += plain_run(&self.bytes[self.pos..]);
        match self.bytes.get(self.pos) {
            None => Err(self.err("unexpected end of input in a string")),
            Some(b'"') => {
                let s = &self.text[start..self.pos];
                self.pos += 1;
                Ok(s)
            }
            Some(b'\\') => self.escaped_string(start),
            Some(_) => Err(self.err("control character in a string")),
        }
    }

    /// The rest of a string that has escapes, unescaped into the arena.
    fn escaped_string(&mut self, start: usize) -> Result<&'a str, JsonError> {
        let mut out = bumpalo::collections::String::from_str_in(&self.text[start..self.pos], self.arena);
        loop {
            let run = self.pos;
            self.pos += plain_run(&self.bytes[self.pos..]);
            out.push_str(&self.text[run..self.pos]);
            match self.bytes.get(self.pos) {
                None => return Err(self.err("unexpected end of input in a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out.into_bump_str());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.bytes.get(self.pos) {
                        Some(b'u') => {
                            self.pos += 1;
                            out.push(self.unicode_escape()?);
                            continue;
                        }
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        None => return Err(self.err("unexpected end of input in a string")),
                        Some(_) => return Err(self.err("invalid escape in a string")),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(_) => return Err(self.err("control character in a string")),
            }
        }
    }

    /// After `\u`: four hex digits, and for a leading surrogate the `\uXXXX` of its pair.
    /// Leaves `pos` after the last digit.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.err("lone leading surrogate in a \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.err("invalid surrogate pair in a \\u escape"));
                }
                0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.err("lone trailing surrogate in a \\u escape")),
            n => u32::from(n),
        };
        char::from_u32(code).ok_or_else(|| self.err("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let mut n: u16 = 0;
        for _ in 0..4 {
            let d = match self.bytes.get(self.pos) {
                Some(b) => (*b as char).to_digit(16).ok_or_else(|| self.err("invalid \\u escape"))?,
                None => return Err(self.err("unexpected end of input in a string")),
            };
            n = (n << 4) | d as u16;
            self.pos += 1;
        }
        Ok(n)
    }

    fn number(&mut self) -> Result<Json<'a>, JsonError> {
        let start = self.pos;
        let negative = self.bytes[self.pos] == b'-';
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.err("invalid number")),
        }
        let int_digits = self.pos - int_start;
        let mut plain = true;
        if self.bytes.get(self.pos) == Some(&b'.') {
            plain = false;
            self.pos += 1;
            if !self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                return Err(self.err("invalid number: a digit must follow `.`"));
            }
            self.skip_digits();
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            plain = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if !self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                return Err(self.err("invalid number: a digit must follow the exponent"));
            }
            self.skip_digits();
        }
        let digits = &self.text[int_start..self.pos];
        // Plain integers that surely fit are read here (timestamps and ids: nearly every number
        // in a webhook); the rest by serde_json, so large and fractional numbers come out
        // exactly as it reads them.
        if plain && int_digits <= 18 {
            let n: u64 = digits.bytes().fold(0, |n, d| n * 10 + u64::from(d - b'0'));
            if !negative {
                return Ok(Json::Number(n.into()));
            }
            if n != 0 {
                return Ok(Json::Number((-(n as i64)).into()));
            }
        }
        serde_json::from_str::<Number>(&self.text[start..self.pos])
            .map(Json::Number)
            .map_err(|_| JsonError { what: "number out of range", at: start })
    }

    fn skip_digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }
}

/// How many bytes at the start of `bytes` need no attention inside a string: up to the first
/// quote, backslash or control character. Eight bytes at a time (strings are most of a
/// webhook's bytes); the lowest flagged byte of a word is exact, which is all this needs.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Bytes of `x` below `n` (n <= 0x80) get their high bit set.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut done = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let flags = below(x, 0x20) | below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1);
        if flags != 0 {
            return done + (flags.trailing_zeros() / 8) as usize;
        }
        done += 8;
    }
    done + chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(chunks.remainder().len())
}

/// Compact JSON text, as `serde_json` writes it.
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::Str(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in *items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in *pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Parses `body` with this parser and with serde_json and asserts they agree: both refuse
    /// it, or both read the same value.
    fn agrees(body: &[u8]) {
        let arena = Bump::new();
        let ours = Json::parse(body, &arena);
        let theirs = serde_json::from_slice::<Value>(body);
        match (&ours, &theirs) {
            (Ok(j), Ok(v)) => assert_eq!(&serde_json::to_value(j).unwrap(), v, "{}", String::from_utf8_lossy(body)),
            (Err(_), Err(_)) => {}
            _ => panic!("{:?}: ours {ours:?}, serde_json {theirs:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn reads_and_writes_what_serde_json_does() {
        let body = br#"{"a":[1,-2,3.5,true,null,"x\u00e4"],"b":{"c":"d"},"n":18446744073709551615}"#;
        let arena = Bump::new();
        let j = Json::parse(body, &arena).unwrap();
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&j.to_string()).unwrap(), v);
        assert_eq!(j.get("b").and_then(|b| b.get("c")).and_then(Json::as_str), Some("d"));
        assert_eq!(j.get("a").unwrap().as_array().unwrap()[5], Json::Str("xä"));
        assert_eq!(j.keys().collect::<Vec<_>>(), ["a", "b", "n"]);
        assert!(j.get("missing").is_none() && NULL.get("a").is_none());
    }

    #[test]
    fn strings_without_escapes_borrow_from_the_body() {
        let body = br#"{"k":"plain","e":"with\nescape"}"#;
        let arena = Bump::new();
        let j = Json::parse(body, &arena).unwrap();
        let inside = |s: &str| body.as_ptr_range().contains(&s.as_ptr());
        assert!(inside(j.get("k").and_then(Json::as_str).unwrap()));
        assert!(inside(j.keys().next().unwrap()));
        let escaped = j.get("e").and_then(Json::as_str).unwrap();
        assert_eq!(escaped, "with\nescape");
        assert!(!inside(escaped));
    }

    #[test]
    fn the_last_of_repeated_keys_wins_like_serde_json() {
        let arena = Bump::new();
        let j = Json::parse(br#"{"k":1,"k":2}"#, &arena).unwrap();
        assert_eq!(j.get("k"), Some(&Json::Number(2.into())));
        agrees(br#"{"k":1,"k":2}"#);
    }

    #[test]
    fn invalid_json_is_an_error_that_says_where() {
        let arena = Bump::new();
        assert_eq!(
            Json::parse(b"{", &arena).unwrap_err().to_string(),
            "unexpected end of input in an object at byte 1"
        );
        assert_eq!(Json::parse(b"[1,]", &arena).unwrap_err().to_string(), "expected a value at byte 3");
        assert_eq!(Json::parse(b"[1] x", &arena).unwrap_err().to_string(), "trailing characters at byte 4");
        assert!(Json::parse(&[b'['; 200], &arena).is_err(), "recursion limit");
    }

    #[test]
    fn edge_cases_agree_with_serde_json() {
        let cases: &[&[u8]] = &[
            b"",
            b" ",
            b"null",
            b"nul",
            b"nulll",
            b"true",
            b"tru",
            b"false ",
            b" \t\r\n1\n",
            b"\x0c1",
            b"0",
            b"-0",
            b"-0.0",
            b"01",
            b"-01",
            b"1.",
            b".5",
            b"1e",
            b"1e+",
            b"1E-2",
            b"-",
            b"--1",
            b"+1",
            b"1.5e3",
            b"1e400",
            b"-1e400",
            b"1e-400",
            b"123456789012345678",
            b"999999999999999999",
            b"1234567890123456789",
            b"18446744073709551615",
            b"18446744073709551616",
            b"-9223372036854775808",
            b"-9223372036854775809",
            b"0.1",
            b"2.5e-8",
            b"1.7976931348623157e308",
            br#""""#,
            br#"""#,
            br#""\""#,
            br#""\\""#,
            br#""\/""#,
            br#""\b\f\n\r\t""#,
            br#""\x""#,
            br#""\u""#,
            br#""\u00""#,
            br#""\u00e4""#,
            br#""\u00E4""#,
            br#""\ud83d\ude00""#,
            br#""\ud83d""#,
            br#""\ude00""#,
            br#""\ud83dx""#,
            br#""\ud83d\u0041""#,
            br#""\ud83d\n""#,
            br#""\u0000""#,
            b"\"\x01\"",
            b"\"\x7f\"",
            b"\"\xc3\xa4\"",
            b"\"\xc3\"",
            b"\"\xff\"",
            b"\xef\xbb\xbf1",
            b"[]",
            b"[ ]",
            b"[1 2]",
            b"[,]",
            b"[1,,2]",
            b"{}",
            b"{ }",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\" 1}",
            b"{a:1}",
            b"{\"a\":1,}",
            b"{,}",
            b"{\"a\":1 \"b\":2}",
            b"[{\"a\":[{}]}]",
            b"{\"\":\"\"}",
        ];
        for c in cases {
            agrees(c);
        }
        for depth in [126, 127, 128, 129] {
            agrees(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).as_bytes());
            agrees(format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).as_bytes());
        }
    }

    #[test]
    fn plain_run_stops_at_the_first_byte_that_needs_attention() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).unwrap_or(b.len());
        for len in 0..40 {
            for at in 0..=len {
                for stop in [b'"', b'\\', 0x00, 0x1f, b'a', 0x7f, 0xff, 0x20] {
                    let mut b: Vec<u8> = (0..len).map(|i| b"a\xc3\xa4 Z~!#"[i % 8]).collect();
                    if at < len {
                        b[at] = stop;
                        // A byte after the first stop must not matter.
                        if at + 1 < len {
                            b[at + 1] = b'"';
                        }
                    }
                    assert_eq!(plain_run(&b), naive(&b), "{b:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn plain_run_matches_a_byte_by_byte_scan(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let naive = b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).unwrap_or(b.len());
            prop_assert_eq!(plain_run(&b), naive);
        }
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reads_whatever_serde_json_writes(v in arb_value(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_vec_pretty(&v).unwrap() } else { serde_json::to_vec(&v).unwrap() };
            agrees(&text);
        }

        #[test]
        fn agrees_on_damaged_json(v in arb_value(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4)) {
            let mut text = serde_json::to_vec(&v).unwrap();
            for (at, byte, op) in edits {
                let i = at.index(text.len() + 1);
                match op {
                    0 => text.insert(i, byte),
                    1 if i < text.len() => { text.remove(i); }
                    _ if i < text.len() => text[i] = byte,
                    _ => {}
                }
            }
            agrees(&text);
        }

        #[test]
        fn agrees_on_json_like_noise(body in prop::collection::vec(prop::sample::select(b"{}[]\",:\\/ubfnrtlase0123456789.eE+-dD \n\x01\xc3\xa4".to_vec()), 0..48)) {
            agrees(&body);
        }
    }
}

//! Meta sends messaging timestamps in milliseconds and `changes` timestamps in seconds, sometimes
//! as strings, and some Graph API webhooks in the Graph API's own text form
//! (`2021-09-08T06:34:04+0000`). Everything becomes a protobuf `Timestamp` here.

use prost_types::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

/// Values below this are taken as seconds, above as milliseconds. 10^11 s is the year 5138 and
/// 10^11 ms is March 1973, so no real timestamp is ambiguous.
const SECONDS_MS_BOUNDARY: i64 = 100_000_000_000;

/// Normalises a Meta timestamp in seconds or milliseconds to milliseconds since the epoch.
pub fn normalise_to_ms(value: i64) -> i64 {
    if value.abs() < SECONDS_MS_BOUNDARY { value.saturating_mul(1000) } else { value }
}

/// Reads a time Meta wrote as text: digits (seconds or milliseconds since the epoch), or ISO 8601
/// date and time with a zone as the Graph API writes it: `2021-09-08T06:34:04+0000`, also with
/// `Z`, `+00:00`, `+00` or fractional seconds. Returns milliseconds since the epoch; `None` when
/// the text is neither, names an impossible date, has no zone (ambiguous) or lies before 1970.
pub fn parse_meta_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return (n > 0).then(|| normalise_to_ms(n));
    }
    parse_iso8601(text.as_bytes()).filter(|ms| *ms > 0)
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
}

fn parse_iso8601(b: &[u8]) -> Option<i64> {
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if b.len() < 19 || !sep(4, b"-") || !sep(7, b"-") || !sep(10, b"Tt ") || !sep(13, b":") || !sep(16, b":") {
        return None;
    }
    let num = |from: usize, to: usize| digits(&b[from..to]);
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|d| d.is_ascii_digit()).count();
        let first = &frac[..n.min(3)];
        millis = digits(first)? * 10i64.pow(3 - first.len() as u32);
        rest = &frac[n..];
    }
    let offset_s = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), zone @ ..] => {
            let (h, m) = match zone {
                [_, _] => (digits(zone)?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let s = h * 3600 + m * 60;
            if *sign == b'-' { -s } else { s }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(seconds * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn timestamp_from_ms(ms: i64) -> Timestamp {
    Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

pub fn timestamp_to_ms(ts: &Timestamp) -> i64 {
    ts.seconds.saturating_mul(1000).saturating_add(i64::from(ts.nanos) / 1_000_000)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn now() -> Timestamp {
    timestamp_from_ms(now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_normalise_to_the_same_instant() {
        assert_eq!(normalise_to_ms(1_743_480_368), 1_743_480_368_000);
        assert_eq!(normalise_to_ms(1_743_480_368_714), 1_743_480_368_714);
        let ts = timestamp_from_ms(1_743_480_368_714);
        assert_eq!((ts.seconds, ts.nanos), (1_743_480_368, 714_000_000));
        assert_eq!(timestamp_to_ms(&ts), 1_743_480_368_714);
    }

    #[test]
    fn graph_api_time_text_is_read() {
        // 2021-09-08T06:34:04Z is 1631082844 s after the epoch.
        let want = Some(1_631_082_844_000);
        assert_eq!(parse_meta_time("2021-09-08T06:34:04+0000"), want);
        assert_eq!(parse_meta_time("2021-09-08T06:34:04Z"), want);
        assert_eq!(parse_meta_time("2021-09-08T06:34:04+00:00"), want);
        assert_eq!(parse_meta_time("2021-09-08T08:34:04+0200"), want);
        assert_eq!(parse_meta_time("2021-09-08T01:34:04-05"), want);
        assert_eq!(parse_meta_time("2021-09-08T06:34:04.250Z"), Some(1_631_082_844_250));
        assert_eq!(parse_meta_time("2021-09-08T06:34:04.5+0000"), Some(1_631_082_844_500));
        assert_eq!(parse_meta_time("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_meta_time("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(parse_meta_time(" 1631082844 "), want);
        assert_eq!(parse_meta_time("1631082844000"), want);
    }

    #[test]
    fn unreadable_time_text_is_none() {
        for bad in [
            "",
            "yesterday",
            "0",
            "-5",
            "2021-09-08T06:34:04",
            "2021-09-08T06:34:04+",
            "2021-09-08T06:34:04+00000",
            "2021-09-08T06:34:04 +0000",
            "2021-13-08T06:34:04Z",
            "2023-02-29T06:34:04Z",
            "2021-09-31T06:34:04Z",
            "2021-09-08T24:00:00Z",
            "2021-09-08T06:60:04Z",
            "2021-09-08T06:34:04.Z",
            "2021-09-08T06:34:04+2400",
            "1969-12-31T23:59:59Z",
            "2021/09/08T06:34:04Z",
        ] {
            assert_eq!(parse_meta_time(bad), None, "{bad:?}");
        }
    }
}

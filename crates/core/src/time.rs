//! Meta sends messaging timestamps in milliseconds and `changes` timestamps in seconds, sometimes
//! as strings. Everything becomes a protobuf `Timestamp` here.

use prost_types::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

/// Values below this are taken as seconds, above as milliseconds. 10^11 s is the year 5138 and
/// 10^11 ms is March 1973, so no real timestamp is ambiguous.
const SECONDS_MS_BOUNDARY: i64 = 100_000_000_000;

/// Normalises a Meta timestamp in seconds or milliseconds to milliseconds since the epoch.
pub fn normalise_to_ms(value: i64) -> i64 {
    if value.abs() < SECONDS_MS_BOUNDARY { value.saturating_mul(1000) } else { value }
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
}

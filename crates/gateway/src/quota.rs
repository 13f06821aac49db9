//! Per-caller bounds on what a caller holds open: StreamEvents calls and outcome waits per API
//! key. One key at its bound gets RESOURCE_EXHAUSTED with `google.rpc.RetryInfo`; other keys are
//! not affected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// How long a refused caller is asked to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Counts what each API key holds of one resource, up to `max`.
#[derive(Debug)]
pub struct PerKey {
    /// What is counted, for messages ("open StreamEvents calls").
    what: &'static str,
    /// The configuration key of the bound, for messages.
    config_key: &'static str,
    max: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One unit held by a key; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<PerKey>,
    key_id: String,
}

impl PerKey {
    pub fn new(what: &'static str, config_key: &'static str, max: usize) -> Arc<Self> {
        Arc::new(Self { what, config_key, max, held: Mutex::new(HashMap::new()) })
    }

    /// A slot for `key_id`, or RESOURCE_EXHAUSTED (with RetryInfo) when it holds `max` already.
    pub fn take(self: &Arc<Self>, key_id: &str) -> Result<Slot, Status> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key_id.to_owned()).or_insert(0);
        if *n >= self.max {
            let message = format!(
                "API key {key_id:?} has {} {}, the most gateway.{} allows; close one or retry later",
                *n, self.what, self.config_key
            );
            return Err(Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
            ));
        }
        *n += 1;
        Ok(Slot { owner: self.clone(), key_id: key_id.to_owned() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_each_key_separately_and_gives_slots_back() {
        let q = PerKey::new("open StreamEvents calls", "max_streams_per_key", 2);
        let a1 = q.take("a").unwrap();
        let _a2 = q.take("a").unwrap();
        let e = q.take("a").unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(e.message().contains("gateway.max_streams_per_key"), "{e:?}");
        assert_eq!(e.get_details_retry_info().unwrap().retry_delay, Some(RETRY_AFTER));
        let _b = q.take("b").unwrap();
        drop(a1);
        let _a3 = q.take("a").unwrap();
    }
}

//! Dedupe: one key per event and an insert-if-absent store, so no event is processed twice.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

/// A dedupe key: SHA-256 of the `webhook-id` when signed, else of the normalized event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey([u8; 32]);

impl EventKey {
    /// The key of a signed delivery.
    pub fn from_webhook_id(id: &str) -> Self {
        Self(
            Sha256::new()
                .chain_update(b"id:")
                .chain_update(id.as_bytes())
                .finalize()
                .into(),
        )
    }

    /// The key of an unsigned event: its normalized content (so whitespace and key order in the
    /// body do not matter, and `""`/`null` errors are the same event).
    pub fn from_normalized(normalized: &serde_json::Value) -> Self {
        let bytes = serde_json::to_vec(normalized).unwrap_or_default();
        Self(
            Sha256::new()
                .chain_update(b"event:")
                .chain_update(&bytes)
                .finalize()
                .into(),
        )
    }

    /// The key as hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An insert-if-absent store of seen keys. Implement it over Redis or a database to share
/// dedupe across receivers.
pub trait DedupeStore: Send {
    /// Records `key` at `now_unix`; returns `true` if it was not already present (first delivery).
    fn insert_if_absent(&mut self, key: EventKey, now_unix: i64) -> bool;
}

/// A bounded in-memory store: keys expire after `ttl_secs`, and the oldest go first past `capacity`.
#[derive(Debug)]
pub struct MemoryDedupe {
    ttl_secs: i64,
    capacity: usize,
    seen: HashMap<EventKey, i64>,
    order: VecDeque<(i64, EventKey)>,
}

impl MemoryDedupe {
    /// A store keeping keys for `ttl_secs` seconds, at most `capacity` of them (at least 1).
    pub fn new(ttl_secs: i64, capacity: usize) -> Self {
        Self {
            ttl_secs,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

impl Default for MemoryDedupe {
    /// One day, 100 000 keys.
    fn default() -> Self {
        Self::new(86_400, 100_000)
    }
}

impl DedupeStore for MemoryDedupe {
    fn insert_if_absent(&mut self, key: EventKey, now_unix: i64) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            let expired = now_unix.saturating_sub(at) >= self.ttl_secs;
            if !expired && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&old) == Some(&at) {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, now_unix);
        self.order.push_back((now_unix, key));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_capacity() {
        let mut store = MemoryDedupe::new(10, 2);
        let (a, b, c) = (
            EventKey::from_webhook_id("a"),
            EventKey::from_webhook_id("b"),
            EventKey::from_webhook_id("c"),
        );
        assert!(store.insert_if_absent(a, 0));
        assert!(!store.insert_if_absent(a, 5));
        assert!(store.insert_if_absent(a, 10), "expired after the TTL");
        assert!(store.insert_if_absent(b, 11));
        assert!(store.insert_if_absent(c, 12));
        assert_eq!(store.len(), 2);
        assert!(
            store.insert_if_absent(a, 12),
            "evicted as the oldest past capacity"
        );
    }
}

//! Idempotent publishing without Redis: the `Idempotency-Key`s this node has
//! seen, each with a hash of its publish's body and the `201` body it got,
//! so a retry is answered the same and publishes nothing. Pure: the caller
//! passes `now`. Bounded by `MAX_KEYS`, the oldest forgotten first; a key
//! expires `--idempotency-ttl` after its publish, found stale lazily (on
//! lookup, and from the front of the insertion order on each insert), so
//! no timer is needed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Keys remembered at most; past it the oldest is forgotten first. A key
/// costs its channel name and key twice (map and order), its hash and its
/// `201` body: some 300 bytes for short names, so about 30 MB when full,
/// and under 1 KB at the longest names, so at most about 100 MB.
pub const MAX_KEYS: usize = 100_000;

/// The longest `Idempotency-Key`, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// Checks a key's form: 1 to `MAX_KEY_LEN` visible ASCII characters.
pub fn validate_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err("Idempotency-Key must be 1 to 128 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("Idempotency-Key must be visible ASCII, without spaces");
    }
    Ok(())
}

/// A hash of a publish's body, to tell a retry from a different publish
/// under the same key. SHA-1, hex: the same on every node (with Redis,
/// another node compares it), and a collision cannot be chosen by accident.
pub fn body_hash(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

/// What a store knows of a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// Not seen, or expired: publish.
    New,
    /// The same body was published under this key: answer this again.
    Repeat(&'a [u8]),
    /// Another body was published under this key.
    Conflict,
}

/// A key as remembered: its channel and the `Idempotency-Key`.
type Name = (Box<str>, Box<str>);

struct Entry {
    hash: String,
    reply: Box<[u8]>,
    expires: Instant,
}

pub struct Store {
    ttl: Duration,
    max_keys: usize,
    /// By channel and key.
    entries: HashMap<Name, Entry>,
    /// Keys in the order they were remembered, with their expiry: since
    /// every key lives `ttl`, the front is always the first to expire.
    order: VecDeque<(Instant, Name)>,
}

impl Store {
    pub fn new(ttl: Duration) -> Store {
        Store::with_max(ttl, MAX_KEYS)
    }

    fn with_max(ttl: Duration, max_keys: usize) -> Store {
        Store {
            ttl,
            max_keys,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn check(&self, channel: &str, key: &str, hash: &str, now: Instant) -> Seen<'_> {
        // A borrowed lookup of a tuple of boxes needs owned keys; the
        // lookup happens only for publishes that carry a key.
        let k = (Box::from(channel), Box::from(key));
        match self.entries.get(&k) {
            Some(e) if e.expires <= now => Seen::New,
            Some(e) if e.hash == hash => Seen::Repeat(&e.reply),
            Some(_) => Seen::Conflict,
            None => Seen::New,
        }
    }

    /// Remembers a publish's reply under its key, after forgetting what has
    /// expired and, past `max_keys`, the oldest keys.
    pub fn remember(&mut self, channel: &str, key: &str, hash: String, reply: &[u8], now: Instant) {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now && self.order.len() < self.max_keys {
                break;
            }
            let (expires, k) = self.order.pop_front().expect("front exists");
            // A key remembered again since has a later entry; keep that.
            if self.entries.get(&k).is_some_and(|e| e.expires == expires) {
                self.entries.remove(&k);
            }
        }
        let k: Name = (channel.into(), key.into());
        let expires = now + self.ttl;
        self.order.push_back((expires, k.clone()));
        self.entries.insert(
            k,
            Entry {
                hash,
                reply: reply.into(),
                expires,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_keys() {
        let long = "k".repeat(MAX_KEY_LEN);
        let too_long = "k".repeat(MAX_KEY_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("order-42/retry_1", true),
            ("~!@#$%^&*()", true),
            (&long, true),
            (&too_long, false),
            ("", false),
            ("a b", false),
            ("tab\there", false),
            ("caf\u{e9}", false),
        ];
        for (key, ok) in cases {
            assert_eq!(validate_key(key).is_ok(), *ok, "{key:?}");
        }
    }

    #[test]
    fn hashes_tell_bodies_apart() {
        assert_eq!(body_hash(b"a"), body_hash(b"a"));
        assert_ne!(body_hash(b"a"), body_hash(b"b"));
        assert_eq!(body_hash(b"").len(), 40);
    }

    #[test]
    fn repeats_conflicts_and_expiry() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut store = Store::new(ttl);
        let (a, b) = (body_hash(b"a"), body_hash(b"b"));
        assert_eq!(store.check("ch", "k", &a, t0), Seen::New);
        store.remember("ch", "k", a.clone(), b"201 body", t0);
        let cases = [
            ("ch", "k", &a, t0, Seen::Repeat(b"201 body")),
            ("ch", "k", &b, t0, Seen::Conflict),
            ("other", "k", &a, t0, Seen::New),
            ("ch", "k2", &a, t0, Seen::New),
            (
                "ch",
                "k",
                &a,
                t0 + ttl - Duration::from_millis(1),
                Seen::Repeat(b"201 body"),
            ),
            ("ch", "k", &a, t0 + ttl, Seen::New),
            ("ch", "k", &b, t0 + ttl, Seen::New),
        ];
        for (channel, key, hash, now, want) in cases {
            assert_eq!(
                store.check(channel, key, hash, now),
                want,
                "{channel} {key} {now:?}"
            );
        }
    }

    #[test]
    fn forgets_expired_keys_on_insert() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut store = Store::new(ttl);
        store.remember("ch", "a", body_hash(b"a"), b"1", t0);
        store.remember(
            "ch",
            "b",
            body_hash(b"b"),
            b"2",
            t0 + Duration::from_secs(5),
        );
        store.remember("ch", "c", body_hash(b"c"), b"3", t0 + ttl);
        assert_eq!(store.len(), 2, "a expired and was forgotten");
        assert_eq!(store.order.len(), 2);
    }

    #[test]
    fn stays_bounded_forgetting_the_oldest() {
        let t0 = Instant::now();
        let mut store = Store::with_max(Duration::from_secs(60), 3);
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64);
            store.remember("ch", key, body_hash(key.as_bytes()), b"r", now);
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.order.len(), 3);
        let later = t0 + Duration::from_secs(1);
        for (key, kept) in [("a", false), ("b", false), ("c", true), ("e", true)] {
            let seen = store.check("ch", key, &body_hash(key.as_bytes()), later);
            assert_eq!(seen != Seen::New, kept, "{key}");
        }
    }

    #[test]
    fn a_key_remembered_again_keeps_its_new_entry() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut store = Store::new(ttl);
        let a = body_hash(b"a");
        store.remember("ch", "k", a.clone(), b"old", t0);
        // Expired, then published again under the same key.
        store.remember("ch", "k", a.clone(), b"new", t0 + ttl);
        let now = t0 + ttl + Duration::from_secs(1);
        assert_eq!(store.check("ch", "k", &a, now), Seen::Repeat(b"new"));
        store.remember("ch", "x", a.clone(), b"x", now);
        assert_eq!(store.check("ch", "k", &a, now), Seen::Repeat(b"new"));
    }
}

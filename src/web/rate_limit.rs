//! The per-client-address limit on open publishing: each address may publish a burst of `burst`
//! messages, then one per `interval`, and is told how many seconds to wait when it asks for more.
//!
//! It is the Generic Cell Rate Algorithm, a token bucket stored as one instant per address (the
//! "theoretical arrival time" of the next allowed message), so memory is one small map entry per
//! recently active address, and the map has a hard cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::client::client_key;

/// Messages an address may publish at once before it has to slow down.
pub const DEFAULT_BURST: u32 = 10;
/// After a burst, one more message is allowed per this interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Addresses remembered at most. An address whose bucket is full again carries no information and is
/// forgotten when room is needed.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// The answer for one publish attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse with `429` and `Retry-After` set to this many seconds (at least 1).
    RetryAfter(u64),
}

#[derive(Debug)]
pub struct RateLimiter {
    burst: u32,
    interval: Duration,
    max_clients: usize,
    /// Invariant: an entry's instant is when the address's bucket is full again; entries at or before
    /// `now` are equivalent to having no entry.
    full_at: HashMap<IpAddr, Instant>,
    /// When the map is full of active addresses, sweeping it again on every new address would cost a
    /// scan per request; sweeps wait until this instant instead.
    next_sweep: Instant,
}

impl RateLimiter {
    /// `burst` must be at least 1.
    pub fn new(burst: u32, interval: Duration, max_clients: usize, now: Instant) -> RateLimiter {
        assert!(burst >= 1, "a burst of zero would refuse everything");
        RateLimiter {
            burst,
            interval,
            max_clients,
            full_at: HashMap::new(),
            next_sweep: now,
        }
    }

    pub fn with_defaults(now: Instant) -> RateLimiter {
        RateLimiter::new(DEFAULT_BURST, DEFAULT_INTERVAL, DEFAULT_MAX_CLIENTS, now)
    }

    /// Counts one publish from `addr` at `now`, or refuses it. A refused attempt costs nothing, so a
    /// client that retries too early is not pushed further back.
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> Verdict {
        let key = client_key(addr);
        if !self.full_at.contains_key(&key) && self.full_at.len() >= self.max_clients {
            self.sweep(now);
            if self.full_at.len() >= self.max_clients {
                // Admitting the address would mean forgetting one that is being limited right now,
                // which lets a client that rotates addresses reset everybody's limit. Refusing the
                // newcomer keeps both memory and the limit bounded.
                return Verdict::RetryAfter(1);
            }
        }
        // The bucket holds `burst` messages: it is full again `burst * interval` after the last empty
        // moment, and each message moves "full again" one interval further.
        let capacity = self.interval * self.burst;
        let full_at = self
            .full_at
            .get(&key)
            .copied()
            .filter(|&t| t > now)
            .unwrap_or(now);
        let next_full_at = full_at + self.interval;
        if next_full_at > now + capacity {
            let wait = next_full_at - (now + capacity);
            return Verdict::RetryAfter(ceil_secs(wait).max(1));
        }
        self.full_at.insert(key, next_full_at);
        Verdict::Allow
    }

    /// Forgets every address whose bucket is full again. The server may call it now and then; `check`
    /// calls it when the map is full.
    pub fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.full_at.retain(|_, &mut full_at| full_at > now);
        self.next_sweep = now + self.interval;
    }

    /// Addresses remembered now (for `/stats`).
    pub fn n_clients(&self) -> usize {
        self.full_at.len()
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(3, Duration::from_secs(2), 100, t0);
        let a = ip("192.0.2.1");
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // (milliseconds after t0, expected verdict)
        let steps: &[(u64, Verdict)] = &[
            (0, Verdict::Allow),
            (0, Verdict::Allow),
            (0, Verdict::Allow),
            (0, Verdict::RetryAfter(2)),
            (100, Verdict::RetryAfter(2)),
            (1_000, Verdict::RetryAfter(1)),
            (1_999, Verdict::RetryAfter(1)),
            (2_000, Verdict::Allow),
            (2_000, Verdict::RetryAfter(2)),
            (4_000, Verdict::Allow),
            // A long pause refills the bucket, but never beyond the burst.
            (60_000, Verdict::Allow),
            (60_000, Verdict::Allow),
            (60_000, Verdict::Allow),
            (60_000, Verdict::RetryAfter(2)),
        ];
        for (i, &(at, want)) in steps.iter().enumerate() {
            assert_eq!(limiter.check(a, ms(at)), want, "step {i} at {at} ms");
        }
    }

    #[test]
    fn addresses_are_limited_separately() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1, Duration::from_secs(1), 100, t0);
        let cases: &[(&str, Verdict)] = &[
            ("192.0.2.1", Verdict::Allow),
            ("192.0.2.1", Verdict::RetryAfter(1)),
            ("192.0.2.2", Verdict::Allow),
            ("::ffff:192.0.2.1", Verdict::RetryAfter(1)),
            ("2001:db8:1:2::1", Verdict::Allow),
            // Same /64 as the previous address.
            ("2001:db8:1:2:ffff::9", Verdict::RetryAfter(1)),
            ("2001:db8:1:3::1", Verdict::Allow),
        ];
        for &(addr, want) in cases {
            assert_eq!(limiter.check(ip(addr), t0), want, "address {addr}");
        }
    }

    #[test]
    fn memory_is_bounded_and_idle_addresses_are_forgotten() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut limiter = RateLimiter::new(2, second, 3, t0);
        for n in 1..=3 {
            assert_eq!(
                limiter.check(ip(&format!("192.0.2.{n}")), t0),
                Verdict::Allow
            );
        }
        assert_eq!(limiter.n_clients(), 3);
        // Full of active addresses: a newcomer waits, known addresses keep their own limit.
        assert_eq!(limiter.check(ip("192.0.2.9"), t0), Verdict::RetryAfter(1));
        assert_eq!(limiter.check(ip("192.0.2.1"), t0), Verdict::Allow);
        assert_eq!(limiter.n_clients(), 3);
        // Once their buckets are full again they are forgotten and the newcomer gets in.
        let later = t0 + 3 * second;
        assert_eq!(limiter.check(ip("192.0.2.9"), later), Verdict::Allow);
        assert_eq!(limiter.n_clients(), 1);
    }

    #[test]
    fn retry_after_rounds_up() {
        let cases: &[(Duration, u64)] = &[
            (Duration::ZERO, 0),
            (Duration::from_millis(1), 1),
            (Duration::from_millis(1_000), 1),
            (Duration::from_millis(1_001), 2),
        ];
        for &(d, want) in cases {
            assert_eq!(ceil_secs(d), want, "{d:?}");
        }
    }
}

//! How long a Redis link waits before its next reconnect attempt: a ceiling
//! that doubles from `FIRST_DELAY` to `MAX_DELAY`, and a delay drawn uniformly
//! from the upper half of it. The jitter keeps the nodes of a cluster, which
//! all lose Redis at the same moment, from all coming back at the same moment.

use std::time::Duration;

/// The ceiling of the first delay after a link is lost.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The ceiling never grows past this, so a node notices within about five
/// seconds that Redis is back.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Reconnect delays for one link.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The next delay is drawn from `[ceiling / 2, ceiling]`; always within
    /// `FIRST_DELAY..=MAX_DELAY`.
    ceiling: Duration,
    /// xorshift64 state; never zero, or it would stay zero.
    state: u64,
}

impl Backoff {
    /// A back-off whose jitter comes from `seed`: give each node and link a
    /// different one (the process id and the time, say), or they draw the
    /// same delays and reconnect in step.
    pub fn new(seed: u64) -> Backoff {
        // splitmix64's finaliser, so that seeds differing in one bit (two
        // pids in a row) start far apart; `| 1` keeps the state non-zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Backoff {
            ceiling: FIRST_DELAY,
            state: (z ^ (z >> 31)) | 1,
        }
    }

    /// The delay before the next attempt; each call doubles the ceiling for
    /// the one after, up to `MAX_DELAY`. (Not an `Iterator`: the sequence
    /// never ends, so `Option` would only add an `unwrap` at every call.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Duration {
        let high = self.ceiling.as_nanos() as u64;
        let low = high / 2;
        let delay = low + self.random() % (high - low + 1);
        self.ceiling = (self.ceiling * 2).min(MAX_DELAY);
        Duration::from_nanos(delay)
    }

    /// Starts again from `FIRST_DELAY`, once a connection has succeeded.
    pub fn reset(&mut self) {
        self.ceiling = FIRST_DELAY;
    }

    /// Marsaglia's xorshift64: plenty for spreading out reconnects, and no
    /// dependency.
    fn random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ceilings of the first draws: 100 ms doubling, capped at 5 s.
    const CEILINGS_MS: [u64; 9] = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];

    #[test]
    fn delays_lie_in_the_upper_half_of_a_doubling_capped_ceiling() {
        for seed in 0..200 {
            let mut backoff = Backoff::new(seed);
            for ceiling in CEILINGS_MS.map(Duration::from_millis) {
                let delay = backoff.next();
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "seed {seed}: {delay:?} vs {ceiling:?}"
                );
            }
        }
    }

    #[test]
    fn the_ceiling_stays_at_five_seconds() {
        let mut backoff = Backoff::new(7);
        let delays: Vec<Duration> = (0..1000).map(|_| backoff.next()).collect();
        assert!(delays.iter().all(|d| *d <= MAX_DELAY));
        // Past the doubling, draws still cover the upper half of 5 s.
        let late = &delays[10..];
        assert!(late.iter().all(|d| *d >= MAX_DELAY / 2));
        assert!(late.iter().any(|d| *d < Duration::from_millis(2750)));
        assert!(late.iter().any(|d| *d > Duration::from_millis(4750)));
    }

    #[test]
    fn reset_starts_again_at_the_first_delay() {
        let mut backoff = Backoff::new(42);
        for _ in 0..20 {
            backoff.next();
        }
        backoff.reset();
        for ceiling in CEILINGS_MS.map(Duration::from_millis) {
            let delay = backoff.next();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
        }
    }

    #[test]
    fn seeds_give_different_sequences() {
        let draws = |seed| {
            let mut backoff = Backoff::new(seed);
            (0..8).map(|_| backoff.next()).collect::<Vec<_>>()
        };
        assert_ne!(draws(1), draws(2));
        assert_ne!(draws(0), draws(u64::MAX));
        // The same seed, the same sequence: nothing else feeds the jitter.
        assert_eq!(draws(5), draws(5));
    }
}

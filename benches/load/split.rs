//! How N subscribers are shared among worker processes (one process may hold at most its fd
//! limit) and spread over loopback source addresses (one address has only ~28K ephemeral ports
//! towards one server port).

use std::net::Ipv4Addr;
use std::ops::Range;

/// Descriptors a worker keeps for itself: stdio, the epoll instance, and slack.
pub const FD_RESERVE: u64 = 64;

/// Subscribers one process can hold under a hard descriptor limit.
pub fn per_process(hard_fd_limit: u64) -> usize {
    hard_fd_limit.saturating_sub(FD_RESERVE).max(1) as usize
}

/// Splits subscriber indices `0..n` into as few contiguous ranges of at most `cap` as possible,
/// balanced so no process holds more than one more than another.
pub fn split(n: usize, cap: usize) -> Vec<Range<usize>> {
    let k = n.div_ceil(cap.max(1)).max(1);
    let (base, extra) = (n / k, n % k);
    let mut start = 0;
    (0..k)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// The source address for subscriber `i`: 127.1.x.y, cycling over `n_addrs` addresses.
pub fn source_addr(i: usize, n_addrs: usize) -> Ipv4Addr {
    let k = i % n_addrs.clamp(1, 250 * 250);
    Ipv4Addr::new(127, 1, (k / 250) as u8, (k % 250 + 1) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_everything_within_capacity() {
        let cases = [
            (0, 10, 1),
            (1, 10, 1),
            (10, 10, 1),
            (11, 10, 2),
            (19_000, 19_936, 1),
            (25_000, 19_936, 2),
            (50, 7, 8),
        ];
        for (n, cap, want_k) in cases {
            let parts = split(n, cap);
            assert_eq!(parts.len(), want_k, "n={n} cap={cap}");
            assert_eq!(parts.first().unwrap().start, 0);
            assert_eq!(parts.last().unwrap().end, n);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            let lens: Vec<usize> = parts.iter().map(|r| r.len()).collect();
            assert!(lens.iter().all(|&l| l <= cap), "{lens:?}");
            assert!(
                lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1,
                "{lens:?}"
            );
        }
    }

    #[test]
    fn capacity_leaves_a_reserve() {
        assert_eq!(per_process(20_000), 19_936);
        assert_eq!(per_process(10), 1);
    }

    #[test]
    fn source_addresses_cycle_within_127_1() {
        assert_eq!(source_addr(0, 64), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source_addr(63, 64), Ipv4Addr::new(127, 1, 0, 64));
        assert_eq!(source_addr(64, 64), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source_addr(251, 1000), Ipv4Addr::new(127, 1, 1, 2));
    }
}

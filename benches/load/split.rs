//! How N subscribers are shared among the servers they subscribe to (the nodes of a cluster) and
//! among worker processes (one process may hold at most its fd limit), and spread over loopback
//! source addresses (one address has only ~28K ephemeral ports towards one server port).

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

/// One worker process's share: subscriber indices `subs`, all subscribing at the `url`-th address.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub url: usize,
    pub subs: Range<usize>,
}

/// Splits subscriber indices `0..n` into `n_urls` contiguous, balanced groups, one per address
/// (so each node of a cluster holds its share), and each group into workers of at most `cap`.
/// Indices stay global, so every subscriber keeps its own source address.
pub fn split_over(n: usize, n_urls: usize, cap: usize) -> Vec<Part> {
    let groups = split(n, n.div_ceil(n_urls.max(1)).max(1));
    let mut parts = Vec::new();
    for (url, group) in groups.into_iter().enumerate() {
        for r in split(group.len(), cap) {
            parts.push(Part {
                url,
                subs: group.start + r.start..group.start + r.end,
            });
        }
    }
    parts
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
    fn splits_over_addresses_half_and_half_then_by_capacity() {
        /// A worker as (address, first subscriber, end).
        type W = (usize, usize, usize);
        // (n, addresses, cap, the workers expected)
        let cases: [(usize, usize, usize, &[W]); 6] = [
            (10_000, 1, 19_936, &[(0, 0, 10_000)]),
            (10_000, 2, 19_936, &[(0, 0, 5_000), (1, 5_000, 10_000)]),
            (10_001, 2, 19_936, &[(0, 0, 5_001), (1, 5_001, 10_001)]),
            (
                25_000,
                2,
                10_000,
                &[
                    (0, 0, 6_250),
                    (0, 6_250, 12_500),
                    (1, 12_500, 18_750),
                    (1, 18_750, 25_000),
                ],
            ),
            (
                9,
                3,
                2,
                &[
                    (0, 0, 2),
                    (0, 2, 3),
                    (1, 3, 5),
                    (1, 5, 6),
                    (2, 6, 8),
                    (2, 8, 9),
                ],
            ),
            // Fewer subscribers than addresses: the last addresses get none rather than empty workers.
            (1, 2, 10, &[(0, 0, 1)]),
        ];
        for (n, n_urls, cap, want) in cases {
            let got: Vec<(usize, usize, usize)> = split_over(n, n_urls, cap)
                .into_iter()
                .map(|p| (p.url, p.subs.start, p.subs.end))
                .collect();
            assert_eq!(got, want, "n={n} urls={n_urls} cap={cap}");
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

//! Which Redis owns a channel when `--redis` names several: a stable hash of
//! the channel's name (FNV-1a, 64 bits) fed to Lamping and Veach's jump
//! consistent hash. Every node must compute the same owner from the name
//! alone, now and in every later version, or a publish on one node and a
//! subscribe on another meet in different Redis servers; the fixed outputs in
//! the tests guard that. Jump hashing moves only about `1/n` of the channels
//! when an `n`th shard is added.

/// The shard, in `0..shards`, that owns `channel`.
///
/// # Panics
/// If `shards` is zero: there is always at least one Redis when this is asked.
pub fn shard_of(channel: &str, shards: usize) -> usize {
    assert!(shards > 0, "shard_of needs at least one shard");
    // More shards than i32 can count is far past anything configurable.
    jump(
        fnv1a64(channel.as_bytes()),
        shards.min(i32::MAX as usize) as i64,
    ) as usize
}

/// FNV-1a, 64 bits.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// Jump consistent hash ("A Fast, Minimal Memory, Consistent Hash
/// Algorithm", Lamping and Veach, 2014): follows `key`'s jumps through the
/// buckets with a 64-bit LCG and returns the last one below `buckets`.
fn jump(mut key: u64, buckets: i64) -> i64 {
    let mut bucket = -1;
    let mut next = 0;
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_its_published_test_vectors() {
        let cases: &[(&str, u64)] = &[
            ("", 0xcbf2_9ce4_8422_2325),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("foobar", 0x8594_4171_f739_67e8),
        ];
        for (text, hash) in cases {
            assert_eq!(fnv1a64(text.as_bytes()), *hash, "{text:?}");
        }
    }

    #[test]
    fn jump_matches_the_reference_implementation() {
        // Outputs of the paper's C++ code for buckets = 1, 2, 3, ...
        let cases: &[(u64, &[i64])] = &[
            (0, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (
                1,
                &[0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17],
            ),
            (
                0xdead_beef,
                &[0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16],
            ),
            (
                0x0ddc_0ffe_ebad_f00d,
                &[0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15],
            ),
        ];
        for (key, buckets) in cases {
            for (i, expected) in buckets.iter().enumerate() {
                assert_eq!(
                    jump(*key, i as i64 + 1),
                    *expected,
                    "key {key:#x}, {} buckets",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn channel_owners_never_change() {
        // If this fails, nodes of different versions disagree about where a
        // channel lives: change the hash only with a migration plan.
        // Owners over 2, 3 and 5 shards.
        let cases: &[(&str, [usize; 3])] = &[
            ("", [1, 1, 1]),
            ("news", [1, 2, 3]),
            ("events", [0, 0, 0]),
            ("chat/room-1", [1, 1, 4]),
            ("/meta/connect", [1, 2, 3]),
            ("/chat/demo", [1, 2, 3]),
            ("stocks/AAPL", [0, 2, 2]),
            ("b", [0, 0, 3]),
            ("\u{e9}t\u{e9}", [0, 0, 4]),
        ];
        for (channel, owners) in cases {
            for (shards, owner) in [2, 3, 5].into_iter().zip(owners) {
                assert_eq!(
                    shard_of(channel, shards),
                    *owner,
                    "{channel:?} over {shards}"
                );
            }
        }
    }

    #[test]
    fn one_shard_owns_everything_and_owners_are_in_range() {
        for i in 0..1000 {
            let channel = format!("channel-{i}");
            assert_eq!(shard_of(&channel, 1), 0);
            for shards in 2..10 {
                assert!(shard_of(&channel, shards) < shards);
            }
        }
    }

    #[test]
    fn two_shards_split_channels_evenly() {
        let on_first = (0..1000)
            .filter(|i| shard_of(&format!("room/{i}"), 2) == 0)
            .count();
        assert!(
            (400..=600).contains(&on_first),
            "{on_first} of 1000 on shard 0"
        );
    }

    #[test]
    fn a_third_shard_takes_channels_only_from_the_others() {
        let mut moved = 0;
        for i in 0..3000 {
            let channel = format!("user.{i}");
            let (before, after) = (shard_of(&channel, 2), shard_of(&channel, 3));
            if before != after {
                assert_eq!(after, 2, "{channel:?} moved between old shards");
                moved += 1;
            }
        }
        // About a third move; jump hashing moves no more than it must.
        assert!((800..=1200).contains(&moved), "{moved} of 3000 moved");
    }
}

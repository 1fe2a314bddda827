//! Bookkeeping of deliveries, kept pure so the rules are testable: which sequence numbers each
//! subscriber has seen (to count duplicates, reordering and losses), when each message reached its
//! last subscriber, and a latency histogram per measured phase.

use crate::hist::Latencies;
use crate::sse::Delivery;

/// How a run numbers its messages: `0..measured` are warm-up (not recorded),
/// `measured..open` are one-at-a-time broadcasts, `open..total` the open-loop schedule, sent
/// round-robin over `publishers` connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub measured: u64,
    pub open: u64,
    pub total: u64,
    pub publishers: u64,
}

impl Bounds {
    /// Reads `W,B,E,P` as written by [`Bounds::encode`].
    pub fn parse(s: &str) -> Option<Bounds> {
        let mut it = s.split(',').map(|v| v.parse::<u64>().ok());
        let b = Bounds {
            measured: it.next()??,
            open: it.next()??,
            total: it.next()??,
            publishers: it.next()??,
        };
        (b.measured <= b.open && b.open <= b.total && b.publishers > 0).then_some(b)
    }

    pub fn encode(&self) -> String {
        format!(
            "{},{},{},{}",
            self.measured, self.open, self.total, self.publishers
        )
    }

    /// Which ordered stream a message belongs to: 0 for the one-at-a-time phase, else its
    /// open-loop publisher connection plus one. Messages of different publishers, in flight at
    /// the same time, have no order the server must keep; those of one publisher do.
    pub fn stream(&self, seq: u64) -> usize {
        if seq < self.open {
            0
        } else {
            1 + ((seq - self.open) % self.publishers) as usize
        }
    }
}

/// What one subscriber has received: a bit per sequence number, and the highest so far from
/// each ordered stream.
#[derive(Debug, Clone)]
pub struct Seen {
    bits: Vec<u64>,
    highest: Vec<Option<u64>>,
}

/// Everything a process learned from its subscribers' deliveries.
pub struct Tally {
    bounds: Bounds,
    /// How many live subscribers have each message, and when the latest of them got it.
    arrived: Vec<u32>,
    last_at: Vec<u64>,
    reported: Vec<bool>,
    pub fanout: Latencies,
    pub open: Latencies,
    /// Deliveries of a message its subscriber had not had yet.
    pub distinct: u64,
    pub duplicate: u64,
    pub out_of_order: u64,
    /// Sequence numbers this run never published.
    pub unknown: u64,
}

impl Tally {
    pub fn new(bounds: Bounds) -> Tally {
        let n = bounds.total as usize;
        Tally {
            bounds,
            arrived: vec![0; n],
            last_at: vec![0; n],
            reported: vec![false; n],
            fanout: Latencies::default(),
            open: Latencies::default(),
            distinct: 0,
            duplicate: 0,
            out_of_order: 0,
            unknown: 0,
        }
    }

    pub fn new_seen(&self) -> Seen {
        Seen {
            bits: vec![0; (self.bounds.total as usize).div_ceil(64)],
            highest: vec![None; 1 + self.bounds.publishers as usize],
        }
    }

    /// Records one delivery received at `now` by a subscriber whose history is `seen`. Returns the
    /// sequence number if this delivery means all `live` subscribers now have it.
    pub fn record(&mut self, seen: &mut Seen, d: Delivery, now: u64, live: u32) -> Option<u64> {
        let seq = d.seq;
        if seq >= self.bounds.total {
            self.unknown += 1;
            return None;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if seen.bits[word] & bit != 0 {
            self.duplicate += 1;
            return None;
        }
        seen.bits[word] |= bit;
        self.distinct += 1;
        let highest = &mut seen.highest[self.bounds.stream(seq)];
        if highest.is_some_and(|h| seq < h) {
            self.out_of_order += 1;
        }
        *highest = Some(highest.map_or(seq, |h| h.max(seq)));
        let latency = now.saturating_sub(d.sent_ns);
        if seq >= self.bounds.open {
            self.open.record(latency);
        } else if seq >= self.bounds.measured {
            self.fanout.record(latency);
        }
        let i = seq as usize;
        self.arrived[i] += 1;
        self.last_at[i] = self.last_at[i].max(now);
        self.complete(i, live)
    }

    fn complete(&mut self, i: usize, live: u32) -> Option<u64> {
        if !self.reported[i] && self.arrived[i] >= live {
            self.reported[i] = true;
            return Some(i as u64);
        }
        None
    }

    /// After a subscriber went away, messages every remaining one has are complete.
    pub fn after_drop(&mut self, live: u32, on_complete: &mut impl FnMut(u64, u64)) {
        for i in 0..self.arrived.len() {
            if self.arrived[i] > 0 && self.complete(i, live).is_some() {
                on_complete(i as u64, self.last_at[i]);
            }
        }
    }

    pub fn last_at(&self, seq: u64) -> u64 {
        self.last_at[seq as usize]
    }

    /// Deliveries that never came, for `held` subscribers and `published` messages.
    pub fn missing(&self, held: u64, published: u64) -> u64 {
        (held * published).saturating_sub(self.distinct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seq: u64) -> Delivery {
        Delivery { seq, sent_ns: 100 }
    }

    #[test]
    fn bounds_round_trip() {
        let b = Bounds {
            measured: 2,
            open: 10,
            total: 30,
            publishers: 8,
        };
        assert_eq!(Bounds::parse(&b.encode()), Some(b));
        assert_eq!(Bounds::parse("3,2,5,1"), None);
        assert_eq!(Bounds::parse("1,2,3,0"), None);
        assert_eq!(Bounds::parse("1,2,3"), None);
        assert_eq!(
            [b.stream(9), b.stream(10), b.stream(17), b.stream(18)],
            [0, 1, 8, 1]
        );
    }

    #[test]
    fn counts_duplicates_reordering_and_losses() {
        let mut t = Tally::new(Bounds {
            measured: 1,
            open: 3,
            total: 5,
            publishers: 1,
        });
        let (mut a, mut b) = (t.new_seen(), t.new_seen());
        // a gets 0,1,2,3,4 in order; b gets 0,2,1,1,9 (a reorder, a duplicate, an unknown, two lost).
        for s in 0..5 {
            t.record(&mut a, d(s), 150, 2);
        }
        for s in [0, 2, 1, 1, 9] {
            t.record(&mut b, d(s), 150, 2);
        }
        assert_eq!(
            (t.distinct, t.duplicate, t.out_of_order, t.unknown),
            (8, 1, 1, 1)
        );
        assert_eq!(t.missing(2, 5), 2);
        // Warm-up (seq 0) is not recorded; 1 and 2 are broadcasts, 3 and 4 open-loop.
        assert_eq!((t.fanout.len(), t.open.len()), (4, 2));
    }

    #[test]
    fn a_message_completes_at_its_last_subscriber() {
        let mut t = Tally::new(Bounds {
            measured: 0,
            open: 2,
            total: 2,
            publishers: 1,
        });
        let (mut a, mut b) = (t.new_seen(), t.new_seen());
        assert_eq!(t.record(&mut a, d(0), 200, 2), None);
        assert_eq!(t.record(&mut b, d(0), 300, 2), Some(0));
        assert_eq!(t.last_at(0), 300);
        // If b drops before seq 1 reaches it, a alone completes it.
        assert_eq!(t.record(&mut a, d(1), 400, 2), None);
        let mut done = Vec::new();
        t.after_drop(1, &mut |s, at| done.push((s, at)));
        assert_eq!(done, [(1, 400)]);
    }

    #[test]
    fn only_messages_of_one_publisher_must_keep_their_order() {
        for (publishers, want) in [(1, 1), (2, 0)] {
            let mut t = Tally::new(Bounds {
                measured: 0,
                open: 0,
                total: 2,
                publishers,
            });
            let mut a = t.new_seen();
            t.record(&mut a, d(1), 150, 1);
            t.record(&mut a, d(0), 150, 1);
            assert_eq!(t.out_of_order, want, "{publishers} publishers");
        }
    }
}

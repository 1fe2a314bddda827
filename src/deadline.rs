//! The one deadline queue: header and idle timeouts, long-poll timeouts, SSE
//! heartbeats, held Bayeux connects, message and session expiry and accept
//! back-off all wait here. It is a min-heap; ties fire in the order they were
//! set. Cancelling is lazy: an owner that moves its deadline just pushes a new
//! entry, and the old one is skipped when it comes up because it no longer
//! matches (see `Server::on_deadline`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::conn_id::ConnId;
use crate::stats::DeadlineCounts;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The connection's own deadline, whose meaning depends on its state.
    Conn(ConnId),
    /// The hub's oldest message may have expired.
    Expiry,
    /// A Bayeux session may have gone too long without connecting.
    SessionExpiry,
    /// Try accepting again after running out of file descriptors.
    ResumeAccept,
    /// Stop waiting for connections to drain during shutdown.
    ShutdownLimit,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    order: u64,
    timer: Timer,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Entry) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

#[derive(Default)]
pub struct Deadlines {
    heap: BinaryHeap<Entry>,
    n_set: u64,
    /// The entries in `heap` by kind, for `/stats`.
    counts: DeadlineCounts,
}

impl Deadlines {
    pub fn set(&mut self, at: Instant, timer: Timer) {
        self.n_set += 1;
        *self.count_of(&timer) += 1;
        self.heap.push(Entry {
            at,
            order: self.n_set,
            timer,
        });
    }

    /// The earliest deadline, which bounds how long the loop may sleep.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    /// Removes and returns the earliest deadline if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        match self.heap.peek() {
            Some(e) if e.at <= now => {
                let e = self.heap.pop().expect("peeked");
                *self.count_of(&e.timer) -= 1;
                Some((e.at, e.timer))
            }
            _ => None,
        }
    }

    /// How many entries wait, by kind.
    pub fn counts(&self) -> DeadlineCounts {
        self.counts
    }

    fn count_of(&mut self, timer: &Timer) -> &mut u64 {
        let c = &mut self.counts;
        match timer {
            Timer::Conn(_) => &mut c.conn,
            Timer::Expiry => &mut c.channel,
            Timer::SessionExpiry => &mut c.session,
            Timer::ResumeAccept | Timer::ShutdownLimit => &mut c.other,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Makes sure `timer` fires by `at` (if any), keeping one entry per
    /// `wakeup`: asking again for the same or a later time adds nothing.
    pub fn wake_by(&mut self, wakeup: &mut Wakeup, at: Option<Instant>, timer: Timer) {
        let Some(at) = at else { return };
        if wakeup.set_for.is_none_or(|set| at < set) {
            wakeup.set_for = Some(at);
            self.set(at, timer);
        }
    }
}

/// The wake-up a component with its own notion of "next expiry" (the hub's
/// messages, the Bayeux engine's sessions) keeps in the queue. When it fires,
/// the owner calls `fired` and asks again for its new next expiry. An entry
/// made obsolete by an earlier one still fires, harmlessly: the owner finds
/// nothing due yet and asks again.
#[derive(Debug, Default)]
pub struct Wakeup {
    set_for: Option<Instant>,
}

impl Wakeup {
    pub fn fired(&mut self) {
        self.set_for = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_time_order_and_ties_in_set_order() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadlines::default();
        let conn = |slot| Timer::Conn(ConnId { slot, gen: 0 });
        d.set(t0 + 2 * s, conn(2));
        d.set(t0 + s, conn(0));
        d.set(t0 + s, conn(1));
        d.set(t0 + 3 * s, Timer::Expiry);
        assert_eq!(d.next(), Some(t0 + s));
        assert_eq!(d.pop_due(t0), None);
        let fired: Vec<_> = std::iter::from_fn(|| d.pop_due(t0 + 2 * s))
            .map(|(_, t)| t)
            .collect();
        assert_eq!(fired, [conn(0), conn(1), conn(2)]);
        assert_eq!(d.len(), 1);
        assert_eq!(d.pop_due(t0 + 3 * s), Some((t0 + 3 * s, Timer::Expiry)));
        assert!(d.is_empty());
    }

    #[test]
    fn a_wakeup_keeps_one_entry_unless_asked_earlier() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadlines::default();
        let mut w = Wakeup::default();
        d.wake_by(&mut w, None, Timer::Expiry);
        assert!(d.is_empty());
        d.wake_by(&mut w, Some(t0 + 5 * s), Timer::Expiry);
        d.wake_by(&mut w, Some(t0 + 5 * s), Timer::Expiry);
        d.wake_by(&mut w, Some(t0 + 9 * s), Timer::Expiry);
        assert_eq!(d.len(), 1);
        d.wake_by(&mut w, Some(t0 + 2 * s), Timer::Expiry);
        assert_eq!((d.len(), d.next()), (2, Some(t0 + 2 * s)));
        w.fired();
        d.wake_by(&mut w, Some(t0 + 9 * s), Timer::Expiry);
        assert_eq!(d.len(), 3);
    }
}

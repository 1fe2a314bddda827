//! The one deadline queue: every timer waits here, from header, idle and
//! long-poll timeouts, SSE heartbeats and held Bayeux connects to channel
//! message expiry, Bayeux session expiry, accept back-off and the shutdown
//! limit. It is a min-heap of `(time, Timer)`; ties fire in the order they
//! were set.
//!
//! Nothing is ever removed early: an entry that no longer matches its owner
//! is skipped when it comes up (lazy cancelling, as in Redis's `ae.c`). So
//! that skipped entries stay few, each owner keeps one live entry:
//! - A connection (`ConnDeadline`): moving its deadline later pushes nothing;
//!   the queued entry comes up early, finds the real deadline later and
//!   queues itself again, once, at it. Moving it earlier pushes a new entry
//!   and keeps the old one as a spare, which the new one hands over to when
//!   it comes up early. So a connection has one live entry and at most one
//!   spare; a deadline moved earlier twice before its entry comes up leaves
//!   one more, stale, which is dropped when it comes up.
//! - A channel name: one entry while its buffer holds messages, set again
//!   when it fires for the channel's next expiry. A channel deleted and
//!   opened again adopts the entry its name already has (see `hub::Hub`).
//! - A Bayeux session: one entry from handshake to end, set again when it
//!   fires for the session's next possible expiry.
//!
//! The hub and the Bayeux engine never see the queue: they leave what they
//! want armed in a `ToArm`, and the server moves it into the queue in the
//! last phase of each loop iteration (`Deadlines::arm`). Times are `Tick`s, whole milliseconds since the
//! queue was made, rounded up so that nothing fires early.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::conn_id::ConnId;
use crate::stats::DeadlineCounts;

/// What a deadline is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The connection's own deadline, whose meaning depends on its state.
    Conn(ConnId),
    /// The oldest message of channel `name` may have expired.
    Channel(Rc<str>),
    /// Bayeux session `id` may have gone too long without connecting.
    /// ClientIds are 128 random bits, never reused, so the id alone names one
    /// session's life.
    Session(Rc<str>),
    /// Try accepting again after running out of file descriptors.
    ResumeAccept,
    /// Stop waiting for connections to drain during shutdown.
    ShutdownLimit,
    /// Check the Redis links: reconnect, fail the overdue, ping the idle
    /// (`--redis` only; one entry, re-armed each time).
    Redis,
}

/// A time in the queue: whole milliseconds since the queue was made, never
/// zero. Eight bytes, where an `Instant` takes sixteen, so that a connection
/// keeps its deadline and two entries' times in the space of one `Instant`
/// (`ConnDeadline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(NonZeroU64);

#[derive(Debug)]
struct Entry {
    at: Tick,
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

pub struct Deadlines {
    /// Where `Tick`s count from.
    start: Instant,
    heap: BinaryHeap<Entry>,
    n_set: u64,
    /// The entries in `heap` by kind, for `/stats`.
    counts: DeadlineCounts,
}

impl Deadlines {
    pub fn new(start: Instant) -> Deadlines {
        Deadlines {
            start,
            heap: BinaryHeap::new(),
            n_set: 0,
            counts: DeadlineCounts::default(),
        }
    }

    /// `at` as a `Tick`, rounded up to the next whole millisecond.
    pub fn tick(&self, at: Instant) -> Tick {
        let since = at.saturating_duration_since(self.start);
        let ms =
            since.as_millis() as u64 + u64::from(!since.subsec_nanos().is_multiple_of(1_000_000));
        Tick(NonZeroU64::new(ms.max(1)).expect("at least 1"))
    }

    fn instant(&self, tick: Tick) -> Instant {
        self.start + Duration::from_millis(tick.0.get())
    }

    pub fn set(&mut self, at: Instant, timer: Timer) {
        self.push(self.tick(at), timer);
    }

    fn push(&mut self, at: Tick, timer: Timer) {
        self.n_set += 1;
        *self.count_of(&timer) += 1;
        self.heap.push(Entry {
            at,
            order: self.n_set,
            timer,
        });
    }

    /// Sets every timer a component asked for, emptying `to_arm`.
    pub fn arm(&mut self, to_arm: &mut ToArm) {
        for (at, timer) in to_arm.0.drain(..) {
            self.set(at, timer);
        }
    }

    /// The earliest deadline, which bounds how long the loop may sleep.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| self.instant(e.at))
    }

    /// Removes and returns the earliest deadline if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Tick, Timer)> {
        match self.heap.peek() {
            Some(e) if self.instant(e.at) <= now => {
                let e = self.heap.pop().expect("peeked");
                *self.count_of(&e.timer) -= 1;
                Some((e.at, e.timer))
            }
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// How many entries wait, by kind; stale ones included, since they take
    /// memory until they come up.
    pub fn counts(&self) -> DeadlineCounts {
        self.counts
    }

    fn count_of(&mut self, timer: &Timer) -> &mut u64 {
        let c = &mut self.counts;
        match timer {
            Timer::Conn(_) => &mut c.conn,
            Timer::Channel(_) => &mut c.channel,
            Timer::Session(_) => &mut c.session,
            Timer::ResumeAccept | Timer::ShutdownLimit | Timer::Redis => &mut c.other,
        }
    }

    /// Moves connection `id`'s deadline to `at`. A deadline at or after its
    /// live entry pushes nothing: that entry re-queues itself when it comes up
    /// (`conn_due`). An earlier one pushes a new live entry, and the old one
    /// becomes the spare.
    pub fn set_conn(&mut self, deadline: &mut ConnDeadline, id: ConnId, at: Instant) {
        let at = self.tick(at);
        if let Some(queued) = deadline.queued.filter(|&queued| at >= queued) {
            if let Some(due_after) = at.after(queued) {
                deadline.due_after = due_after;
                return;
            }
        }
        let spare = deadline.queued.filter(|&queued| queued > at);
        self.push(at, Timer::Conn(id));
        *deadline = ConnDeadline::new(at, at, spare);
    }

    /// A `Timer::Conn(id)` entry set for `at` came up: whether the
    /// connection's deadline is reached (and is now cleared). A live entry
    /// that came up early hands over to the spare if that is not after the
    /// deadline, or else queues itself again at the deadline; any other entry
    /// is stale and dropped.
    pub fn conn_due(&mut self, deadline: &mut ConnDeadline, id: ConnId, at: Tick) -> bool {
        let (Some(queued), Some(due)) = (deadline.queued, deadline.due()) else {
            return false;
        };
        if at != queued {
            if deadline.spare() == Some(at) {
                deadline.spare_after = 0;
            }
            return false;
        }
        if due <= at {
            *deadline = ConnDeadline::default();
            return true;
        }
        *deadline = match deadline.spare() {
            Some(spare) if spare <= due => ConnDeadline::new(spare, due, None),
            spare => {
                self.push(due, Timer::Conn(id));
                ConnDeadline::new(due, due, spare)
            }
        };
        false
    }
}

impl Tick {
    /// How many milliseconds `self` is after `base`, if that fits a `u32`
    /// (49 days).
    fn after(self, base: Tick) -> Option<u32> {
        u32::try_from(self.0.get().checked_sub(base.0.get())?).ok()
    }

    fn plus(self, ms: u32) -> Tick {
        Tick(self.0.saturating_add(u64::from(ms)))
    }
}

/// A connection's deadline as its `Conn` keeps it, in sixteen bytes. One of
/// its entries in the queue is live (`queued`), never after the deadline.
/// When the deadline moves earlier than that, a new entry is pushed and the
/// old one is kept as the spare: when the live entry then comes up early (the
/// connection moved its deadline later again, as a kept-alive connection
/// does with each request), it hands over to the spare instead of pushing a
/// third. So a connection has one live entry and at most one spare; an entry
/// neither live nor spare (left when the deadline moved earlier twice before
/// the live one came up) is stale and dropped when it comes up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnDeadline {
    /// When the live entry comes up; `None`: there is no deadline.
    queued: Option<Tick>,
    /// The deadline, in milliseconds after `queued`.
    due_after: u32,
    /// The spare entry, in milliseconds after `queued`; 0: none.
    spare_after: u32,
}

impl ConnDeadline {
    /// With `queued <= due`, and `due` no more than 49 days after it; a spare
    /// too far away to record is forgotten (and dropped when it comes up).
    fn new(queued: Tick, due: Tick, spare: Option<Tick>) -> ConnDeadline {
        ConnDeadline {
            queued: Some(queued),
            due_after: due.after(queued).expect("due soon after queued"),
            spare_after: spare.and_then(|s| s.after(queued)).unwrap_or(0),
        }
    }

    fn due(&self) -> Option<Tick> {
        self.queued.map(|q| q.plus(self.due_after))
    }

    fn spare(&self) -> Option<Tick> {
        let queued = self.queued?;
        (self.spare_after > 0).then(|| queued.plus(self.spare_after))
    }
}

/// Timers a pure component (the hub, the Bayeux engine) wants set; the
/// server moves them into its queue once per loop iteration, after the
/// other phases (`Deadlines::arm`, from `Server::arm_timers`).
#[derive(Debug, Default)]
pub struct ToArm(Vec<(Instant, Timer)>);

impl ToArm {
    pub fn push(&mut self, at: Instant, timer: Timer) {
        self.0.push((at, timer));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn conn(slot: u32) -> ConnId {
        ConnId { slot, gen: 0 }
    }

    #[test]
    fn fires_in_time_order_and_ties_in_set_order() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0);
        let session = Timer::Session("s".into());
        d.set(t0 + 2 * S, Timer::Conn(conn(2)));
        d.set(t0 + S, Timer::Conn(conn(0)));
        d.set(t0 + S, Timer::Conn(conn(1)));
        d.set(t0 + 3 * S, session.clone());
        assert_eq!(d.next(), Some(t0 + S));
        assert_eq!(d.pop_due(t0), None);
        let fired: Vec<_> = std::iter::from_fn(|| d.pop_due(t0 + 2 * S))
            .map(|(_, t)| t)
            .collect();
        let conns = [conn(0), conn(1), conn(2)].map(Timer::Conn);
        assert_eq!(fired, conns);
        assert_eq!((d.len(), d.counts().session, d.counts().conn), (1, 1, 0));
        assert_eq!(d.pop_due(t0 + 3 * S), Some((d.tick(t0 + 3 * S), session)));
        assert!(d.is_empty());
        assert_eq!(d.counts(), DeadlineCounts::default());
    }

    #[test]
    fn ticks_round_up_so_nothing_fires_early() {
        let t0 = Instant::now();
        let d = Deadlines::new(t0);
        let ms = Duration::from_millis(1);
        for (at, want_ms) in [
            (t0, 1),
            (t0 + ms / 2, 1),
            (t0 + ms, 1),
            (t0 + ms + ms / 1000, 2),
            (t0 + 90 * S, 90_000),
        ] {
            assert_eq!(d.tick(at).0.get(), want_ms, "{:?}", at - t0);
            assert!(d.instant(d.tick(at)) >= at);
        }
    }

    /// A connection's deadline moved around, step by step: after each step,
    /// what `conn_due` says when the entries due by then come up, and how
    /// many entries the queue holds.
    #[test]
    fn a_connection_keeps_one_live_entry() {
        enum Step {
            /// Move the deadline to t0 + this many seconds.
            Set(u32),
            /// Fire everything due at t0 + this many seconds: (deadline reached, queue size after).
            Fire(u32, bool, usize),
        }
        use Step::{Fire, Set};
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0);
        let mut deadline = ConnDeadline::default();
        let id = conn(7);
        let steps = [
            Set(10),
            Fire(9, false, 1),
            // Later, later, and back: nothing pushed.
            Set(60),
            Set(20),
            Set(70),
            Fire(9, false, 1),
            // The entry at 10 comes up early and moves itself to 70.
            Fire(10, false, 1),
            // Earlier: a second entry; the one at 70 is the spare.
            Set(15),
            Fire(14, false, 2),
            // Reached: the spare is forgotten, and skipped when it comes up.
            Fire(15, true, 1),
            Fire(70, false, 0),
            // Many keep-alive requests: each moves the deadline later.
            Set(80),
            Set(81),
            Set(90),
            Set(85),
            Fire(79, false, 1),
            Fire(85, true, 0),
            // A kept-alive connection: idle until 140, a request's first byte
            // moves it to 105 (a second entry, the one at 140 the spare), its
            // response to 160.
            Set(100),
            Set(140),
            Fire(100, false, 1),
            Set(105),
            Set(160),
            Fire(104, false, 2),
            // The entry at 105 comes up early and hands over to the spare.
            Fire(105, false, 1),
            // The spare, now live, comes up early and moves to 160.
            Fire(140, false, 1),
            Fire(160, true, 0),
        ];
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Set(secs) => d.set_conn(&mut deadline, id, t0 + secs * S),
                Fire(secs, want, len) => {
                    let mut reached = false;
                    while let Some((at, timer)) = d.pop_due(t0 + secs * S) {
                        assert_eq!(timer, Timer::Conn(id));
                        reached |= d.conn_due(&mut deadline, id, at);
                    }
                    assert_eq!((reached, d.len()), (want, len), "step {i}");
                }
            }
        }
    }

    /// A kept-alive connection sending a request every second, or every 11
    /// seconds, for ten minutes: each request moves its deadline to the
    /// header timeout (10 s) and its response to the idle timeout (60 s). It
    /// never has more than two entries.
    #[test]
    fn keep_alive_requests_leave_few_entries() {
        let t0 = Instant::now();
        let id = conn(1);
        for every in [1, 11] {
            let mut d = Deadlines::new(t0);
            let mut deadline = ConnDeadline::default();
            let mut most = 0;
            for i in (0..600).step_by(every) {
                let now = t0 + i as u32 * S;
                while let Some((at, _)) = d.pop_due(now) {
                    assert!(!d.conn_due(&mut deadline, id, at), "no timeout at {i} s");
                }
                d.set_conn(&mut deadline, id, now + 10 * S);
                most = most.max(d.len());
                d.set_conn(&mut deadline, id, now + 60 * S);
            }
            assert!(most <= 2, "every {every} s: {most} entries");
        }
    }

    #[test]
    fn a_connection_deadline_takes_the_space_of_one_instant() {
        assert!(std::mem::size_of::<ConnDeadline>() <= std::mem::size_of::<Option<Instant>>());
    }

    #[test]
    fn arming_empties_the_request() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0);
        let mut to_arm = ToArm::default();
        to_arm.push(t0 + S, Timer::Session("a".into()));
        to_arm.push(t0 + S, Timer::Channel("c".into()));
        d.arm(&mut to_arm);
        assert!(to_arm.is_empty());
        let c = d.counts();
        assert_eq!((c.session, c.channel, d.len()), (1, 1, 2));
    }
}

//! The process's open-file limit. Every held connection is a descriptor, so
//! the server (and the benchmark tools) lift the soft limit to the hard one at
//! start, and `--max-connections` defaults to just under it. `Spare` is the
//! one descriptor kept back so that, out of descriptors, the server can still
//! accept a waiting connection to refuse it.

use std::fs::File;

/// Lifts the soft limit to the hard limit and returns the limit now in force.
pub fn raise() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                ..limit
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The soft limit now in force.
pub fn soft() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => limit.rlim_cur,
        _ => 1024,
    }
}

/// A descriptor held in reserve (`/dev/null`, opened for reading). Out of
/// descriptors, `accept` fails while the listen backlog stays full, and a
/// backlog full of clients that have already gone keeps every new client
/// waiting behind them. Giving the spare back frees exactly one descriptor,
/// enough to accept one waiting connection, answer it and close it, then
/// take the spare again: the backlog drains at the speed of `accept`
/// instead of at the speed of a back-off (libuv's and libev's "EMFILE trick").
#[derive(Default)]
pub struct Spare(Option<File>);

impl Spare {
    /// Holds a descriptor in reserve; `false` if none could be had (the
    /// process is out of them right now), to be tried again later.
    pub fn take(&mut self) -> bool {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
        self.0.is_some()
    }

    /// Closes the reserved descriptor so that the next `open` or `accept`
    /// gets it; `false` if none was held.
    pub fn give_back(&mut self) -> bool {
        self.0.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let now = super::raise();
        assert_eq!(super::soft(), now);
        assert!(now >= 1);
    }

    #[test]
    fn a_spare_is_one_descriptor_given_back_and_taken_again() {
        let mut spare = super::Spare::default();
        assert!(!spare.give_back(), "nothing held yet");
        assert!(spare.take());
        assert!(spare.take(), "taking again keeps the one held");
        assert!(spare.give_back());
        assert!(!spare.give_back(), "given back once");
    }
}

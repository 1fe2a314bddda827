//! `--workers N`: the process the user started becomes a supervisor of N
//! copies of itself. Each worker is a whole server (one loop, one thread) on a
//! listening socket of its own, bound to the same address with `SO_REUSEPORT`,
//! so the kernel spreads new connections over them; workers share channels and
//! history only through Redis. The supervisor serves nothing: it starts the
//! workers, restarts one that dies (backing off one that keeps dying), passes
//! SIGTERM and SIGINT on, and exits once every worker has.
//!
//! It is one blocking loop on `sigtimedwait(2)`, with SIGTERM, SIGINT and
//! SIGCHLD blocked so that they queue up for it instead of interrupting it;
//! the wait's timeout is the earliest restart due. No loop, poll or thread is
//! needed for so few events.

use std::io::{self, BufRead, BufReader};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::config::Config;
use crate::redis::backoff::Backoff;

/// Tells a process started by the supervisor which worker it is, 1 to N.
pub const WORKER_ENV: &str = "HALLEY_WORKER";
/// Tells a worker how many times it has been restarted, for its `/stats`.
pub const RESTARTS_ENV: &str = "HALLEY_WORKER_RESTARTS";

/// A worker that ran at least this long was serving, not failing at start:
/// its death is restarted after the first back-off delay again, not a
/// doubled one.
pub const STABLE_UPTIME: Duration = Duration::from_secs(10);

/// The worker number this process was given by a supervisor, if any: `None`
/// when the variable is unset, an error when it names no worker of `workers`.
pub fn worker_number(value: Option<&str>, workers: usize) -> Result<Option<usize>, String> {
    match value.map(|v| v.parse::<usize>()) {
        None => Ok(None),
        Some(Ok(k)) if (1..=workers).contains(&k) && workers > 1 => Ok(Some(k)),
        Some(_) => Err(format!(
            "{WORKER_ENV}={} names no worker of --workers {workers}",
            value.unwrap_or_default()
        )),
    }
}

/// When to start a dead worker again. The delays are Redis reconnects'
/// (`redis::backoff`): 100 ms doubling to 5 s with jitter, so a worker that
/// dies at once every time is started about every 5 s rather than in a tight
/// loop, and one that dies after serving a while is back in 100 ms or less.
#[derive(Clone, Debug)]
pub struct Restarts {
    backoff: Backoff,
    /// Restarts of this worker so far.
    pub count: u64,
}

impl Restarts {
    pub fn new(seed: u64) -> Restarts {
        Restarts {
            backoff: Backoff::new(seed),
            count: 0,
        }
    }

    /// The delay before starting again a worker that died after running for
    /// `lived`; counts the restart.
    pub fn after_exit(&mut self, lived: Duration) -> Duration {
        self.count += 1;
        if lived >= STABLE_UPTIME {
            self.backoff.reset();
        }
        self.backoff.next()
    }
}

/// A socket bound to `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, not yet
/// listening. Every worker binds its listener this way; the supervisor binds
/// one too and never listens on it: that resolves port 0 to one port for all
/// workers and keeps the port theirs while one of them is being restarted,
/// and a socket that does not listen is given no connections.
pub fn bind_shared(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int from the pointer we pass.
        let rc = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                option,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: `storage` is large enough for either address family, and
    // bind(2) reads only `len` bytes of it.
    let rc = unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin =
                    &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        libc::bind(
            raw,
            (&storage as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(fd),
        _ => Err(io::Error::last_os_error()),
    }
}

/// One worker's place: its number, and what it is doing.
struct Worker {
    number: usize,
    state: State,
    restarts: Restarts,
}

enum State {
    Running {
        child: Child,
        since: Instant,
    },
    /// Died; to be started again at `at`.
    Waiting {
        at: Instant,
    },
    /// Exited during shutdown; whether with status 0.
    Done {
        clean: bool,
    },
}

/// How a worker is started: this binary, with this process's own flags and
/// then the resolved address and count, which override any given before.
struct Launcher<'a> {
    exe: std::path::PathBuf,
    args: &'a [String],
    addr: SocketAddr,
    workers: usize,
    /// The signals this process blocks, unblocked again in each worker.
    mask: libc::sigset_t,
}

impl Launcher<'_> {
    /// Starts worker `number`, restarted `restarts` times before; with
    /// `announce`, its stdout is a pipe to read its `listening on` line from.
    fn spawn(&self, number: usize, restarts: u64, announce: bool) -> io::Result<Child> {
        let mut command = Command::new(&self.exe);
        let mask = self.mask;
        // SAFETY: between fork and exec the closure makes only
        // async-signal-safe calls, on values copied before the fork.
        unsafe {
            command.pre_exec(move || {
                // The worker must take the signals this process waits for
                // (a mask survives exec); and it must not outlive this
                // process, or it would hold the port with nobody to stop it.
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &mask, std::ptr::null_mut());
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            })
        };
        command
            .args(self.args)
            .args(["--listen", &self.addr.to_string()])
            .args(["--workers", &self.workers.to_string()])
            .env(WORKER_ENV, number.to_string())
            .env(RESTARTS_ENV, restarts.to_string())
            .stdin(Stdio::null())
            .stdout(match announce {
                true => Stdio::piped(),
                false => Stdio::null(),
            })
            .spawn()
    }
}

/// Runs the workers until a SIGTERM or SIGINT has ended them all; returns
/// whether every one exited cleanly. `args` are this process's own flags.
pub fn run(config: &Config, args: &[String]) -> io::Result<bool> {
    let signals = SignalSet::block(&[libc::SIGTERM, libc::SIGINT, libc::SIGCHLD])?;
    // Held, never listened on, until this process exits.
    let reserved = TcpListener::from(bind_shared(config.listen)?);
    let launcher = Launcher {
        exe: std::env::current_exe()?,
        args,
        addr: reserved.local_addr()?,
        workers: config.workers,
        mask: signals.0,
    };
    let mut workers = start_all(&launcher)?;
    // Announced only once every worker listens, so whoever reads it (a
    // script, a test) can connect at once.
    info!("{} workers listening on {}", config.workers, launcher.addr);
    println!("listening on {}", launcher.addr);

    let mut stopping = false;
    loop {
        // 1. Start again the workers whose back-off has run out.
        if !stopping {
            restart_due(&launcher, &mut workers, Instant::now());
        }
        if stopping
            && workers
                .iter()
                .all(|w| matches!(w.state, State::Done { .. }))
        {
            break;
        }
        // 2. Sleep until a signal or the next restart due.
        let next_start = workers
            .iter()
            .filter_map(|w| match w.state {
                State::Waiting { at } => Some(at),
                _ => None,
            })
            .min();
        let timeout = next_start.map(|at| at.saturating_duration_since(Instant::now()));
        // 3. A child exited, or we are told to stop.
        match signals.wait(timeout)? {
            Some(libc::SIGCHLD) => {
                for worker in workers.iter_mut() {
                    on_child_exit(worker, stopping);
                }
            }
            Some(signal) => {
                info!("signal {signal}: stopping {} workers", config.workers);
                stopping = true;
                for worker in workers.iter_mut() {
                    forward(worker, signal);
                }
            }
            None => {}
        }
    }
    info!("all workers have exited");
    Ok(workers
        .iter()
        .all(|w| matches!(w.state, State::Done { clean: true })))
}

/// Starts every worker and waits until each listens; if one fails first,
/// ends the others and says why.
fn start_all(launcher: &Launcher) -> io::Result<Vec<Worker>> {
    let seed = u64::from(std::process::id()) << 16;
    let mut workers = Vec::with_capacity(launcher.workers);
    let mut started = Ok(());
    for number in 1..=launcher.workers {
        match launcher.spawn(number, 0, true) {
            Ok(child) => workers.push(Worker {
                number,
                state: State::Running {
                    child,
                    since: Instant::now(),
                },
                restarts: Restarts::new(seed ^ number as u64),
            }),
            Err(e) => {
                started = Err(e);
                break;
            }
        }
    }
    for worker in &mut workers {
        if let (true, State::Running { child, .. }) = (started.is_ok(), &mut worker.state) {
            started = await_listening(child);
        }
    }
    if let Err(e) = started {
        for worker in &mut workers {
            if let State::Running { child, .. } = &mut worker.state {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        return Err(e);
    }
    Ok(workers)
}

/// Starts the workers whose restart is due at `now`.
fn restart_due(launcher: &Launcher, workers: &mut [Worker], now: Instant) {
    for worker in workers {
        match worker.state {
            State::Waiting { at } if at <= now => {}
            _ => continue,
        }
        match launcher.spawn(worker.number, worker.restarts.count, false) {
            Ok(child) => {
                info!("worker {} restarted (pid {})", worker.number, child.id());
                worker.state = State::Running { child, since: now };
            }
            Err(e) => {
                let delay = worker.restarts.after_exit(Duration::ZERO);
                warn!(
                    "worker {} not restarted: {e}; again in {delay:?}",
                    worker.number
                );
                worker.state = State::Waiting { at: now + delay };
            }
        }
    }
}

/// Passes a stopping signal on to a running worker; one waiting to be
/// restarted is simply not.
fn forward(worker: &mut Worker, signal: libc::c_int) {
    match &worker.state {
        // SAFETY: kill(2) on our own child's pid, which it keeps until we
        // reap it.
        State::Running { child, .. } => unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        },
        State::Waiting { .. } => worker.state = State::Done { clean: true },
        State::Done { .. } => {}
    }
}

/// Reads a new worker's first line, `listening on ADDR`, which it prints
/// once bound; anything else (it died first) is an error.
fn await_listening(child: &mut Child) -> io::Result<()> {
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    match line.starts_with("listening on ") {
        true => Ok(()),
        false => Err(io::Error::other(format!(
            "a worker exited before listening ({})",
            child.wait()?
        ))),
    }
}

/// Notes a worker's exit, if it has exited: during shutdown it is done;
/// otherwise its restart is scheduled.
fn on_child_exit(worker: &mut Worker, stopping: bool) {
    let State::Running { child, since } = &mut worker.state else {
        return;
    };
    let status = match child.try_wait() {
        Ok(Some(status)) => status,
        Ok(None) => return,
        Err(e) => {
            warn!("worker {}: {e}", worker.number);
            return;
        }
    };
    if stopping {
        if !status.success() {
            warn!("worker {} ended with {status}", worker.number);
        }
        worker.state = State::Done {
            clean: status.success(),
        };
        return;
    }
    let lived = since.elapsed();
    let delay = worker.restarts.after_exit(lived);
    warn!(
        "worker {} (pid {}) died ({status}) after {:.1} s; restart {} in {} ms",
        worker.number,
        child.id(),
        lived.as_secs_f64(),
        worker.restarts.count,
        delay.as_millis()
    );
    worker.state = State::Waiting {
        at: Instant::now() + delay,
    };
}

/// Signals blocked for this process, to be taken one at a time by `wait`.
struct SignalSet(libc::sigset_t);

impl SignalSet {
    fn block(signals: &[libc::c_int]) -> io::Result<SignalSet> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set; sigaddset and
        // pthread_sigmask only read and write it.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &signal in signals {
                libc::sigaddset(set.as_mut_ptr(), signal);
            }
            let set = set.assume_init();
            match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
                0 => Ok(SignalSet(set)),
                e => Err(io::Error::from_raw_os_error(e)),
            }
        }
    }

    /// The next of the blocked signals, waiting at most `timeout` (forever
    /// when `None`); `None` when the time ran out or a call was interrupted.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<libc::c_int>> {
        // SAFETY: both calls only read the set and the timespec we pass.
        let signal = unsafe {
            match timeout {
                None => libc::sigwaitinfo(&self.0, std::ptr::null_mut()),
                Some(t) => {
                    let ts = libc::timespec {
                        tv_sec: t.as_secs() as libc::time_t,
                        tv_nsec: t.subsec_nanos() as libc::c_long,
                    };
                    libc::sigtimedwait(&self.0, std::ptr::null_mut(), &ts)
                }
            }
        };
        if signal >= 0 {
            return Ok(Some(signal));
        }
        match io::Error::last_os_error() {
            e if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => Ok(None),
            e => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_keeps_dying_is_restarted_ever_later_up_to_the_cap() {
        // How long each worker lived before dying, and the ceiling of the
        // delay before its restart: doubling while it dies young, back to the
        // first once it has served a while.
        let cases: &[(&[u64], &[u64])] = &[
            (&[0], &[100]),
            (&[0, 0, 0, 0], &[100, 200, 400, 800]),
            (
                &[1, 1, 1, 1, 1, 1, 1, 1],
                &[100, 200, 400, 800, 1600, 3200, 5000, 5000],
            ),
            (&[0, 0, 0, 10, 0], &[100, 200, 400, 100, 200]),
            (&[3600, 3600], &[100, 100]),
            (&[0, 9, 0], &[100, 200, 400]),
        ];
        for &(lived, ceilings) in cases {
            for seed in 0..20 {
                let mut restarts = Restarts::new(seed);
                for (n, (&secs, &ceiling)) in lived.iter().zip(ceilings).enumerate() {
                    let delay = restarts.after_exit(Duration::from_secs(secs));
                    let ceiling = Duration::from_millis(ceiling);
                    assert!(
                        delay >= ceiling / 2 && delay <= ceiling,
                        "lived {lived:?}, restart {n}: {delay:?} not in {:?}..={ceiling:?}",
                        ceiling / 2
                    );
                    assert_eq!(restarts.count, n as u64 + 1);
                }
            }
        }
    }

    #[test]
    fn the_worker_variable_names_one_of_the_workers() {
        // The variable, the count of workers, and the worker it names
        // (`Some(None)`: not a worker; `None`: refused).
        type Case = (Option<&'static str>, usize, Option<Option<usize>>);
        let cases: &[Case] = &[
            (None, 1, Some(None)),
            (None, 4, Some(None)),
            (Some("1"), 4, Some(Some(1))),
            (Some("4"), 4, Some(Some(4))),
            (Some("0"), 4, None),
            (Some("5"), 4, None),
            (Some("x"), 4, None),
            (Some(""), 4, None),
            // One worker is not supervised: a stray variable is a mistake.
            (Some("1"), 1, None),
        ];
        for &(value, workers, want) in cases {
            let got = worker_number(value, workers);
            assert_eq!(got.clone().ok(), want, "{value:?} of {workers}");
            if let Err(e) = got {
                assert!(e.starts_with("HALLEY_WORKER="), "{e}");
            }
        }
    }

    #[test]
    fn shared_sockets_bind_one_port_together() {
        let first = TcpListener::from(bind_shared("127.0.0.1:0".parse().unwrap()).unwrap());
        let addr = first.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        // SAFETY: listen(2) on a socket we own.
        assert_eq!(
            unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&first), 8) },
            0
        );
        let second = TcpListener::from(bind_shared(addr).unwrap());
        assert_eq!(second.local_addr().unwrap(), addr);
        // A socket bound without SO_REUSEPORT cannot share the port.
        assert!(TcpListener::bind(addr).is_err());
    }
}

//! `--workers N`: one port served by N halley processes on one Redis of the
//! test's own (tests/common/redis.rs). Subscribers spread over the workers and
//! a publish on any of them reaches every subscriber once; a SIGKILLed worker
//! is started again while the others keep serving; SIGTERM to the supervisor
//! drains and ends every worker with exit status 0; and several workers
//! without Redis are refused at start. Which worker answered a connection is
//! read from `"worker"` in its `/stats`.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::redis::RedisServer;
use common::*;

/// Subscribers opened by the spreading tests: with three workers, all of
/// them landing on one has a chance of 3 in 3^12, about 1 in 180,000.
const SUBSCRIBERS: usize = 12;

/// Starts `halley --workers N` on `redis` and waits until every worker is
/// connected to it, so that a publish on any is answered 201.
fn workers(redis: &RedisServer, n: usize, adjust: impl FnOnce(&mut Command)) -> Proc {
    let url = redis.url();
    let count = n.to_string();
    let sup = Proc::start_with(&["--workers", &count, "--redis", &url], adjust);
    wait_until("every worker is connected to Redis", || {
        let all = per_worker(sup.addr, n);
        all.len() == n
            && all
                .values()
                .all(|s| s["redis"]["connected"].as_bool() == Some(true))
    });
    sup
}

/// `/stats` of each worker, by its number, read over fresh connections (each
/// may go to any worker) until every one of the `n` has answered or 200
/// connections have been tried. The count of workers is checked on each.
fn per_worker(addr: SocketAddr, n: usize) -> BTreeMap<u64, Value> {
    let mut seen = BTreeMap::new();
    for _ in 0..200 {
        let s = stats(addr);
        assert_eq!(s["workers"], n as u64, "{s}");
        let k = s["worker"].as_u64().expect("a worker number");
        assert!((1..=n as u64).contains(&k), "worker {k} of {n}");
        seen.insert(k, s);
        if seen.len() == n {
            break;
        }
    }
    seen
}

/// SSE subscribers on each worker, by worker number, once all `total` are
/// counted.
fn sse_per_worker(addr: SocketAddr, n: usize, total: u64) -> BTreeMap<u64, u64> {
    let mut spread = BTreeMap::new();
    wait_until(&format!("{total} SSE subscribers are counted"), || {
        let all = per_worker(addr, n);
        spread = all
            .iter()
            .map(|(k, s)| (*k, s["connections"]["sse"].as_u64().unwrap()))
            .collect();
        all.len() == n && spread.values().sum::<u64>() == total
    });
    spread
}

/// The pids of the supervisor's children, by the worker number in their
/// environment.
fn worker_pids(supervisor: u32) -> BTreeMap<u64, i32> {
    let mut pids = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent's pid is the second field after the command's ')'.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields[1] != supervisor.to_string() || fields[0] == "Z" {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        for var in environ.split(|&b| b == 0) {
            if let Some(k) = var.strip_prefix(b"HALLEY_WORKER=") {
                let k = std::str::from_utf8(k).unwrap().parse().unwrap();
                pids.insert(k, pid);
            }
        }
    }
    pids
}

/// Reads a subscriber's raw bytes until `marker` has arrived; returns
/// everything read, or `None` if the connection closed first.
fn read_until_marker(sub: &mut Sub, marker: &str) -> Option<String> {
    loop {
        let text = String::from_utf8_lossy(sub.client.pending()).into_owned();
        if text.contains(marker) {
            return Some(text);
        }
        match sub.client.try_fill() {
            Some(0) => return None,
            Some(_) => {}
            None => panic!("neither {marker:?} nor the end arrived; had {text:?}"),
        }
    }
}

fn count(text: &str, what: &str) -> usize {
    text.matches(what).count()
}

#[test]
fn subscribers_spread_over_the_workers_and_a_publish_reaches_each_once() {
    let redis = RedisServer::start();
    let sup = workers(&redis, 3, |_| {});
    let ch = channel("spread");
    let mut subs: Vec<Sub> = (0..SUBSCRIBERS)
        .map(|_| Sub::sse(sup.addr, &ch, "", &[]))
        .collect();
    let spread = sse_per_worker(sup.addr, 3, SUBSCRIBERS as u64);
    let busy = spread.values().filter(|&&n| n > 0).count();
    assert!(busy >= 2, "all subscribers on one worker: {spread:?}");

    // Two publishes, each through whichever worker takes the connection:
    // every subscriber has the first once, then the second once.
    publish(sup.addr, &ch, "first");
    publish(sup.addr, &ch, "second");
    for (i, sub) in subs.iter_mut().enumerate() {
        let text = read_until_marker(sub, "data: second\n")
            .unwrap_or_else(|| panic!("subscriber {i} was closed"));
        assert_eq!(count(&text, "data: first\n"), 1, "subscriber {i}: {text:?}");
        assert_eq!(
            count(&text, "data: second\n"),
            1,
            "subscriber {i}: {text:?}"
        );
        assert!(
            text.find("data: first") < text.find("data: second"),
            "{text:?}"
        );
    }
}

#[test]
fn a_killed_worker_is_started_again_while_the_others_serve() {
    let redis = RedisServer::start();
    let mut sup = workers(&redis, 3, |_| {});
    let ch = channel("kill");
    let mut subs: Vec<Sub> = (0..SUBSCRIBERS)
        .map(|_| Sub::sse(sup.addr, &ch, "", &[]))
        .collect();
    let spread = sse_per_worker(sup.addr, 3, SUBSCRIBERS as u64);
    // Kill the busiest worker: at least one other holds subscribers too.
    let (&victim, &lost) = spread.iter().max_by_key(|(_, &n)| n).unwrap();
    assert!(lost < SUBSCRIBERS as u64, "all on one worker: {spread:?}");
    let before = worker_pids(sup.child.id());
    assert_eq!(before.len(), 3, "{before:?}");
    // SAFETY: kill(2) on a child of our own child.
    assert_eq!(unsafe { libc::kill(before[&victim], libc::SIGKILL) }, 0);

    // The supervisor starts the worker again under the same number...
    wait_until("the killed worker is started again", || {
        let now = worker_pids(sup.child.id());
        now.len() == 3 && now[&victim] != before[&victim]
    });
    let after = worker_pids(sup.child.id());
    for k in [1, 2, 3].into_iter().filter(|&k| k != victim) {
        assert_eq!(after[&k], before[&k], "worker {k} was restarted too");
    }
    // ...which serves again, with the others, on the same port, and counts
    // its restart.
    wait_until("the new worker answers and is connected to Redis", || {
        per_worker(sup.addr, 3)
            .get(&victim)
            .is_some_and(|s| s["redis"]["connected"].as_bool() == Some(true))
    });
    let all = per_worker(sup.addr, 3);
    assert_eq!(all.len(), 3, "not every worker answered");
    for (k, s) in all {
        let want = u64::from(k == victim);
        assert_eq!(s["worker_restarts"], want, "worker {k}: {s}");
    }

    // The killed worker's subscribers were cut off; every other one gets
    // the next publish, once.
    publish(sup.addr, &ch, "after");
    let mut closed = 0;
    for sub in &mut subs {
        match read_until_marker(sub, "data: after\n") {
            Some(text) => assert_eq!(count(&text, "data: after\n"), 1, "{text:?}"),
            None => closed += 1,
        }
    }
    assert_eq!(closed, lost, "subscribers cut off, of {spread:?}");
    assert!(
        sup.child.try_wait().unwrap().is_none(),
        "the supervisor exited"
    );
}

#[test]
fn sigterm_drains_every_worker_and_the_supervisor_exits_0() {
    let redis = RedisServer::start();
    let mut sup = workers(&redis, 3, |cmd| {
        cmd.env("RUST_LOG", "info").stderr(Stdio::piped());
    });
    let mut stderr = sup.child.stderr.take().unwrap();
    // Read the log as it comes, so no worker ever blocks on a full pipe.
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let ch = channel("term");
    let mut subs: Vec<Sub> = (0..SUBSCRIBERS)
        .map(|_| Sub::sse(sup.addr, &ch, "", &[]))
        .collect();
    sse_per_worker(sup.addr, 3, SUBSCRIBERS as u64);
    let pids = worker_pids(sup.child.id());
    assert_eq!(pids.len(), 3);

    sup.signal(libc::SIGTERM);
    // Every worker ends its streams properly, as one server does.
    for sub in &mut subs {
        sub.expect_drain();
    }
    let (status, _) = sup
        .wait_exit(Duration::from_secs(10))
        .expect("the supervisor exits");
    assert_eq!(status.code(), Some(0), "{status}");
    for (k, pid) in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {k} (pid {pid}) outlived the supervisor"
        );
    }
    // Each line of the log names the process that wrote it.
    let log = log.join().unwrap();
    for tag in ["w1", "w2", "w3"] {
        let want = format!(" {tag} halley::server] shutdown complete");
        assert!(log.contains(&want), "no {want:?} in {log}");
    }
    assert!(
        log.contains(" sup halley::supervisor] all workers have exited"),
        "{log}"
    );
}

#[test]
fn several_workers_without_redis_are_refused_with_how_to_start_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_halley"))
        .args(["--listen", "127.0.0.1:0", "--workers", "2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("--workers 2 needs --redis"), "{err}");
    assert!(err.contains("redis-server --port"), "{err}");
    assert!(out.stdout.is_empty(), "it listened: {out:?}");
}

#[test]
fn one_worker_is_the_plain_server_and_says_so() {
    let server = Proc::start(&["--workers", "1"]);
    let s = stats(server.addr);
    assert_eq!(
        (s["worker"].as_u64(), s["workers"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        worker_pids(server.child.id()).is_empty(),
        "one worker started children"
    );
}

//! The benchmark's generator against the floor at small N: if `halley-load` stopped holding,
//! counting or timing subscribers correctly, the numbers in BENCHMARKS.md would silently lie,
//! so this fails first. Every child process is bounded by a deadline.

// The server crate's test helpers: `Proc` starts any of the project's servers.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Proc;

/// The floor on an OS-chosen port; killed when dropped.
struct Floor(Proc);

impl Floor {
    fn start() -> Floor {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_halley-floor"));
        cmd.args(["--listen", "127.0.0.1:0"]);
        Floor(Proc::spawn(cmd))
    }

    fn pid(&self) -> String {
        self.0.child.id().to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}/{{channel}}", self.0.addr.port())
    }
}

/// Runs halley-load and returns its JSON line, failing the test after `limit`.
fn load(args: &[String], limit: Duration) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halley-load"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start halley-load");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("halley-load took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "halley-load failed: {stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// The number after `"key":` in a flat JSON object.
fn field(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing from {json}"))
        + pat.len();
    let end = json[at..].find([',', '}']).unwrap() + at;
    json[at..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn holds_every_subscriber_over_several_processes_and_loses_nothing() {
    let floor = Floor::start();
    let pid = floor.pid();
    let mut args = strings(&[
        "sse",
        "-n",
        "300",
        "--warmup",
        "1",
        "--messages",
        "5",
        "--rate",
        "50",
    ]);
    args.extend(strings(&[
        "--rate-messages",
        "5",
        "--per-process",
        "128",
        "--server-pid",
        &pid,
    ]));
    args.extend([
        "--sub-url".into(),
        floor.url("sub"),
        "--pub-url".into(),
        floor.url("pub"),
    ]);
    let json = load(&args, Duration::from_secs(60));
    assert_eq!(field(&json, "held"), 300.0, "{json}");
    assert_eq!(field(&json, "workers"), 3.0, "{json}");
    for key in [
        "failed",
        "missing",
        "duplicate",
        "out_of_order",
        "unknown",
        "dropped",
        "timeouts",
    ] {
        assert_eq!(field(&json, key), 0.0, "{key}: {json}");
    }
    assert_eq!(field(&json, "fanout_count"), 1500.0, "{json}");
    assert_eq!(field(&json, "open_count"), 1500.0, "{json}");
    assert_eq!(field(&json, "to_last_count"), 5.0, "{json}");
    assert!(field(&json, "fanout_p50_us") > 0.0, "{json}");
    assert!(field(&json, "fanout_max_us") < 5e6, "{json}");
    assert!(field(&json, "server_pss_kb") > 0.0, "{json}");
}

#[test]
fn holds_websocket_subscribers_on_the_floor_and_loses_nothing() {
    // The same run as SSE's above over WebSocket: each subscriber checks the floor's accept value
    // (a wrong one fails it), reads its frames, and counts every message once.
    let floor = Floor::start();
    let pid = floor.pid();
    let mut args = strings(&["ws", "-n", "300", "--warmup", "1", "--messages", "5"]);
    args.extend(strings(&[
        "--rate",
        "50",
        "--rate-messages",
        "5",
        "--size",
        "200",
    ]));
    args.extend(strings(&["--per-process", "128", "--server-pid", &pid]));
    args.extend([
        "--sub-url".into(),
        floor.url("sub"),
        "--pub-url".into(),
        floor.url("pub"),
    ]);
    let json = load(&args, Duration::from_secs(60));
    assert!(json.contains(r#""mode":"ws""#), "{json}");
    assert_eq!(field(&json, "held"), 300.0, "{json}");
    assert_eq!(field(&json, "workers"), 3.0, "{json}");
    for key in [
        "failed",
        "missing",
        "duplicate",
        "out_of_order",
        "unknown",
        "dropped",
        "timeouts",
    ] {
        assert_eq!(field(&json, key), 0.0, "{key}: {json}");
    }
    assert_eq!(field(&json, "fanout_count"), 1500.0, "{json}");
    assert_eq!(field(&json, "open_count"), 1500.0, "{json}");
    assert!(field(&json, "fanout_p50_us") > 0.0, "{json}");
}

#[test]
fn reads_halleys_websocket_frames() {
    // halley's /sub/ WebSocket wraps each message in the stream's JSON object, unlike the floor and
    // Nchan: the generator must find SEQ SENT_NS inside it, or every delivery goes uncounted.
    let addr = common::start_default();
    let url = |path: &str| format!("http://{addr}/{path}/{{channel}}");
    let mut args = strings(&["ws", "-n", "100", "--warmup", "1", "--messages", "5"]);
    args.extend([
        "--sub-url".into(),
        url("sub"),
        "--pub-url".into(),
        url("pub"),
    ]);
    let json = load(&args, Duration::from_secs(30));
    assert_eq!(field(&json, "held"), 100.0, "{json}");
    for key in [
        "failed",
        "missing",
        "duplicate",
        "out_of_order",
        "unknown",
        "dropped",
    ] {
        assert_eq!(field(&json, key), 0.0, "{key}: {json}");
    }
    assert_eq!(field(&json, "fanout_count"), 500.0, "{json}");
}

#[test]
fn drives_ready_and_held_long_polls() {
    let floor = Floor::start();
    let pid = floor.pid();
    let mut args = strings(&[
        "longpoll",
        "--duration-s",
        "0.3",
        "--conns",
        "4",
        "--held",
        "50",
        "--rounds",
        "3",
    ]);
    args.extend(strings(&["--settle-ms", "50", "--server-pid", &pid]));
    args.extend([
        "--pub-url".into(),
        floor.url("pub"),
        "--ready-url".into(),
        floor.url("lp"),
        "--wait-url".into(),
        floor.url("lpw"),
    ]);
    let json = load(&args, Duration::from_secs(30));
    assert!(field(&json, "ready_cycles") > 100.0, "{json}");
    assert_eq!(field(&json, "ready_errors"), 0.0, "{json}");
    assert_eq!(field(&json, "held_count"), 150.0, "{json}");
    assert_eq!(field(&json, "held_missing"), 0.0, "{json}");
}

/// The same flags for both runs of the two-address test.
fn split_args(n: &str, sub_urls: [String; 2], pub_url: String, pids: [&str; 2]) -> Vec<String> {
    let mut args = strings(&["sse", "-n", n, "--warmup", "0", "--messages", "2"]);
    args.extend(strings(&["--message-timeout-s", "1"]));
    for url in sub_urls {
        args.extend(["--sub-url".into(), url]);
    }
    args.extend(["--pub-url".into(), pub_url]);
    for pid in pids {
        args.extend(["--server-pid".into(), pid.into()]);
    }
    args
}

#[test]
fn splits_subscribers_half_and_half_over_two_addresses() {
    // Two addresses of one floor: every subscriber gets every message, half through each, and
    // the auxiliary process is measured apart.
    let floor = Floor::start();
    let pid = floor.pid();
    let other_name = floor.url("sub").replace("127.0.0.1", "localhost");
    let mut args = split_args(
        "100",
        [floor.url("sub"), other_name],
        floor.url("pub"),
        [&pid, &pid],
    );
    args.extend(["--aux-pid".into(), pid.clone()]);
    let json = load(&args, Duration::from_secs(30));
    assert_eq!(field(&json, "held"), 100.0, "{json}");
    assert_eq!(field(&json, "workers"), 2.0, "{json}");
    assert_eq!(field(&json, "node1_fanout_count"), 100.0, "{json}");
    assert_eq!(field(&json, "node2_fanout_count"), 100.0, "{json}");
    assert_eq!(field(&json, "fanout_count"), 200.0, "{json}");
    for key in ["missing", "duplicate", "out_of_order", "timeouts"] {
        assert_eq!(field(&json, key), 0.0, "{key}: {json}");
    }
    for key in [
        "node1_cpu_ms_per_1k",
        "node2_cpu_ms_per_1k",
        "aux_cpu_ms_per_1k",
    ] {
        assert!(field(&json, key) > 0.0, "{key}: {json}");
    }

    // Two floors, publishing to the first only: the second's half is held but gets nothing, and
    // the loss check counts exactly that half as missing.
    let (a, b) = (Floor::start(), Floor::start());
    let args = split_args(
        "100",
        [a.url("sub"), b.url("sub")],
        a.url("pub"),
        [&a.pid(), &b.pid()],
    );
    let json = load(&args, Duration::from_secs(30));
    assert_eq!(field(&json, "held"), 100.0, "{json}");
    assert_eq!(field(&json, "node1_fanout_count"), 100.0, "{json}");
    assert_eq!(field(&json, "node2_fanout_count"), 0.0, "{json}");
    assert_eq!(field(&json, "missing"), 100.0, "{json}");
    assert_eq!(field(&json, "timeouts"), 2.0, "{json}");
}

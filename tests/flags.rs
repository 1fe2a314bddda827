//! The `halley` binary refuses every out-of-range flag at start: a nonzero exit and a message
//! naming the flag and the range it accepts, rather than a panic on the first request (an
//! `--idle-timeout` that overflows an `Instant`), a panic at start (`--heartbeat 1e20`), a loop
//! that spins (`--heartbeat 1e-10`) or a misleading "unknown flag" (`--publish-token ""`).

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a refused start may take; a server that starts instead is killed then.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// Runs `halley --listen 127.0.0.1:0 ARGS` and returns its exit status and stderr, failing the
/// test if it is still running after `EXIT_LIMIT` (it accepted the flags and started serving).
fn refused(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halley"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start halley");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > EXIT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("halley {args:?} started instead of refusing the flags");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[test]
fn every_out_of_range_flag_exits_2_naming_the_flag_and_its_range() {
    // Flag, value, and what the message must say about the range.
    let cases: &[(&str, &str, &str)] = &[
        ("--idle-timeout", "1e19", "seconds from 0.001 to 86400"),
        ("--heartbeat", "1e20", "seconds from 0.001 to 86400"),
        ("--heartbeat", "1e-10", "seconds from 0.001 to 86400"),
        ("--send-timeout", "0", "seconds from 0.001 to 86400"),
        ("--header-timeout", "0", "seconds from 0.001 to 86400"),
        ("--longpoll-timeout", "inf", "seconds from 0.001 to 86400"),
        ("--message-ttl", "1e300", "seconds from 0.001 to 31536000"),
        ("--max-connections", "0", "a number from 1 to 10000000"),
        (
            "--max-body",
            "99999999999999999999",
            "a number of bytes from 1 to 1073741824",
        ),
        (
            "--max-queued-bytes",
            "0",
            "a number of bytes from 1 to 1073741824",
        ),
        ("--buffer", "0", "a number from 1 to 1000000"),
        ("--longpoll-batch", "-1", "a number from 1 to 1000000"),
        ("--sse-retry", "0", "milliseconds from 1 to 86400000"),
        ("--publish-token", "", "1 to 1024 visible ASCII characters"),
        (
            "--cors-origin",
            "a\r\nSet-Cookie: x",
            "1 to 1024 visible ASCII characters",
        ),
        ("--listen", "nowhere", "an address like 127.0.0.1:8080"),
        ("--static", "", "a directory"),
        (
            "--open-publish",
            "no spaces",
            "a prefix is 1 to 127 characters",
        ),
    ];
    for (flag, value, range) in cases {
        let (status, stderr) = refused(&[flag, value]);
        assert_eq!(
            status.code(),
            Some(2),
            "{flag} {value:?}: {status}, {stderr}"
        );
        assert!(
            stderr.starts_with(&format!("halley: {flag}")),
            "{flag} {value:?}: {stderr}"
        );
        assert!(stderr.contains(range), "{flag} {value:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag} {value:?}: {stderr}");
    }
}

#[test]
fn an_empty_publish_token_is_not_called_an_unknown_flag() {
    let (status, stderr) = refused(&["--publish-token", ""]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("unknown flag"), "{stderr}");
    assert!(stderr.contains("--publish-token"), "{stderr}");
}

#[test]
fn unknown_flags_and_missing_values_exit_2_naming_the_flag() {
    for (args, want) in [
        (&["--frobnicate", "1"][..], "unknown flag --frobnicate"),
        (&["--frobnicate"], "unknown flag --frobnicate"),
        (&["--heartbeat"], "--heartbeat needs a value"),
    ] {
        let (status, stderr) = refused(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

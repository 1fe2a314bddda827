//! The walkthrough cannot drift from the code: `docs/walkthrough.md` shows
//! the trace lines one subscription, one publish and one drain produce, in
//! ```` ```trace ```` blocks, and this test runs that very scenario with
//! `RUST_LOG=halley=trace` and finds each of those lines in the server's log,
//! in the same order. Numbers (connection ids, durations, byte counts) are
//! compared as "a number", since they differ from run to run.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const WALKTHROUGH: &str = include_str!("../docs/walkthrough.md");

/// The lines of every ```` ```trace ```` block of the walkthrough.
fn documented_lines() -> Vec<&'static str> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in WALKTHROUGH.lines() {
        match line.trim() {
            "```trace" => inside = true,
            "```" if inside => inside = false,
            text if inside && !text.is_empty() => lines.push(text),
            _ => {}
        }
    }
    lines
}

/// `line` with every number (and a unit right after it, as in `1.5ms`)
/// replaced by `#`.
fn normalise(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_ascii_digit() {
            out.push(c);
            continue;
        }
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || *c == '.')
        {
            chars.next();
        }
        // A duration's unit: s, ms, µs, ns.
        let rest: String = chars.clone().take(2).collect();
        let unit = ["ms", "µs", "ns", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        if let Some(unit) = unit {
            for _ in 0..unit.chars().count() {
                chars.next();
            }
        }
        out.push('#');
    }
    out
}

#[test]
fn normalise_hides_numbers_and_durations_only() {
    let cases = [
        (
            "conn #12: Body -> AwaitingHead",
            "conn ##: Body -> AwaitingHead",
        ),
        (
            "poll: 1 events after 2.6µs (next deadline in 10.0s)",
            "poll: # events after # (next deadline in #)",
        ),
        ("Streaming(sse, chat/room1)", "Streaming(sse, chat/room#)"),
        (
            "deadline: conn #0: heartbeat",
            "deadline: conn ##: heartbeat",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(normalise(line), want, "{line}");
    }
}

#[test]
fn the_walkthrough_shows_the_trace_the_code_writes() {
    let documented = documented_lines();
    assert!(
        documented.len() >= 10,
        "the walkthrough shows only {} trace lines",
        documented.len()
    );

    let mut proc = Proc::start_with(&["--heartbeat", "0.2", "--drain-secs", "1"], |cmd| {
        cmd.env("RUST_LOG", "halley=trace").stderr(Stdio::piped());
    });
    let mut stderr = proc.child.stderr.take().unwrap();
    // Read as it comes, so the server never blocks on a full pipe.
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let addr = proc.addr;

    // The scenario of the walkthrough: one subscriber, one heartbeat, one
    // publish, then SIGTERM.
    let mut sub = Sub::sse(addr, "chat/room1", "", &[]);
    while !sub.next_block().is_comment() {}
    publish(addr, "chat/room1", "hello");
    assert_eq!(sub.next_event().data(), "hello");
    proc.signal(libc::SIGTERM);
    sub.expect_drain();
    drop(sub);
    let (status, _) = proc
        .wait_exit(Duration::from_secs(5))
        .expect("halley exits after the drain");
    assert_eq!(status.code(), Some(0));

    // Each line's message, after env_logger's `[time LEVEL target] `.
    let log = log.join().unwrap();
    let traced: Vec<String> = log
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, message)| normalise(message)))
        .collect();
    let mut from = 0;
    for line in documented {
        let want = normalise(line);
        match traced[from..].iter().position(|t| *t == want) {
            Some(at) => from += at + 1,
            None => {
                panic!("the walkthrough's trace line {line:?} is not in the log, in order:\n{log}")
            }
        }
    }
}

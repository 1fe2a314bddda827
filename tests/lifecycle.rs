//! The `halley` binary as a process: the `listening on` line, `--help`,
//! graceful shutdown on SIGTERM and SIGINT with every kind of client open,
//! the default `--max-connections` under a low descriptor limit, running out
//! of descriptors without spinning, and `/stats` counting what happened.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn help_lists_the_flags_and_bad_flags_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_halley"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--max-connections",
        "--max-body",
        "--header-timeout",
        "--idle-timeout",
        "--buffer",
        "--message-ttl",
        "--max-queued-bytes",
        "--heartbeat",
        "--longpoll-timeout",
        "--publish-token",
        "--cors-origin",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_halley"))
        .arg("--frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn command_line_flags_reach_the_server() {
    let proc = Proc::start(&[
        "--heartbeat",
        "0.15",
        "--longpoll-timeout",
        "0.2",
        "--buffer",
        "2",
        "--publish-token",
        "tok",
        "--cors-origin",
        "https://flags.example",
        "--sse-retry",
        "777",
        "--max-body",
        "10",
    ]);
    let addr = proc.addr;
    let ch = channel("flags");
    let auth = ["Authorization: Bearer tok"];
    call(addr, "POST", &format!("/pub/{ch}"), &[], b"x").assert_error(401);
    call(addr, "POST", &format!("/pub/{ch}"), &auth, b"12345678901").assert_error(413);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let r = call(
                addr,
                "POST",
                &format!("/pub/{ch}"),
                &auth,
                format!("m{i}").as_bytes(),
            );
            assert_eq!(r.status, 201);
            assert_eq!(
                r.header("access-control-allow-origin"),
                Some("https://flags.example")
            );
            r.json()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    // --buffer 2: the first message is gone.
    let body = get(addr, &format!("/sub/{ch}?since=earliest")).json();
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
    assert_eq!(body["messages"][0]["id"].as_str().unwrap(), ids[1]);
    // --longpoll-timeout 0.2
    let r = get(addr, &format!("/sub/{ch}?since={}", ids[2]));
    assert_eq!(r.status, 204);
    // --sse-retry 777 and --heartbeat 0.15
    let mut sub = Sub::open(addr, &format!("/sub/{ch}?transport=sse"), &[]);
    assert!(sub.next_block().raw.starts_with("retry: 777\n"));
    sub.skip_id_only_block();
    assert_eq!(sub.next_block().raw, ":\n\n");
}

#[test]
fn sigterm_ends_every_stream_answers_held_polls_and_exits_0() {
    let mut proc = Proc::start(&[]);
    let addr = proc.addr;
    let ch = channel("term");
    let mut sse = Sub::sse(addr, &ch, "", &[]);
    let mut stream = Sub::stream(addr, &ch, "");
    let mut sse10 = Client::connect(addr);
    sse10.send(format!("GET /sub/{ch}?transport=sse HTTP/1.0\r\n\r\n"));
    assert_eq!(sse10.read_head().status, 200);
    let last = publish(addr, &ch, "before");
    assert_eq!(sse.next_event().data(), "before");
    assert_eq!(stream.next_json()["data"].as_str().unwrap(), "before");
    let mut poll = Client::connect(addr);
    poll.request("GET", &format!("/sub/{ch}?since={last}"), &[], b"");
    let mut idle = Client::connect(addr);
    idle.request("GET", "/healthz", &[], b"");
    assert_eq!(idle.read_response().body, b"ok");
    wait_subscribers(addr, &ch, 4);

    proc.signal(libc::SIGTERM);
    let signalled = std::time::Instant::now();

    // Streams end with the terminating chunk, then the connection closes;
    // SSE is told when to come back first.
    sse.expect_drain();
    stream.expect_end();
    // HTTP/1.0 streams end by closing.
    let rest = sse10.read_to_end();
    assert!(String::from_utf8(rest).unwrap().contains("data: before\n"));
    // The held long-poll gets an answer it can resume from.
    let r = poll.read_response();
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("halley-cursor"), Some(last.as_str()));
    assert!(r.closes());
    poll.expect_closed();
    idle.expect_closed();
    // No new connections are taken any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
    drop((sse, stream, sse10, poll, idle));

    let (status, _) = proc
        .wait_exit(Duration::from_secs(2).saturating_sub(signalled.elapsed()))
        .expect("halley exits within 2 s of SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_exits_within_2_s_even_if_clients_do_not_close() {
    let mut proc = Proc::start(&[]);
    let addr = proc.addr;
    let ch = channel("linger");
    let mut sse = Sub::sse(addr, &ch, "", &[]);
    let mut half = Client::connect(addr);
    half.send("GET /healthz HTTP/1.1\r\nHost:");
    // The half-sent request is being read once /stats shows it as "other".
    wait_until("the partial request is accepted", || {
        stats(addr)["connections"]["other"].as_u64().unwrap() >= 2
    });
    proc.signal(libc::SIGTERM);
    let signalled = std::time::Instant::now();
    // The client reads its end but keeps its socket open.
    sse.expect_drain();
    let (status, took) = proc
        .wait_exit(Duration::from_millis(2500))
        .expect("halley exits even when clients linger");
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() <= Duration::from_secs(2),
        "exit took {took:?} after the stream ended"
    );
    drop((sse, half));
}

#[test]
fn a_request_in_flight_at_sigterm_is_answered_with_close() {
    let mut proc = Proc::start(&[]);
    let addr = proc.addr;
    let ch = channel("inflight");
    let mut sse = Sub::sse(addr, &ch, "", &[]);
    let mut c = Client::connect(addr);
    c.send(format!(
        "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nla"
    ));
    wait_until("the body is being read", || {
        stats(addr)["connections"]["other"].as_u64().unwrap() >= 2
    });
    proc.signal(libc::SIGTERM);
    // The stream ending shows that shutdown has begun.
    sse.expect_drain();
    c.send("st");
    let r = c.read_response();
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.closes(), "{r:?}");
    c.expect_closed();
    drop((sse, c));
    let (status, _) = proc
        .wait_exit(Duration::from_secs(2))
        .expect("halley exits within 2 s of SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigint_shuts_down_gracefully_too() {
    let mut proc = Proc::start(&[]);
    let ch = channel("int");
    let mut sse = Sub::sse(proc.addr, &ch, "", &[]);
    proc.signal(libc::SIGINT);
    sse.expect_drain();
    drop(sse);
    let (status, _) = proc
        .wait_exit(Duration::from_secs(2))
        .expect("halley exits within 2 s of SIGINT");
    assert_eq!(status.code(), Some(0));
}

/// Runs halley with an open-file limit of `n`, soft and hard.
fn with_fd_limit(n: u64) -> impl FnOnce(&mut Command) {
    move |cmd: &mut Command| {
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

#[test]
fn default_max_connections_sits_just_under_the_fd_limit() {
    let proc = Proc::start_with(&[], with_fd_limit(64));
    let addr = proc.addr;
    // Fill every slot but one with idle keep-alive connections, so that the
    // /stats below takes the last.
    let mut held = Vec::new();
    let mut limit = None;
    for i in 0..64 {
        let mut c = Client::connect(addr);
        c.request("GET", "/healthz", &[], b"");
        let r = c.read_response();
        if r.status == 503 {
            r.assert_error(503);
            c.expect_closed();
            limit = Some(i);
            break;
        }
        assert_eq!(r.body, b"ok");
        held.push(c);
    }
    let limit = limit.expect("a 503 before running out of descriptors");
    // Just under 64: room for the listener, poll, pipe and stdio, not more.
    assert!((16..64).contains(&limit), "503 after {limit} connections");
    // Nothing failed at accept: the limit came first.
    drop(held.pop());
    wait_until("a slot frees", || get(addr, "/healthz").status == 200);
    let mut c = held.pop().unwrap();
    c.request("GET", "/stats", &[], b"");
    let s = c.read_response().json();
    assert_eq!(s["accept_errors"].as_u64().unwrap(), 0, "{s:?}");
}

#[test]
fn running_out_of_descriptors_refuses_waiting_clients_without_spinning_and_recovers() {
    let proc = Proc::start_with(&["--max-connections", "1000"], |cmd| {
        with_fd_limit(48)(cmd);
        // One warning per failed accept; keep a failure from flooding the output.
        cmd.env("RUST_LOG", "error");
    });
    let addr = proc.addr;
    let mut clients: Vec<Client> = (0..60)
        .map(|_| {
            let mut c = Client::connect(addr);
            c.request("GET", "/healthz", &[], b"");
            c
        })
        .collect();
    // The first ones are accepted and answered; once descriptors run out,
    // the rest are accepted on the spare descriptor only to be told 503 and
    // closed: none is left waiting in the backlog.
    let (mut answered, mut refused) = (0, 0);
    let mut held = Vec::new();
    for mut c in clients.drain(..) {
        let r = c.read_response();
        match r.status {
            200 => {
                answered += 1;
                held.push(c);
            }
            _ => {
                r.assert_error(503);
                assert!(r.text().contains("out of file descriptors"), "{}", r.text());
                c.expect_closed();
                refused += 1;
            }
        }
    }
    assert!(
        (10..60).contains(&answered) && answered + refused == 60,
        "{answered} of 60 answered, {refused} refused, under a limit of 48 descriptors"
    );
    // Out of descriptors with connections held: the loop must not spin.
    // (Measured over 2 s: a back-off that misbehaves may look fine at first.)
    let window = Duration::from_secs(2);
    let before = proc.cpu_time();
    std::thread::sleep(window);
    let used = proc.cpu_time() - before;
    assert!(
        used < Duration::from_millis(300),
        "used {used:?} of CPU in {window:?} while out of descriptors"
    );
    // Free descriptors: new clients are served.
    drop(held);
    wait_until("descriptors free again", || {
        get(addr, "/healthz").status == 200
    });
    // (The wait's own first tries may have been refused too.)
    let s = stats(addr);
    let refused_out_of_fds = s["limits"]["refused_out_of_fds"].as_u64().unwrap();
    assert!(refused_out_of_fds >= refused, "{s:?}");
    assert!(s["accept_errors"].as_u64().unwrap() >= refused, "{s:?}");
}

#[test]
fn stats_count_connections_channels_and_messages() {
    let addr = start_default();
    let ch = channel("stats");
    let s = stats(addr);
    for key in [
        "connections",
        "channels",
        "messages_published",
        "messages_delivered",
        "bytes_queued",
        "slow_consumer_closes",
        "connections_accepted",
        "accept_errors",
        "timeouts",
        "rss_bytes",
        "uptime_secs",
        "rejections",
    ] {
        assert!(!s[key].is_null(), "/stats lacks {key}: {s:?}");
    }
    assert_eq!(
        s["connections"]["total"].as_u64().unwrap(),
        1,
        "just this request"
    );
    assert_eq!(s["messages_published"].as_u64().unwrap(), 0);
    assert!(s["rss_bytes"].as_u64().unwrap() > 0);

    let mut sse1 = Sub::sse(addr, &ch, "", &[]);
    let mut sse2 = Sub::sse(addr, &ch, "", &[]);
    let mut stream = Sub::stream(addr, &ch, "");
    let mut poll = Client::connect(addr);
    poll.request("GET", &format!("/sub/{ch}"), &[], b"");
    wait_subscribers(addr, &ch, 4);
    let s = stats(addr);
    let conns = &s["connections"];
    assert_eq!(conns["sse"].as_u64().unwrap(), 2, "{s:?}");
    assert_eq!(conns["stream"].as_u64().unwrap(), 1, "{s:?}");
    assert_eq!(conns["longpoll"].as_u64().unwrap(), 1, "{s:?}");
    assert_eq!(conns["total"].as_u64().unwrap(), 5, "{s:?}");
    assert_eq!(s["channels"].as_u64().unwrap(), 1);

    for i in 0..3 {
        publish(addr, &ch, &format!("m{i}"));
    }
    assert_eq!(poll.read_response().status, 200);
    for _ in 0..3 {
        sse1.next_event();
        sse2.next_event();
        stream.next_json();
    }
    publish(addr, &channel("other"), "x");
    let s = stats(addr);
    assert_eq!(s["messages_published"].as_u64().unwrap(), 4);
    // 3 messages to 3 streams, plus the first to the poller.
    assert_eq!(s["messages_delivered"].as_u64().unwrap(), 10, "{s:?}");
    assert_eq!(s["channels"].as_u64().unwrap(), 2);
    assert_eq!(s["connections"]["longpoll"].as_u64().unwrap(), 0);
    assert_eq!(s["bytes_queued"].as_u64().unwrap(), 0);
}

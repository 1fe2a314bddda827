//! Bad input: every rejection status with its JSON body, whether the
//! connection survives it (only when the framing can still be trusted), the
//! 8 KiB head and `max_body` limits at their exact boundaries, the counters in
//! `/stats`, and one client's garbage leaving everyone else alone.

mod common;

use common::*;

/// How a rejected request must leave its connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum After {
    /// The framing is still trusted: the next request on it is served.
    KeepAlive,
    /// The framing is lost: `Connection: close`, then the server closes.
    Close,
}
use After::*;

fn check(addr: std::net::SocketAddr, raw: &[u8], status: u16, after: After) -> Response {
    let what = String::from_utf8_lossy(&raw[..raw.len().min(120)]).into_owned();
    let mut c = Client::connect(addr);
    c.send(raw);
    let r = c.read_response();
    assert_eq!(
        r.status,
        status,
        "{what:?}: {r:?} {}",
        String::from_utf8_lossy(&r.body)
    );
    r.assert_error(status);
    match after {
        KeepAlive => {
            assert_eq!(r.header("connection"), Some("keep-alive"), "{what:?}");
            c.request("GET", "/healthz", &[], b"");
            let next = c.read_response();
            assert_eq!(
                next.body, b"ok",
                "{what:?}: connection unusable after the error"
            );
        }
        Close => {
            assert!(r.closes(), "{what:?} must close: {r:?}");
            c.expect_closed();
        }
    }
    r
}

#[test]
fn framing_errors_are_answered_and_close_the_connection() {
    let addr = start(Config {
        max_body: 1000,
        ..config()
    });
    let cases: &[(&str, &[u8], u16)] = &[
        ("not HTTP", b"GARBAGE\r\n\r\n", 400),
        ("binary", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        ("bad version", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 400),
        ("space in target", b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("no Host in 1.1", b"GET /healthz HTTP/1.1\r\n\r\n", 400),
        ("two Hosts", b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("header without colon", b"GET /healthz HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n", 400),
        ("NUL in a header", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n", 400),
        ("NUL in a name", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX\0A: ab\r\n\r\n", 400),
        (
            "Content-Length and Transfer-Encoding",
            b"POST /pub/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "Transfer-Encoding and Content-Length",
            b"POST /pub/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "conflicting Content-Lengths",
            b"POST /pub/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
        ),
        ("negative Content-Length", b"POST /pub/x HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        ("list Content-Length", b"POST /pub/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
        ("hex Content-Length", b"POST /pub/x HTTP/1.1\r\nHost: t\r\nContent-Length: 0x3\r\n\r\nabc", 400),
        ("unknown Transfer-Encoding", b"POST /pub/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (
            "gzip, chunked",
            b"POST /pub/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (
            "chunked in HTTP/1.0",
            b"POST /pub/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "malformed chunk size",
            b"POST /pub/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        (
            "chunk data overrun",
            b"POST /pub/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        ("Content-Length over max_body", b"POST /pub/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", 413),
        ("unsupported Expect", b"POST /pub/x HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx", 417),
    ];
    for (what, raw, status) in cases {
        eprintln!("case: {what}");
        check(addr, raw, *status, Close);
    }
    // Behind a good request, the good one is answered first.
    let mut c = Client::connect(addr);
    c.send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().body, b"ok");
    let r = c.read_response();
    r.assert_error(400);
    assert!(r.closes());
    c.expect_closed();
    // None of them published anything.
    assert_eq!(get(addr, "/pub/x").status, 404);
}

#[test]
fn route_errors_keep_the_connection() {
    let addr = start_default();
    let ch = channel("route");
    let long_name = "x".repeat(129);
    let cases: Vec<(String, Vec<u8>, u16)> = vec![
        (
            "unknown route".into(),
            request_bytes("GET", "/nope", &[], b""),
            404,
        ),
        (
            "unknown under /pub".into(),
            request_bytes("GET", "/pubx/a", &[], b""),
            404,
        ),
        (
            "no channel".into(),
            request_bytes("GET", "/pub/never-published", &[], b""),
            404,
        ),
        (
            "delete unknown".into(),
            request_bytes("DELETE", "/pub/never-published", &[], b""),
            404,
        ),
        (
            "invalid UTF-8".into(),
            request_bytes("POST", &format!("/pub/{ch}"), &[], b"ab\xff\xfe"),
            400,
        ),
        (
            "overlong UTF-8".into(),
            request_bytes("POST", &format!("/pub/{ch}"), &[], b"\xc0\xaf"),
            400,
        ),
        (
            "empty channel".into(),
            request_bytes("POST", "/pub/", &[], b"x"),
            400,
        ),
        (
            "129-byte channel".into(),
            request_bytes("POST", &format!("/pub/{long_name}"), &[], b"x"),
            400,
        ),
        (
            "space in channel".into(),
            request_bytes("POST", "/pub/a%20b", &[], b"x"),
            400,
        ),
        (
            "bang in channel".into(),
            request_bytes("GET", "/sub/bad!name", &[], b""),
            400,
        ),
        (
            "non-ASCII channel".into(),
            request_bytes("POST", "/pub/caf%C3%A9", &[], b"x"),
            400,
        ),
        (
            "broken escape".into(),
            request_bytes("POST", "/pub/a%zz", &[], b"x"),
            400,
        ),
        (
            "LF in event".into(),
            request_bytes("POST", &format!("/pub/{ch}?event=a%0Ab"), &[], b"x"),
            400,
        ),
        (
            "CR in event".into(),
            request_bytes("POST", &format!("/pub/{ch}?event=a%0Db"), &[], b"x"),
            400,
        ),
        (
            "CRLF in event".into(),
            request_bytes(
                "POST",
                &format!("/pub/{ch}?event=%0D%0Adata:%20x"),
                &[],
                b"x",
            ),
            400,
        ),
        // Publishers cannot forge halley's own signals.
        (
            "event gap".into(),
            request_bytes("POST", &format!("/pub/{ch}?event=gap"), &[], b"x"),
            400,
        ),
        (
            "event deleted".into(),
            request_bytes("POST", &format!("/pub/{ch}?event=deleted"), &[], b"x"),
            400,
        ),
        // halley.js waits and reconnects on a drain event: no publisher may send one.
        (
            "event drain".into(),
            request_bytes("POST", &format!("/pub/{ch}?event=drain"), &[], b"x"),
            400,
        ),
        (
            "unknown transport".into(),
            request_bytes("GET", &format!("/sub/{ch}?transport=pigeon"), &[], b""),
            400,
        ),
        (
            "bad cursor".into(),
            request_bytes("GET", &format!("/sub/{ch}?since=bogus"), &[], b""),
            400,
        ),
        (
            "bad Last-Event-ID".into(),
            request_bytes(
                "GET",
                &format!("/sub/{ch}?transport=sse"),
                &["Last-Event-ID: nope"],
                b"",
            ),
            400,
        ),
    ];
    for (what, raw, status) in &cases {
        eprintln!("case: {what}");
        check(addr, raw, *status, KeepAlive);
    }
    // Nothing was published by the refused requests.
    assert_eq!(get(addr, &format!("/pub/{ch}")).status, 404);
}

#[test]
fn wrong_methods_get_405_with_allow() {
    let addr = start_default();
    let cases = [
        ("POST", "/sub/a", "GET, HEAD, OPTIONS"),
        ("DELETE", "/sub/a", "GET, HEAD, OPTIONS"),
        ("PUT", "/pub/a", "GET, HEAD, POST, DELETE, OPTIONS"),
        ("PATCH", "/pub/a", "GET, HEAD, POST, DELETE, OPTIONS"),
        ("POST", "/healthz", "GET, HEAD, OPTIONS"),
        ("DELETE", "/stats", "GET, HEAD, OPTIONS"),
    ];
    for (method, path, allow) in cases {
        let raw = request_bytes(method, path, &[], b"");
        let r = check(addr, &raw, 405, KeepAlive);
        let got: Vec<&str> = r
            .header("allow")
            .expect("Allow header")
            .split(", ")
            .collect();
        let want: Vec<&str> = allow.split(", ").collect();
        let mut sorted_got = got.clone();
        sorted_got.sort();
        let mut sorted_want = want.clone();
        sorted_want.sort();
        assert_eq!(sorted_got, sorted_want, "{method} {path}");
    }
}

/// A request whose head is exactly `len` bytes, request line included.
fn head_of_len(path: &str, len: usize) -> Vec<u8> {
    let start = format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Pad: ");
    let pad = len - start.len() - 4;
    format!("{start}{}\r\n\r\n", "p".repeat(pad)).into_bytes()
}

#[test]
fn heads_over_8_kib_get_431_counting_the_request_line() {
    let addr = start_default();
    // Exactly 8 KiB is fine, one byte more is not.
    let mut c = Client::connect(addr);
    c.send(head_of_len("/healthz", 8192));
    assert_eq!(c.read_response().body, b"ok");
    check(addr, &head_of_len("/healthz", 8193), 431, Close);
    // The request line alone can be what is too long.
    let long_target = format!(
        "GET /healthz?{} HTTP/1.1\r\nHost: t\r\n\r\n",
        "q".repeat(8200)
    );
    check(addr, long_target.as_bytes(), 431, Close);
    // Many small headers.
    let many: String = (0..700).map(|i| format!("X-{i}: v\r\n")).collect();
    check(
        addr,
        format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(),
        431,
        Close,
    );
    // A head that never ends is refused as soon as it passes the limit,
    // without waiting for a timeout.
    let mut c = Client::connect(addr);
    c.send(format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX: {}",
        "a".repeat(9000)
    ));
    let r = c.read_response();
    r.assert_error(431);
    c.expect_closed();
}

#[test]
fn bodies_over_max_body_get_413() {
    let addr = start(Config {
        max_body: 100,
        ..config()
    });
    let ch = channel("big");
    let exact = "b".repeat(100);
    let r = call(addr, "POST", &format!("/pub/{ch}"), &[], exact.as_bytes());
    assert_eq!(r.status, 201);
    check(
        addr,
        &request_bytes("POST", &format!("/pub/{ch}"), &[], &[b'b'; 101]),
        413,
        Close,
    );
    // Chunked: the decoded size counts, however it is split.
    let chunked = format!(
        "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         32\r\n{}\r\n33\r\n{}\r\n0\r\n\r\n",
        "c".repeat(50),
        "c".repeat(51)
    );
    check(addr, chunked.as_bytes(), 413, Close);
    let chunked_ok = format!(
        "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         32\r\n{}\r\n32\r\n{}\r\n0\r\n\r\n",
        "c".repeat(50),
        "c".repeat(50)
    );
    let mut c = Client::connect(addr);
    c.send(chunked_ok);
    assert_eq!(c.read_response().status, 201);
    // A huge declared chunk is refused before its data arrives.
    let mut c = Client::connect(addr);
    c.send(format!(
        "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffff\r\n"
    ));
    c.read_response().assert_error(413);
    c.expect_closed();
    assert_eq!(
        get(addr, &format!("/pub/{ch}")).json()["messages"]
            .as_u64()
            .unwrap(),
        2
    );
}

#[test]
fn stats_count_rejections_by_status() {
    let addr = start_default();
    for _ in 0..3 {
        get(addr, "/nope");
    }
    call(addr, "POST", "/sub/a", &[], b"");
    let mut c = Client::connect(addr);
    c.send("BAD\r\n\r\n");
    c.read_response().assert_error(400);
    let mut c = Client::connect(addr);
    c.send(head_of_len("/", 9000));
    c.read_response().assert_error(431);
    let s = stats(addr);
    let r = &s["rejections"];
    assert_eq!(r["404"].as_u64().unwrap(), 3, "{s:?}");
    assert_eq!(r["405"].as_u64().unwrap(), 1, "{s:?}");
    assert_eq!(r["400"].as_u64().unwrap(), 1, "{s:?}");
    assert_eq!(r["431"].as_u64().unwrap(), 1, "{s:?}");
}

/// A small deterministic generator, so a failing case can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn one_clients_garbage_does_not_disturb_a_concurrent_subscriber() {
    let addr = start(Config {
        max_body: 4096,
        ..config()
    });
    let ch = channel("calm");
    let mut sse = Sub::sse(addr, &ch, "", &[]);
    let mut stream = Sub::stream(addr, &ch, "");
    let mut publisher = Client::connect(addr);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let nasty: Vec<Vec<u8>> = vec![
        b"GET /sub/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        b"\0\0\0\0\r\n\r\n".to_vec(),
        vec![b'A'; 20_000],
        format!("POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\n\r\n").into_bytes(),
        format!("POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc").into_bytes(),
        b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec(),
        format!("GET /sub/{ch}?transport=sse HTTP/1.1\r\nHost: t\r\n\r\n\x01\x02garbage after a stream\r\n\r\n").into_bytes(),
    ];
    let mut open = Vec::new();
    for round in 0..40u64 {
        // A fresh connection spits garbage: random bytes or a nasty request,
        // and is left open or dropped half way.
        let mut g = Client::connect(addr);
        if round % 2 == 0 {
            let len = (rng.next() % 3000) as usize + 1;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            g.send(bytes);
        } else {
            g.send(&nasty[(round as usize / 2) % nasty.len()]);
        }
        if round % 3 == 0 {
            open.push(g);
        }
        publisher.request(
            "POST",
            &format!("/pub/{ch}"),
            &[],
            format!("msg {round}").as_bytes(),
        );
        assert_eq!(publisher.read_response().status, 201);
    }
    for round in 0..40 {
        let ev = sse.next_event();
        assert_eq!(ev.data(), format!("msg {round}"));
        let line = stream.next_json();
        assert_eq!(line["data"].as_str().unwrap(), format!("msg {round}"));
    }
    assert_eq!(get(addr, "/healthz").body, b"ok");
    drop(open);
}

//! HTTP/1.1 as a client sees it: keep-alive, pipelining, `Expect:
//! 100-continue`, chunked request bodies, HEAD, HTTP/1.0 clients,
//! `Connection: close`, CORS, and the small endpoints (`/healthz`, `/stats`,
//! `GET /pub/{ch}`, publishing).

mod common;

use common::*;

#[test]
fn healthz_answers_ok() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    c.send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        (r.version.as_str(), r.status, r.reason.as_str()),
        ("HTTP/1.1", 200, "OK")
    );
    assert_eq!(r.body, b"ok");
    assert_eq!(r.header("content-length"), Some("2"));
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let addr = start_default();
    let ch = channel("ka");
    let mut c = Client::connect(addr);
    for i in 0..50 {
        c.request(
            "POST",
            &format!("/pub/{ch}"),
            &[],
            format!("m{i}").as_bytes(),
        );
        let r = c.read_response();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(seq_of(r.json()["id"].as_str().unwrap()), i + 1);
        c.request("GET", "/healthz", &[], b"");
        assert_eq!(c.read_response().body, b"ok");
    }
    let s = stats(addr);
    // One connection did all 100 requests (plus the one asking for stats).
    assert_eq!(s["connections_accepted"].as_u64().unwrap(), 2, "{s:?}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let addr = start_default();
    let ch = channel("pipe");
    let mut c = Client::connect(addr);
    let mut batch = Vec::new();
    batch.extend(request_bytes("POST", &format!("/pub/{ch}"), &[], b"one"));
    batch.extend(request_bytes(
        "POST",
        &format!("/pub/{ch}?event=e"),
        &[],
        b"two",
    ));
    batch.extend(request_bytes("GET", &format!("/pub/{ch}"), &[], b""));
    batch.extend(request_bytes("GET", "/no/such/route", &[], b""));
    batch.extend(request_bytes(
        "GET",
        &format!("/sub/{ch}?since=earliest"),
        &[],
        b"",
    ));
    batch.extend(request_bytes("HEAD", "/healthz", &[], b""));
    batch.extend(request_bytes("GET", "/healthz", &[], b""));
    c.send(&batch);

    let one = c.read_response();
    assert_eq!(one.status, 201);
    assert_eq!(seq_of(one.json()["id"].as_str().unwrap()), 1);
    let two = c.read_response();
    assert_eq!(two.status, 201);
    assert_eq!(seq_of(two.json()["id"].as_str().unwrap()), 2);
    let info = c.read_response();
    assert_eq!(info.status, 200);
    assert_eq!(info.json()["messages"].as_u64().unwrap(), 2);
    c.read_response().assert_error(404);
    let poll = c.read_response().json();
    let messages = poll["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["data"].as_str().unwrap(), "one");
    assert_eq!(messages[1]["event"].as_str().unwrap(), "e");
    let head = c.read_head_response();
    assert_eq!(head.header("content-length"), Some("2"));
    assert_eq!(c.read_response().body, b"ok");
    // All seven answered on one live connection, nothing extra in between.
    assert!(c.pending().is_empty());
    c.expect_silence(std::time::Duration::from_millis(50));
}

#[test]
fn pipelined_requests_split_at_every_byte_boundary() {
    // The same two requests, written in two pieces split at each offset: the
    // state machine must treat "need more bytes" as normal wherever it falls.
    let addr = start_default();
    let ch = channel("split");
    let mut raw = request_bytes("POST", &format!("/pub/{ch}"), &[], b"hello");
    raw.extend(request_bytes("GET", "/healthz", &[], b""));
    let mut c = Client::connect(addr);
    for cut in (1..raw.len()).step_by(7) {
        c.send(&raw[..cut]);
        c.send(&raw[cut..]);
        assert_eq!(c.read_response().status, 201, "cut at {cut}");
        assert_eq!(c.read_response().body, b"ok", "cut at {cut}");
    }
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    let addr = start_default();
    let ch = channel("expect");
    let mut c = Client::connect(addr);
    c.send(format!(
        "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    ));
    assert_eq!(c.read_bytes(25), b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send("hello");
    let r = c.read_response();
    assert_eq!(r.status, 201);
    let poll = get(addr, &format!("/sub/{ch}?since=earliest")).json();
    assert_eq!(poll["messages"][0]["data"].as_str().unwrap(), "hello");

    // A body sent along with the head needs no interim response.
    c.send(format!(
        "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi"
    ));
    let r = c.read_response();
    assert_eq!(r.status, 201, "no 100 Continue before this: {r:?}");
}

#[test]
fn expect_100_continue_with_a_too_large_body_is_refused_without_continue() {
    let addr = start(Config {
        max_body: 16,
        ..config()
    });
    let mut c = Client::connect(addr);
    c.send("POST /pub/x HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_response();
    r.assert_error(413);
    assert!(r.closes());
    c.expect_closed();
}

#[test]
fn chunked_request_bodies_are_decoded() {
    let addr = start_default();
    let ch = channel("chunked");
    let mut c = Client::connect(addr);
    // Several chunks, an extension, a trailer, and a pipelined request after.
    c.send(format!(
        "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n1;ext=1\r\n,\r\nA\r\n chunked!\n\r\n0\r\nX-Trailer: y\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    ));
    assert_eq!(c.read_response().status, 201);
    assert_eq!(c.read_response().body, b"ok");
    // The same body trickled a few bytes at a time.
    let body = "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    c.send(format!(
        "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    ));
    for piece in body.as_bytes().chunks(3) {
        c.send(piece);
    }
    assert_eq!(c.read_response().status, 201);
    let poll = get(addr, &format!("/sub/{ch}?since=earliest")).json();
    assert_eq!(
        poll["messages"][0]["data"].as_str().unwrap(),
        "hello, chunked!\n"
    );
    assert_eq!(
        poll["messages"][1]["data"].as_str().unwrap(),
        "abc0123456789abcdef"
    );
}

#[test]
fn head_gets_the_get_head_without_a_body() {
    let addr = start_default();
    let ch = channel("head");
    publish(addr, &ch, "x");
    let mut c = Client::connect(addr);
    for path in ["/healthz", "/stats", &format!("/pub/{ch}"), "/"] {
        c.request("HEAD", path, &[], b"");
        let head = c.read_head_response();
        assert_eq!(head.status, 200, "HEAD {path}");
        let len: usize = head.header("content-length").unwrap().parse().unwrap();
        assert!(len > 0, "HEAD {path} announces the GET body length");
        // No body follows: the next response on the connection starts at once.
        c.request("GET", "/healthz", &[], b"");
        let next = c.read_response();
        assert_eq!(
            (next.status, next.body.as_slice()),
            (200, &b"ok"[..]),
            "after HEAD {path}"
        );
    }
    // HEAD on a subscription answers the head and does not subscribe.
    c.request("HEAD", &format!("/sub/{ch}?transport=sse"), &[], b"");
    let head = c.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    c.request("GET", "/healthz", &[], b"");
    assert_eq!(c.read_response().body, b"ok");
    assert_eq!(subscribers(addr, &ch), 0);
}

#[test]
fn head_of_an_error_has_no_body() {
    // A response to HEAD never carries a body (RFC 9110 9.3.2), errors
    // included; otherwise the client reads the error body as the start of the
    // next response.
    let addr = start_default();
    let mut c = Client::connect(addr);
    c.request("HEAD", "/no/such/route", &[], b"");
    let head = c.read_head_response();
    assert_eq!(head.status, 404);
    c.request("GET", "/healthz", &[], b"");
    let next = c.read_until(b"\r\n");
    assert_eq!(
        String::from_utf8_lossy(&next),
        "HTTP/1.1 200 OK\r\n",
        "the 404 to HEAD carried a body, read here before the next status line"
    );
}

#[test]
fn http10_clients_get_a_response_and_a_close() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    c.send("GET /healthz HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    assert!(r.closes(), "{r:?}");
    assert!(!r.has_header("transfer-encoding"));
    c.expect_closed();

    // HTTP/1.0 with keep-alive asked for keeps the connection.
    let mut c = Client::connect(addr);
    for _ in 0..2 {
        c.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.body, b"ok");
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }

    // Publishing over HTTP/1.0 (no Host header needed) works too.
    let ch = channel("h10");
    let mut c = Client::connect(addr);
    c.send(format!(
        "POST /pub/{ch} HTTP/1.0\r\nContent-Length: 3\r\n\r\nold"
    ));
    let r = c.read_response();
    assert_eq!(r.status, 201);
    assert!(r.closes());
    c.expect_closed();
}

#[test]
fn connection_close_is_honoured() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    // The second request must never be answered: the first asked to close.
    c.send(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.body, b"ok");
    assert!(r.closes(), "{r:?}");
    c.expect_closed();
}

#[test]
fn cors_origin_is_on_every_response_and_preflight_is_answered() {
    let origin = "https://app.example";
    let addr = start(Config {
        cors_origin: origin.into(),
        longpoll_timeout: std::time::Duration::from_millis(200),
        ..config()
    });
    let ch = channel("cors");

    let mut c = Client::connect(addr);
    c.request(
        "OPTIONS",
        &format!("/pub/{ch}"),
        &[
            "Origin: https://app.example",
            "Access-Control-Request-Method: POST",
        ],
        b"",
    );
    let pre = c.read_response();
    assert_eq!(pre.status, 204);
    let methods = pre.header("access-control-allow-methods").unwrap();
    for m in ["GET", "POST", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = pre
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["authorization", "last-event-id", "content-type"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert_eq!(pre.header("access-control-allow-origin"), Some(origin));

    c.request("OPTIONS", &format!("/sub/{ch}"), &[], b"");
    let pre = c.read_response();
    assert_eq!(pre.status, 204);
    let methods = pre.header("access-control-allow-methods").unwrap();
    assert!(
        methods.contains("GET") && !methods.contains("POST"),
        "{methods}"
    );

    // Every kind of response carries the origin.
    let mut responses = vec![
        call(addr, "POST", &format!("/pub/{ch}"), &[], b"x"),
        get(addr, &format!("/pub/{ch}")),
        get(addr, &format!("/sub/{ch}?since=earliest")),
        get(addr, "/healthz"),
        get(addr, "/stats"),
        get(addr, "/nope"),
        call(addr, "POST", "/healthz", &[], b""),
        call(addr, "DELETE", "/pub/never-made", &[], b""),
        get(addr, &format!("/sub/{ch}")), // held, then 204
    ];
    responses.push(Sub::sse(addr, &ch, "", &[]).head);
    responses.push(Sub::stream(addr, &ch, "").head);
    for r in &responses {
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some(origin),
            "{r:?}"
        );
    }
    assert_eq!(responses.last().unwrap().status, 200);
    assert_eq!(responses[8].status, 204);
}

#[test]
fn publish_answers_id_channel_and_subscribers() {
    let addr = start_default();
    let ch = channel("pub");
    let r = call(addr, "POST", &format!("/pub/{ch}"), &[], b"first");
    assert_eq!(r.status, 201);
    let body = r.json();
    assert_eq!(keys(&body), vec!["id", "channel", "subscribers"]);
    let id = body["id"].as_str().unwrap();
    let (epoch, seq) = id.split_once('-').unwrap();
    assert_eq!(epoch.len(), 12, "epoch is 12 hex digits: {id}");
    assert!(epoch.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(seq, "1");
    assert_eq!(body["channel"].as_str().unwrap(), ch);
    assert_eq!(body["subscribers"].as_u64().unwrap(), 0);

    let _a = Sub::sse(addr, &ch, "", &[]);
    let _b = Sub::stream(addr, &ch, "");
    let r = call(addr, "POST", &format!("/pub/{ch}"), &[], b"second").json();
    assert_eq!(r["subscribers"].as_u64().unwrap(), 2);
    assert_eq!(r["id"].as_str().unwrap(), format!("{epoch}-2"));
    // Sequence numbers are per channel; the epoch is per server.
    let other = publish(addr, &channel("pub-other"), "x");
    assert_eq!(other, format!("{epoch}-1"));
}

#[test]
fn channel_info_reports_subscribers_messages_and_last_id() {
    let addr = start_default();
    let ch = channel("info");
    get(addr, &format!("/pub/{ch}")).assert_error(404);
    let _sub = Sub::sse(addr, &ch, "", &[]);
    let info = get(addr, &format!("/pub/{ch}")).json();
    assert_eq!(
        keys(&info),
        vec!["channel", "subscribers", "messages", "last_id"]
    );
    assert_eq!(info["channel"].as_str().unwrap(), ch);
    assert_eq!(info["subscribers"].as_u64().unwrap(), 1);
    assert_eq!(info["messages"].as_u64().unwrap(), 0);
    assert!(info["last_id"].is_null());
    publish(addr, &ch, "a");
    let last = publish(addr, &ch, "b");
    let info = get(addr, &format!("/pub/{ch}")).json();
    assert_eq!(info["messages"].as_u64().unwrap(), 2);
    assert_eq!(info["last_id"].as_str().unwrap(), last);
}

#[test]
fn channel_names_may_contain_slashes_dots_and_colons() {
    let addr = start_default();
    for name in ["chat/room1", "a.b:c_d-e", &"x".repeat(128)] {
        let r = call(addr, "POST", &format!("/pub/{name}"), &[], b"m");
        assert_eq!(r.status, 201, "{name}");
        assert_eq!(r.json()["channel"].as_str().unwrap(), name);
        let poll = get(addr, &format!("/sub/{name}?since=earliest")).json();
        assert_eq!(poll["messages"][0]["channel"].as_str().unwrap(), name);
    }
    // A percent-encoded slash names the same channel.
    let poll = get(addr, "/sub/chat%2Froom1?since=earliest").json();
    assert_eq!(poll["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn publish_token_guards_publishing_and_deleting_only() {
    let addr = start(Config {
        publish_token: Some("s3cret".into()),
        ..config()
    });
    let ch = channel("auth");
    let path = format!("/pub/{ch}");
    for auth in [
        &[][..],
        &["Authorization: Bearer wrong"],
        &["Authorization: s3cret"],
        &["Authorization: Basic s3cret"],
    ] {
        let r = call(addr, "POST", &path, auth, b"x");
        r.assert_error(401);
        let r = call(addr, "DELETE", &path, auth, b"");
        r.assert_error(401);
    }
    let r = call(addr, "POST", &path, &["Authorization: Bearer s3cret"], b"x");
    assert_eq!(r.status, 201);
    // Reading needs no token.
    assert_eq!(get(addr, &path).status, 200);
    assert_eq!(get(addr, &format!("/sub/{ch}?since=earliest")).status, 200);
    let r = call(
        addr,
        "DELETE",
        &path,
        &["Authorization: Bearer s3cret"],
        b"",
    );
    assert_eq!(r.status, 204);
    // A 401 is not a framing error: the connection stays usable.
    let mut c = Client::connect(addr);
    c.request("POST", &path, &[], b"x");
    c.read_response().assert_error(401);
    c.request("GET", "/healthz", &[], b"");
    assert_eq!(c.read_response().body, b"ok");
}

#[test]
fn index_page_is_served() {
    let addr = start_default();
    let r = get(addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
}

#[test]
fn a_large_pipelined_batch_is_answered_completely_and_in_order() {
    // More requests in one write than one read of the server takes.
    let addr = start_default();
    let ch = channel("batch");
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.extend(request_bytes(
            "POST",
            &format!("/pub/{ch}"),
            &[],
            format!("{i}").as_bytes(),
        ));
        batch.extend(request_bytes("GET", "/healthz", &["X-Pad: padding"], b""));
    }
    assert!(batch.len() > 32 * 1024);
    let mut c = Client::connect(addr);
    let writer = {
        let mut w = c.stream.try_clone().unwrap();
        std::thread::spawn(move || std::io::Write::write_all(&mut w, &batch).unwrap())
    };
    for i in 0..300 {
        let r = c.read_response();
        assert_eq!(r.status, 201, "request {i}");
        assert_eq!(seq_of(r.json()["id"].as_str().unwrap()), i + 1);
        assert_eq!(c.read_response().body, b"ok");
    }
    writer.join().unwrap();
}

#[test]
fn ids_are_never_reused_after_a_channel_is_deleted() {
    let addr = start_default();
    let ch = channel("reuse");
    let old: Vec<String> = (0..3).map(|_| publish(addr, &ch, "x")).collect();
    assert_eq!(
        call(addr, "DELETE", &format!("/pub/{ch}"), &[], b"").status,
        204
    );
    let new = publish(addr, &ch, "after");
    assert!(
        seq_of(&new) > seq_of(&old[2]),
        "{new} reuses an id from before the delete ({old:?})"
    );
    // A client that had everything before the delete resumes without a
    // refusal and gets the new message.
    let body = get(addr, &format!("/sub/{ch}?since={}", old[2])).json();
    assert_eq!(body["messages"][0]["id"].as_str().unwrap(), new);
}

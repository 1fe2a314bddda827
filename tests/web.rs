//! The browser-facing server: the embedded demo page and client with ETags,
//! `--static DIR` (content types, traversal refused, symlinks out of DIR
//! refused), and open publishing (its body limit, checked before the body is
//! read, and its per-address rate limit answered 429 with `Retry-After`).

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;

use common::*;
use halley::web::open_publish::OpenPrefix;

/// A fresh directory for one test's `--static` files.
fn static_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("halley-web-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("site/css")).unwrap();
    fs::write(dir.join("site/index.html"), "<h1>mine</h1>").unwrap();
    fs::write(dir.join("site/notes.txt"), "plain notes").unwrap();
    fs::write(dir.join("site/css/look.css"), "body{}").unwrap();
    fs::write(dir.join("site/.env"), "SECRET=1").unwrap();
    fs::write(dir.join("outside.txt"), "not for the web").unwrap();
    std::os::unix::fs::symlink(dir.join("outside.txt"), dir.join("site/escape.txt")).unwrap();
    dir
}

fn start_static(name: &str) -> SocketAddr {
    let dir = static_dir(name);
    start(halley::Config {
        static_dir: Some(dir.join("site")),
        ..config()
    })
}

#[test]
fn the_demo_page_and_client_are_embedded_with_etags() {
    let addr = start_default();
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(
        page.text().contains("/halley.js"),
        "the page loads the client"
    );
    let etag = page.header("etag").expect("an ETag").to_owned();

    let client = get(addr, "/halley.js");
    assert_eq!(client.status, 200);
    assert_eq!(
        client.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(client.text().contains("subscribe"));

    let cached = call(addr, "GET", "/", &[&format!("If-None-Match: {etag}")], b"");
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(etag.as_str()));
    assert!(
        !cached.has_header("content-length"),
        "a 304 announces no body"
    );

    let stale = call(addr, "GET", "/", &["If-None-Match: \"other\""], b"");
    assert_eq!(stale.status, 200);

    let head = call(addr, "HEAD", "/", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
    assert!(head.body.is_empty());

    get(addr, "/no/such/page").assert_error(404);
    let post = call(addr, "POST", "/", &[], b"x");
    post.assert_error(405);
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
}

#[test]
fn static_serves_the_directory_with_content_types_and_etags() {
    let addr = start_static("serve");
    let index = get(addr, "/");
    assert_eq!((index.status, index.text()), (200, "<h1>mine</h1>"));
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );

    let notes = get(addr, "/notes.txt");
    assert_eq!((notes.status, notes.text()), (200, "plain notes"));
    assert!(notes
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));

    let css = get(addr, "/css/look.css?v=2");
    assert_eq!((css.status, css.text()), (200, "body{}"));
    assert!(css.header("content-type").unwrap().starts_with("text/css"));

    let etag = notes.header("etag").unwrap().to_owned();
    let cached = call(
        addr,
        "GET",
        "/notes.txt",
        &[&format!("If-None-Match: {etag}")],
        b"",
    );
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    // The client stays available for the user's own pages.
    let client = get(addr, "/halley.js");
    assert_eq!(client.status, 200);
    assert!(client.text().contains("subscribe"));
    get(addr, "/missing.html").assert_error(404);
}

#[test]
fn static_refuses_every_way_out_of_the_directory() {
    let addr = start_static("escape");
    for target in [
        "/../outside.txt",
        "/css/../../outside.txt",
        "/%2e%2e/outside.txt",
        "/%2E%2E/outside.txt",
        "/..%2foutside.txt",
        "/css%2f..%2f..%2foutside.txt",
        "/..%5coutside.txt",
        "/escape.txt",
        "/.env",
        "/notes.txt%00.html",
    ] {
        let resp = get(addr, target);
        assert!(
            resp.status == 400 || resp.status == 404,
            "{target}: {} {}",
            resp.status,
            resp.text()
        );
        resp.assert_error(resp.status);
        assert!(!resp.text().contains("not for the web"), "{target} leaked");
        assert!(!resp.text().contains("SECRET"), "{target} leaked");
    }
}

#[test]
fn a_missing_static_directory_stops_the_server_at_start() {
    let config = halley::Config {
        static_dir: Some(std::env::temp_dir().join("halley-web-no-such-dir")),
        ..config()
    };
    let err = halley::spawn(config).expect_err("a typo in --static must not start a server");
    assert!(err.to_string().contains("--static"), "{err}");
}

#[test]
fn open_channels_refuse_large_bodies_before_reading_them() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    // Only the head: the answer must come without the body ever being sent.
    c.send("POST /pub/demo/big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
    let resp = c.read_response();
    resp.assert_error(413);
    assert!(resp.closes());

    let four_k = "x".repeat(4096);
    let ok = call(addr, "POST", "/pub/demo/big", &[], four_k.as_bytes());
    assert_eq!(ok.status, 201);
    // Channels outside the open prefix keep --max-body.
    let big = "x".repeat(5000);
    assert_eq!(
        call(addr, "POST", "/pub/closed", &[], big.as_bytes()).status,
        201
    );
}

#[test]
fn open_channels_rate_limit_each_address_with_429_and_retry_after() {
    let addr = start_default();
    let channel = channel("demo/burst");
    let mut accepted = 0;
    let limited = loop {
        let resp = call(addr, "POST", &format!("/pub/{channel}"), &[], b"hi");
        match resp.status {
            201 => accepted += 1,
            _ => break resp,
        }
        assert!(accepted <= 10, "the burst is 10 messages");
    };
    assert_eq!(accepted, 10);
    limited.assert_error(429);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    assert_eq!(stats(addr)["rejections"]["429"].as_u64().unwrap(), 1);

    // Other channels are not open channels: no limit applies to them.
    for _ in 0..20 {
        publish(addr, "not-open", "x");
    }
    // The limited messages were not published.
    let info = get(addr, &format!("/pub/{channel}")).json();
    assert_eq!(info["messages"].as_u64().unwrap(), 10);
}

#[test]
fn the_token_wins_over_the_open_rules_and_closed_channels_need_it() {
    let addr = start(halley::Config {
        publish_token: Some("s3cret".into()),
        open_publish: vec![OpenPrefix::parse("comments").unwrap()],
        ..config()
    });
    let auth = "Authorization: Bearer s3cret";
    let big = "x".repeat(5000);
    let open = call(addr, "POST", "/pub/comments/a", &[], b"anonymous");
    assert_eq!(
        open.status, 201,
        "open channels take publishes without the token"
    );
    call(addr, "POST", "/pub/demo/a", &[], b"x").assert_error(401);
    call(addr, "POST", "/pub/private", &[], b"x").assert_error(401);
    let trusted = call(addr, "POST", "/pub/comments/a", &[auth], big.as_bytes());
    assert_eq!(trusted.status, 201, "the token lifts the open body limit");
    assert_eq!(
        call(addr, "POST", "/pub/private", &[auth], b"x").status,
        201
    );
    call(addr, "DELETE", "/pub/comments/a", &[], b"").assert_error(401);
    assert_eq!(
        call(addr, "DELETE", "/pub/comments/a", &[auth], b"").status,
        204
    );
}

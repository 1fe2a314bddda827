//! What one peer can make the server do for it at the others' expense: a
//! publish it may not make is refused from its head, before any body is read,
//! and a peer that streams bytes without pause is served in turns, so
//! everyone else is answered while it goes on.

mod common;

use std::time::Duration;

use common::*;

/// How long a client here waits for an answer that should come at once. The
/// failures this guards against never answer at all (or only after the
/// 30 s timeouts below), so this is no performance bound.
const PROMPT: Duration = Duration::from_secs(3);

/// Timeouts long enough that none of them is what answers a request here.
fn patient_config() -> Config {
    Config {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..config()
    }
}

#[test]
fn a_publish_with_a_wrong_token_is_refused_before_its_body() {
    let addr = start(Config {
        publish_token: Some("right".into()),
        ..patient_config()
    });
    let ch = channel("guarded");
    for framing in ["Content-Length: 1000000", "Transfer-Encoding: chunked"] {
        let mut client = Client::connect(addr);
        client.set_read_timeout(PROMPT);
        // The head alone: the body would follow only if the server asked.
        client.send(format!(
            "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer wrong\r\n{framing}\r\n\r\n"
        ));
        let resp = client.read_response();
        assert_eq!(resp.status, 401, "{framing}: {resp:?}");
        assert_eq!(resp.header("connection"), Some("close"), "{framing}");
        client.expect_closed();
    }
    // A body-less refusal keeps the connection, as before.
    let mut client = Client::connect(addr);
    client.request(
        "POST",
        &format!("/pub/{ch}"),
        &["Authorization: Bearer wrong"],
        b"",
    );
    assert_eq!(client.read_response().status, 401);
    client.request("GET", "/healthz", &[], b"");
    assert_eq!(client.read_response().status, 200);
}

//! Signed tokens (`--token-secret`): every subscribe needs a token whose
//! claims cover the channel, on every HTTP transport and in Redis mode; a
//! token may publish where its claims say; a held subscription ends, never
//! silently, when its token does. Tokens are minted here with the server's
//! own signer (`halley::token::sign`), as an issuer would.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::redis::{node, RedisServer};
use common::*;
use halley::token::{jwt, sign, LEEWAY_SECS};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";
const PUBLISH_TOKEN: &str = "static-publisher";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token with `claims` (a JSON object's text) signed with the server's secret.
fn token(claims: &str) -> String {
    sign(SECRET.as_bytes(), claims)
}

/// A token for `subscribe` and `publish` patterns, valid for an hour.
fn scoped(subscribe: &[&str], publish: &[&str]) -> String {
    let claims = serde_json::json!({
        "exp": now() + 3600,
        "halley": {"subscribe": subscribe, "publish": publish},
    });
    token(&claims.to_string())
}

/// A token for `subscribe` that the server takes now and that ends within
/// `secs` seconds: its `exp` is already past, but inside the leeway.
fn ending_soon(subscribe: &[&str], secs: u64) -> String {
    assert!(secs < LEEWAY_SECS);
    let exp = now() + secs - LEEWAY_SECS;
    let claims = serde_json::json!({"exp": exp, "halley": {"subscribe": subscribe}});
    token(&claims.to_string())
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn start_secured() -> std::net::SocketAddr {
    start(Config {
        token_secret: Some(halley::token::Verifier::new(SECRET.as_bytes())),
        publish_token: Some(PUBLISH_TOKEN.into()),
        ..config()
    })
}

/// Publishes with the static token, which a secured server still honours.
fn publish_as_backend(addr: std::net::SocketAddr, channel: &str, data: &str) -> String {
    let auth = bearer(PUBLISH_TOKEN);
    let resp = call(
        addr,
        "POST",
        &format!("/pub/{channel}"),
        &[&auth],
        data.as_bytes(),
    );
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json()["id"].as_str().unwrap().to_owned()
}

/// The error message of a refused request, checked to be the JSON error form.
#[track_caller]
fn refused(resp: &Response, status: u16) -> String {
    resp.assert_error(status);
    resp.json()["error"].as_str().unwrap().to_owned()
}

#[test]
fn every_transport_refuses_a_subscribe_without_a_valid_covering_token() {
    let addr = start_secured();
    let ch = channel("room");
    let good = scoped(&[&ch], &[]);
    let hour = now() + 3600;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("no token", String::new(), 401, "subscribing needs a token"),
        (
            "expired",
            token(&format!(
                r#"{{"exp":{},"halley":{{"subscribe":["{ch}"]}}}}"#,
                now() - 60
            )),
            401,
            "token expired",
        ),
        (
            "not yet valid",
            token(&format!(
                r#"{{"nbf":{hour},"halley":{{"subscribe":["{ch}"]}}}}"#
            )),
            401,
            "not valid yet",
        ),
        (
            "wrong signature",
            sign(
                b"another-secret-of-at-least-32-bytes",
                &format!(r#"{{"halley":{{"subscribe":["{ch}"]}}}}"#),
            ),
            401,
            "signature",
        ),
        (
            "HS512",
            jwt::sign_with_header(
                SECRET.as_bytes(),
                r#"{"alg":"HS512","typ":"JWT"}"#,
                &format!(r#"{{"halley":{{"subscribe":["{ch}"]}}}}"#),
            ),
            401,
            "alg must be HS256",
        ),
        (
            "none",
            {
                let signed = token(&format!(r#"{{"halley":{{"subscribe":["{ch}"]}}}}"#));
                let payload = signed.split('.').nth(1).unwrap().to_owned();
                // {"alg":"none"}, unsigned.
                format!("eyJhbGciOiJub25lIn0.{payload}.")
            },
            401,
            "alg must be HS256",
        ),
        ("garbage", "not-a-token".into(), 401, "not a JSON Web Token"),
        (
            "another channel",
            scoped(&["other"], &[]),
            403,
            "does not cover channel",
        ),
    ];
    for transport in ["sse", "stream", "longpoll"] {
        let path = format!("/sub/{ch}?transport={transport}");
        for (what, token, status, says) in &cases {
            let auth = bearer(token);
            let extra: &[&str] = if token.is_empty() { &[] } else { &[&auth] };
            let resp = call(addr, "GET", &path, extra, b"");
            let message = refused(&resp, *status);
            assert!(message.contains(says), "{transport} {what}: {message}");
            if *status == 401 {
                assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
            }
        }
    }
    // The same channel with the good token, on each transport.
    let auth = bearer(&good);
    let mut sse = Sub::sse(addr, &ch, "", &[&auth]);
    let mut stream = Sub::open(addr, &format!("/sub/{ch}?transport=stream"), &[&auth]);
    let mut poll = Client::connect(addr);
    poll.request(
        "GET",
        &format!("/sub/{ch}?transport=longpoll"),
        &[&auth],
        b"",
    );
    wait_subscribers(addr, &ch, 3);
    let id = publish_as_backend(addr, &ch, "hello");
    assert_eq!(sse.next_event().id.as_deref(), Some(id.as_str()));
    assert_eq!(stream.next_json()["id"], id.as_str());
    let resp = poll.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["messages"][0]["id"], id.as_str());
    let counted = stats(addr)["rejections"].clone();
    assert_eq!(counted["401"], 21, "{counted}");
    assert_eq!(counted["403"], 3, "{counted}");
}

#[test]
fn one_star_is_one_segment_and_two_stars_any_depth() {
    let addr = start_secured();
    let auth = bearer(&scoped(&["room/*", "deep/**"], &[]));
    // (channel, status)
    let cases = [
        ("room/a", 200),
        ("room/a/b", 403),
        ("room", 403),
        ("deep/a", 200),
        ("deep/a/b/c", 200),
        ("deep", 403),
        ("deeper/a", 403),
    ];
    for (ch, want) in cases {
        // A long-poll that has something to answer comes back at once.
        let path = format!("/sub/{ch}?transport=longpoll&since=earliest");
        if want == 200 {
            publish_as_backend(addr, ch, "x");
        }
        let resp = call(addr, "GET", &path, &[&auth], b"");
        assert_eq!(resp.status, want, "{ch}: {}", resp.text());
    }
}

#[test]
fn the_token_may_come_as_a_cookie_or_in_the_query_and_the_header_wins() {
    let addr = start_secured();
    let ch = channel("jar");
    let good = scoped(&[&ch], &[]);
    let bad = scoped(&["elsewhere"], &[]);
    let path = format!("/sub/{ch}?transport=longpoll&since=earliest");
    publish_as_backend(addr, &ch, "x");
    let cookie = |t: &str| format!("Cookie: theme=dark; halley_token={t}; lang=en");
    // (extra headers, query, status)
    let cases: Vec<(Vec<String>, String, u16)> = vec![
        (vec![cookie(&good)], String::new(), 200),
        (vec![], format!("&token={good}"), 200),
        (vec![cookie(&bad)], String::new(), 403),
        (vec![], format!("&token={bad}"), 403),
        // Authorization first, then the cookie, then the query.
        (
            vec![bearer(&good), cookie(&bad)],
            format!("&token={bad}"),
            200,
        ),
        (vec![bearer(&bad), cookie(&good)], String::new(), 403),
        (vec![cookie(&good)], format!("&token={bad}"), 200),
        (vec![cookie(&bad)], format!("&token={good}"), 403),
        (vec!["Cookie: other=1".into()], String::new(), 401),
    ];
    for (headers, query, want) in cases {
        let extra: Vec<&str> = headers.iter().map(String::as_str).collect();
        let resp = call(addr, "GET", &format!("{path}{query}"), &extra, b"");
        assert_eq!(resp.status, want, "{headers:?} {query}: {}", resp.text());
    }
}

#[test]
fn an_sse_stream_ends_with_an_error_event_when_its_token_expires() {
    let addr = start_secured();
    let ch = channel("sse-exp");
    let auth = bearer(&ending_soon(&[&ch], 3));
    let mut sse = Sub::sse(addr, &ch, "", &[&auth]);
    let id = publish_as_backend(addr, &ch, "before");
    assert_eq!(sse.next_event().id.as_deref(), Some(id.as_str()));
    let last = sse.next_event();
    assert_eq!(last.event.as_deref(), Some("error"), "{last:?}");
    assert_eq!(
        parse_json(&last.data()),
        serde_json::json!({"error": "token expired"})
    );
    sse.expect_end();
    assert_eq!(stats(addr)["token_expired"], 1);
    wait_subscribers(addr, &ch, 0);
}

#[test]
fn a_stream_ends_with_an_error_line_when_its_token_expires() {
    let addr = start_secured();
    let ch = channel("nd-exp");
    let auth = bearer(&ending_soon(&[&ch], 3));
    let mut stream = Sub::open(addr, &format!("/sub/{ch}?transport=stream"), &[&auth]);
    let id = publish_as_backend(addr, &ch, "before");
    assert_eq!(stream.next_json()["id"], id.as_str());
    assert_eq!(
        stream.next_json(),
        serde_json::json!({"error": "token expired"})
    );
    stream.expect_end();
    assert_eq!(stats(addr)["token_expired"], 1);
}

#[test]
fn a_held_long_poll_is_answered_401_when_its_token_expires() {
    let addr = start_secured();
    let ch = channel("poll-exp");
    let auth = bearer(&ending_soon(&[&ch], 3));
    let mut poll = Client::connect(addr);
    poll.request(
        "GET",
        &format!("/sub/{ch}?transport=longpoll"),
        &[&auth],
        b"",
    );
    // The long-poll timeout is 10 s here; the token ends within 3.
    let resp = poll.read_response();
    assert_eq!(refused(&resp, 401), "token expired");
    assert_eq!(stats(addr)["token_expired"], 1);
    assert_eq!(subscribers(addr, &ch), 0);
    // The connection stays usable: the next request on it is answered.
    let good = bearer(&scoped(&[&ch], &[]));
    publish_as_backend(addr, &ch, "x");
    poll.request(
        "GET",
        &format!("/sub/{ch}?transport=longpoll&since=earliest"),
        &[&good],
        b"",
    );
    assert_eq!(poll.read_response().status, 200);
}

#[test]
fn a_token_that_does_not_end_keeps_its_stream() {
    let addr = start(Config {
        token_secret: Some(halley::token::Verifier::new(SECRET.as_bytes())),
        heartbeat: Duration::from_millis(200),
        ..config()
    });
    let ch = channel("forever");
    let forever = token(&format!(
        r#"{{"halley":{{"subscribe":["{ch}"],"publish":["{ch}"]}}}}"#
    ));
    let mut stream = Sub::open(
        addr,
        &format!("/sub/{ch}?transport=stream"),
        &[&bearer(&forever)],
    );
    // Heartbeats, not an end, for several of them.
    for _ in 0..5 {
        assert_eq!(stream.next_line(), "");
    }
    assert_eq!(stats(addr)["token_expired"], 0);
}

#[test]
fn a_token_publishes_where_its_claim_says() {
    let addr = start_secured();
    let ch = channel("pub");
    let writer = bearer(&scoped(&[], &[&format!("{ch}/**")]));
    let reader = bearer(&scoped(&[&format!("{ch}/**")], &[]));
    let expired = bearer(&token(&format!(
        r#"{{"exp":{},"halley":{{"publish":["**"]}}}}"#,
        now() - 60
    )));
    let post = |path: &str, auth: Option<&str>| {
        let extra: Vec<&str> = auth.into_iter().collect();
        call(addr, "POST", path, &extra, b"data")
    };
    let inside = format!("/pub/{ch}/a/b");
    assert_eq!(post(&inside, Some(&writer)).status, 201);
    assert!(refused(&post(&format!("/pub/{ch}"), Some(&writer)), 403).contains("publish claim"));
    assert!(refused(&post(&inside, Some(&reader)), 403).contains("publish claim"));
    assert_eq!(
        refused(&post(&inside, Some(&expired)), 401),
        "token expired"
    );
    refused(&post(&inside, None), 401);
    // The static token still publishes anywhere.
    assert_eq!(
        post(&format!("/pub/{ch}"), Some(&bearer(PUBLISH_TOKEN))).status,
        201
    );
    // Open channels stay open to anyone, token or none, valid or not.
    let open = format!("/pub/demo/{ch}");
    assert_eq!(post(&open, None).status, 201);
    assert_eq!(post(&open, Some(&reader)).status, 201);
    // Deleting follows the publish claim.
    let delete = |auth: &str| call(addr, "DELETE", &inside, &[auth], b"");
    refused(&delete(&reader), 403);
    assert_eq!(delete(&writer).status, 204);
}

#[test]
fn without_a_secret_nothing_changes() {
    let addr = start_default();
    let ch = channel("open");
    publish(addr, &ch, "x");
    // A token is not needed, and one that would be refused is ignored.
    let resp = call(
        addr,
        "GET",
        &format!("/sub/{ch}?transport=longpoll&since=earliest&token=garbage"),
        &["Cookie: halley_token=garbage"],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn in_redis_mode_a_subscribe_needs_a_token_and_ends_with_it() {
    let redis = RedisServer::start();
    let shards = std::slice::from_ref(&redis);
    let flags = ["--token-secret", SECRET, "--publish-token", PUBLISH_TOKEN];
    let (a, b) = (node(shards, &flags), node(shards, &flags));
    let ch = channel("cluster");
    let path = format!("/sub/{ch}?transport=sse");
    refused(&call(b.addr, "GET", &path, &[], b""), 401);
    let wrong = bearer(&scoped(&["other"], &[]));
    refused(&call(b.addr, "GET", &path, &[&wrong], b""), 403);
    // A catching-up subscriber (with a cursor) and a live one both end.
    let first = publish_as_backend(a.addr, &ch, "first");
    let auth = bearer(&ending_soon(&[&ch], 4));
    let mut live = Sub::sse(b.addr, &ch, "", &[&auth]);
    let mut back = Sub::sse(b.addr, &ch, "&since=earliest", &[&auth]);
    assert_eq!(back.next_event().id.as_deref(), Some(first.as_str()));
    wait_subscribers(b.addr, &ch, 2);
    let second = publish_as_backend(a.addr, &ch, "second");
    for sub in [&mut live, &mut back] {
        assert_eq!(sub.next_event().id.as_deref(), Some(second.as_str()));
        let last = sub.next_event();
        assert_eq!(last.event.as_deref(), Some("error"), "{last:?}");
        assert!(last.data().contains("token expired"));
        sub.expect_end();
    }
    assert_eq!(stats(b.addr)["token_expired"], 2);
}

#[test]
fn a_websocket_subscribe_needs_a_token_and_ends_with_a_close_when_it_expires() {
    use common::ws::{upgrade_request, Ws};
    let addr = start_secured();
    let ch = channel("ws-exp");
    // No token: the upgrade is refused with a plain HTTP 401.
    let mut bare = Client::connect(addr);
    bare.send(upgrade_request(&format!("/sub/{ch}"), &[]));
    let why = refused(&bare.read_response(), 401);
    assert!(why.contains("needs a token"), "{why}");
    // A token that ends within 3 s: messages, then what ended it, then close 1008.
    let auth = bearer(&ending_soon(&[&ch], 3));
    let mut client = Client::connect(addr);
    client.send(upgrade_request(&format!("/sub/{ch}"), &[&auth]));
    let mut ws = Ws::after_upgrade(client);
    let id = publish_as_backend(addr, &ch, "before");
    assert_eq!(ws.next_json()["id"], id.as_str());
    assert_eq!(
        ws.next_json(),
        serde_json::json!({"error": "token expired"})
    );
    assert_eq!(ws.expect_close(1008), "token expired");
    assert_eq!(stats(addr)["token_expired"], 1);
    wait_subscribers(addr, &ch, 0);
}

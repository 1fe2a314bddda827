//! Signed tokens in the engine (`Settings::tokens`): which subscribes and
//! publishes a token allows, the `403:<channel>:<reason>` refusals CometD
//! and Faye report, and the end of a session whose token ends. The wall
//! clock is set by hand, as the server sets it per request.

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::*;
use crate::token::{sign, Verifier, LEEWAY_SECS};

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!";
/// The wall clock's Unix seconds in these tests.
const WALL: u64 = 1_700_000_000;

fn engine(publish_token: Option<&str>) -> Engine {
    let mut n = 0u128;
    let settings = Settings {
        tokens: Some(Verifier::new(SECRET)),
        publish_token: publish_token.map(Into::into),
        ..Settings::default()
    };
    let mut e = Engine::new(
        settings,
        Box::new(move || {
            n += 1;
            n
        }),
    );
    e.wall = UNIX_EPOCH + Duration::from_secs(WALL);
    e
}

/// A token valid from `WALL` for `secs` seconds with these claims.
fn token(subscribe: &[&str], publish: &[&str], secs: u64) -> String {
    let claims =
        json!({"exp": WALL + secs, "halley": {"subscribe": subscribe, "publish": publish}});
    sign(SECRET, &claims.to_string())
}

fn handle(e: &mut Engine, conn: ConnId, msgs: Value, now: Instant) -> Outcome {
    let (msgs, framing) =
        wire::parse_post(Some("application/json"), msgs.to_string().as_bytes()).unwrap();
    e.handle(conn, Some(PEER), msgs, framing, now)
}

fn replies(o: &Outcome) -> Value {
    match &o.reply {
        Reply::Now { body, .. } => serde_json::from_slice(body).unwrap(),
        Reply::Hold { .. } => panic!("held, expected an answer"),
        Reply::Socket { .. } => panic!("framed for a socket, expected an HTTP answer"),
    }
}

/// The handshake reply with `ext.halley.token = token` (none if `None`).
fn handshake(e: &mut Engine, token: Option<&str>, now: Instant) -> Value {
    let ext = match token {
        Some(t) => json!({"halley": {"token": t}}),
        None => json!({}),
    };
    let o = handle(
        e,
        1,
        json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "id": "1", "ext": ext}]),
        now,
    );
    replies(&o)[0].clone()
}

fn client_id(e: &mut Engine, token: Option<&str>, now: Instant) -> String {
    let reply = handshake(e, token, now);
    assert_eq!(reply["successful"], true, "{reply}");
    reply["clientId"].as_str().unwrap().to_owned()
}

/// One message's reply: `successful`, or the error.
fn outcome(e: &mut Engine, msg: Value, now: Instant) -> Result<(), String> {
    let r = replies(&handle(e, 9, json!([msg]), now))[0].clone();
    match r["successful"].as_bool() {
        Some(true) => Ok(()),
        _ => Err(r["error"].as_str().unwrap_or("no error").to_owned()),
    }
}

fn subscribe(
    e: &mut Engine,
    cid: &str,
    sub: Value,
    ext: Value,
    now: Instant,
) -> Result<(), String> {
    let msg = json!({"channel": "/meta/subscribe", "clientId": cid, "subscription": sub, "id": "s", "ext": ext});
    outcome(e, msg, now)
}

#[test]
fn a_subscribe_needs_a_token_covering_every_channel_it_names() {
    let mut e = engine(None);
    let t0 = Instant::now();
    let hour = 3600;
    let with = client_id(&mut e, Some(&token(&["chat/*", "user/42"], &[], hour)), t0);
    let without = client_id(&mut e, None, t0);
    let own = |t: &str| json!({"halley": {"token": t}});
    let none = json!({});
    let chat_deep = token(&["chat/**"], &[], hour);
    let forged = sign(
        b"not-the-secret-not-the-secret-!!",
        r#"{"halley":{"subscribe":["**"]}}"#,
    );
    // (session, subscription, ext, outcome)
    let cases: Vec<(&str, Value, Value, Result<(), &str>)> = vec![
        (&with, json!("/chat/a"), none.clone(), Ok(())),
        (&with, json!("/user/42"), none.clone(), Ok(())),
        (&with, json!("/chat/*"), none.clone(), Ok(())),
        (
            &with,
            json!("/chat/a/b"),
            none.clone(),
            Err("403:/chat/a/b:channel_not_covered"),
        ),
        (
            &with,
            json!("/chat/**"),
            none.clone(),
            Err("403:/chat/**:channel_not_covered"),
        ),
        (
            &with,
            json!("/user/43"),
            none.clone(),
            Err("403:/user/43:channel_not_covered"),
        ),
        // The subscribe's own token is used instead of the handshake's.
        (&with, json!("/chat/a/b"), own(&chat_deep), Ok(())),
        (
            &with,
            json!("/chat/a"),
            own(&forged),
            Err("403:/chat/a:token_signature"),
        ),
        (
            &with,
            json!("/chat/a"),
            json!({"halley": {"token": 7}}),
            Err("403:/chat/a:token_malformed"),
        ),
        (
            &without,
            json!("/chat/a"),
            none.clone(),
            Err("403:/chat/a:token_missing"),
        ),
        (&without, json!("/chat/**"), own(&chat_deep), Ok(())),
        // Applied whole or not at all.
        (
            &without,
            json!(["/user/42", "/chat/x"]),
            own(&chat_deep),
            Err("403:/user/42:channel_not_covered"),
        ),
    ];
    for (cid, sub, ext, want) in cases {
        let got = subscribe(&mut e, cid, sub.clone(), ext, t0);
        assert_eq!(got, want.map_err(str::to_owned), "{sub}");
    }
    let subscribed = |e: &Engine, cid: &str| e.sessions[cid].subscriptions.len();
    assert_eq!(subscribed(&e, &with), 4);
    assert_eq!(subscribed(&e, &without), 1);
    assert_eq!(e.stats.token_refused, 7);
}

#[test]
fn a_handshake_with_a_bad_token_is_told_to_stop() {
    let mut e = engine(Some("static-publisher"));
    let t0 = Instant::now();
    let expired = sign(SECRET, &json!({"exp": WALL - 60}).to_string());
    let hs512 = crate::token::jwt::sign_with_header(SECRET, r#"{"alg":"HS512"}"#, "{}");
    // (token, error)
    let cases = [
        (expired.as_str(), "403::token_expired"),
        (hs512.as_str(), "403::token_algorithm"),
        ("wrong", "403::token_malformed"),
    ];
    for (t, want) in cases {
        let r = handshake(&mut e, Some(t), t0);
        assert_eq!(r["successful"], false, "{t}");
        assert_eq!(r["error"], want, "{t}");
        assert_eq!(r["advice"]["reconnect"], "none", "{t}");
    }
    assert_eq!(e.n_sessions(), 0);
    // The publish token is still a handshake token.
    client_id(&mut e, Some("static-publisher"), t0);
}

#[test]
fn a_publish_needs_the_publish_token_or_a_covering_claim() {
    let mut e = engine(Some("static-publisher"));
    let t0 = Instant::now();
    let writer = client_id(&mut e, Some(&token(&[], &["chat/**"], 3600)), t0);
    let reader = client_id(&mut e, Some(&token(&["chat/**"], &[], 3600)), t0);
    let backend = client_id(&mut e, Some("static-publisher"), t0);
    let anonymous = client_id(&mut e, None, t0);
    let publish = |e: &mut Engine, cid: &str, ch: &str| {
        outcome(e, json!({"channel": ch, "clientId": cid, "data": 1}), t0)
    };
    // (session, channel, outcome)
    let cases: [(&str, &str, Result<(), &str>); 6] = [
        (&writer, "/chat/a/b", Ok(())),
        (&writer, "/other", Err("403:/other:channel_not_covered")),
        (&reader, "/chat/a", Err("403:/chat/a:channel_not_covered")),
        (&anonymous, "/chat/a", Err("403:/chat/a:token_missing")),
        (&backend, "/other", Ok(())),
        (&backend, "/chat/a", Ok(())),
    ];
    for (cid, ch, want) in cases {
        assert_eq!(
            publish(&mut e, cid, ch),
            want.map_err(str::to_owned),
            "{ch}"
        );
    }
}

#[test]
fn a_session_ends_when_the_token_it_subscribed_with_ends() {
    let mut e = engine(None);
    let t0 = Instant::now();
    let cid = client_id(&mut e, Some(&token(&["chat/*"], &[], 10)), t0);
    let id: Rc<str> = Rc::from(cid.as_str());
    subscribe(&mut e, &cid, json!("/chat/a"), json!({}), t0).unwrap();
    let ends = t0 + Duration::from_secs(10 + LEEWAY_SECS);
    assert_eq!(e.sessions[&id].token_ends, Some(ends));
    // First connect answered, the second held.
    replies(&handle(
        &mut e,
        5,
        json!([{"channel": "/meta/connect", "clientId": cid, "id": "c1"}]),
        t0,
    ));
    let o = handle(
        &mut e,
        5,
        json!([{"channel": "/meta/connect", "clientId": cid, "id": "c2"}]),
        t0,
    );
    assert!(matches!(o.reply, Reply::Hold { .. }));
    // Before its end, the session's timer is asked for no later than it.
    assert!(!e.on_expiry_timer(&id, t0 + Duration::from_secs(1)));
    assert!(!e.flush(t0).iter().any(|r| r.conn == 5));
    assert!(e.on_expiry_timer(&id, ends));
    let out = e.flush(ends);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].conn, 5);
    let reply = &serde_json::from_slice::<Value>(&out[0].body).unwrap()[0];
    assert_eq!(reply["id"], "c2");
    assert_eq!(reply["successful"], false);
    assert_eq!(reply["error"], "403::token_expired");
    assert_eq!(reply["advice"]["reconnect"], "handshake");
    assert_eq!(
        (e.n_sessions(), e.n_held(), e.stats.token_expired),
        (0, 0, 1)
    );
}

#[test]
fn a_connect_after_the_token_ended_is_refused_at_once() {
    let mut e = engine(None);
    let t0 = Instant::now();
    let cid = client_id(&mut e, Some(&token(&["chat/*"], &[], 10)), t0);
    subscribe(&mut e, &cid, json!("/chat/a"), json!({}), t0).unwrap();
    let later = t0 + Duration::from_secs(10 + LEEWAY_SECS);
    let r = outcome(
        &mut e,
        json!({"channel": "/meta/connect", "clientId": cid, "id": "c"}),
        later,
    );
    assert_eq!(r, Err("403::token_expired".to_owned()));
    assert_eq!(e.n_sessions(), 0);
    // Its handshake token, kept by the session, is judged by the wall clock.
    let cid = client_id(&mut e, Some(&token(&["chat/*"], &[], 10)), t0);
    e.wall = SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + 10 + LEEWAY_SECS);
    let r = subscribe(&mut e, &cid, json!("/chat/a"), json!({}), t0);
    assert_eq!(r, Err("403:/chat/a:token_expired".to_owned()));
}

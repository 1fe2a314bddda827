//! Property tests of what a Bayeux request's bytes become: bodies, form and
//! JSONP framings (`wire`), the fields the engine reads (`message`), and
//! channel names and subscription patterns (`channel`), each against a plain
//! model. Any input must be answered or refused, never panic.
//!
//! Run long with `PROPTEST_CASES=100000 cargo test --release --lib prop`.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;

use super::channel::{self, Pattern};
use super::message::Incoming;
use super::wire::{self, Framing, MAX_MESSAGES_PER_REQUEST};

/// Any JSON value serde_json keeps exactly (numbers as integers, so that no
/// float is rounded on the way).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop_oneof![Just("/meta/handshake"), Just("/chat/a"), Just("/a/*")]
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(key(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys that the engine reads, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("channel".to_owned()),
        Just("id".to_owned()),
        Just("clientId".to_owned()),
        Just("data".to_owned()),
        Just("subscription".to_owned()),
        Just("ext".to_owned()),
        Just("advice".to_owned()),
        Just("timeout".to_owned()),
        Just("supportedConnectionTypes".to_owned()),
        any::<String>(),
    ]
}

/// A message: a JSON object, as a client sends it.
fn message() -> impl Strategy<Value = Value> {
    btree_map(key(), json_value(), 0..6).prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Bytes made of JSON's tokens and Bayeux's words, which reach further into
/// the framing than random bytes.
fn json_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"{"[..]),
        Just(&b"}"[..]),
        Just(&b"["[..]),
        Just(&b"]"[..]),
        Just(&b":"[..]),
        Just(&b","[..]),
        Just(&b"\"channel\""[..]),
        Just(&b"\"/meta/connect\""[..]),
        Just(&b"\"\\u00e9\""[..]),
        Just(&b"\"\\ud800\""[..]),
        Just(&b"1e999"[..]),
        Just(&b"-0"[..]),
        Just(&b"null"[..]),
        Just(&b"message="[..]),
        Just(&b"&jsonp=cb"[..]),
        Just(&b"%7B"[..]),
        Just(&b"%"[..]),
        Just(&b"\xff"[..]),
    ];
    vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

/// Percent-encodes every byte that is not alphanumeric.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b.is_ascii_alphanumeric() {
            true => (b as char).to_string(),
            false => format!("%{b:02X}"),
        })
        .collect()
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json")),
        Just(Some("application/x-www-form-urlencoded")),
        Just(Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8")),
        Just(Some("text/plain")),
    ]
}

/// What any parse must give when it succeeds: 1 to the limit of objects.
fn check_messages(messages: &[Value]) -> Result<(), TestCaseError> {
    prop_assert!(!messages.is_empty() && messages.len() <= MAX_MESSAGES_PER_REQUEST);
    prop_assert!(messages.iter().all(Value::is_object));
    for m in messages {
        // The engine reads every message; no field of any type may upset it.
        let incoming = Incoming::from_value(m.clone());
        let channel = m.get("channel").and_then(Value::as_str).unwrap_or("");
        prop_assert_eq!(incoming.channel.as_str(), channel);
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_body_is_messages_or_a_bad_request(
        content_type in content_type(),
        body in prop_oneof![json_like_bytes(), vec(any::<u8>(), 0..48)],
    ) {
        if let Ok((messages, _)) = wire::parse_post(content_type, &body) {
            check_messages(&messages)?;
        }
        if let Ok(text) = std::str::from_utf8(&body) {
            if let Ok((messages, framing)) = wire::parse_get(text) {
                check_messages(&messages)?;
                prop_assert!(matches!(framing, Framing::Jsonp(_)));
            }
            let _ = wire::is_json_text(content_type, text);
        }
    }

    #[test]
    fn valid_messages_round_trip_in_every_framing(
        messages in vec(message(), 1..5),
        callback in "[A-Za-z_$][A-Za-z0-9_$]{0,8}(\\.[A-Za-z_$][A-Za-z0-9_$]{0,8}){0,2}",
    ) {
        check_messages(&messages)?;
        let json = serde_json::to_string(&messages).unwrap();
        prop_assert_eq!(
            wire::parse_post(Some("application/json"), json.as_bytes()),
            Ok((messages.clone(), Framing::Json))
        );
        let one = serde_json::to_vec(&messages[0]).unwrap();
        prop_assert_eq!(wire::parse_post(None, &one), Ok((vec![messages[0].clone()], Framing::Json)));

        let form = format!("message={}", form_encode(&json));
        prop_assert_eq!(
            wire::parse_post(Some("application/x-www-form-urlencoded"), form.as_bytes()),
            Ok((messages.clone(), Framing::Json))
        );
        let query = format!("jsonp={}&{form}", form_encode(&callback));
        prop_assert_eq!(
            wire::parse_get(&query),
            Ok((messages.clone(), Framing::Jsonp(callback.clone())))
        );

        // Replies built from encoded messages read back as the same list.
        let parts: Vec<String> = messages.iter().map(|m| serde_json::to_string(m).unwrap()).collect();
        let body = wire::encode_body(&parts, &Framing::Json);
        prop_assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), Value::Array(messages.clone()));
        let body = wire::encode_body(&parts, &Framing::Jsonp(callback.clone()));
        let inner = body
            .strip_prefix(format!("{callback}(").as_bytes())
            .and_then(|b| b.strip_suffix(b");"))
            .expect("wrapped in the callback");
        prop_assert_eq!(serde_json::from_slice::<Value>(inner).unwrap(), Value::Array(messages));
    }

    #[test]
    fn a_callback_that_is_not_an_identifier_path_is_refused(
        callback in "[a-zA-Z0-9_$.() ;=-]{0,12}|.{0,12}",
    ) {
        let query = format!("jsonp={}&message=%7B%7D", form_encode(&callback));
        let is_identifier_path = !callback.is_empty()
            && callback.len() <= 64
            && callback.split('.').all(|part| {
                let mut chars = part.chars();
                chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            });
        match wire::parse_get(&query) {
            Ok((_, framing)) => {
                prop_assert!(is_identifier_path, "{:?} accepted", callback);
                prop_assert_eq!(framing, Framing::Jsonp(callback));
            }
            Err(_) => prop_assert!(!is_identifier_path, "{:?} refused", callback),
        }
    }
}

// ---------------------------------------------------------------------------
// Channel names and subscription patterns.

/// A channel name of one to four segments from a small alphabet, so that
/// names and patterns often share prefixes.
fn segments() -> impl Strategy<Value = Vec<&'static str>> {
    vec(prop_oneof![Just("a"), Just("b"), Just("c-1")], 1..5)
}

/// What a pattern is in the model: its segments and its wildcard.
#[derive(Clone, Debug)]
enum Wild {
    None,
    One,
    Any,
}

/// The plain reading of the Bayeux rule: `*` is one more segment, `**` one
/// or more, over segment lists.
fn model_matches(prefix: &[&str], wild: &Wild, name: &[&str]) -> bool {
    match wild {
        Wild::None => prefix == name,
        Wild::One => name.len() == prefix.len() + 1 && name.starts_with(prefix),
        Wild::Any => name.len() > prefix.len() && name.starts_with(prefix),
    }
}

fn join(segments: &[&str]) -> String {
    segments.iter().map(|s| format!("/{s}")).collect()
}

proptest! {
    #[test]
    fn patterns_match_as_the_model_and_the_index_finds_them(
        name in segments(),
        prefix in vec(prop_oneof![Just("a"), Just("b"), Just("c-1")], 0..4),
        wild in prop_oneof![Just(Wild::None), Just(Wild::One), Just(Wild::Any)],
    ) {
        let text = match wild {
            Wild::None if prefix.is_empty() => return Ok(()),
            Wild::None => join(&prefix),
            Wild::One => format!("{}/*", join(&prefix)),
            Wild::Any => format!("{}/**", join(&prefix)),
        };
        let pattern = Pattern::parse(&text).unwrap();
        prop_assert_eq!(pattern.text(), text.clone());
        let name_text = join(&name);
        let want = model_matches(&prefix, &wild, &name);
        prop_assert_eq!(pattern.matches(&name_text), want, "{} on {}", text, name_text);
        // The routing index looks a publish up by the keys this yields: a
        // subscription is found exactly when it matches.
        let mut keys = Vec::new();
        channel::for_each_matching_pattern(&name_text, |k| keys.push(k.to_owned()));
        prop_assert_eq!(keys.contains(&text), want, "{} in {:?}", text, keys);
        prop_assert_eq!(channel::to_hub(&name_text), Some(&name_text[1..]));
        prop_assert_eq!(channel::from_hub(&name_text[1..]), Some(name_text.clone()));
    }

    #[test]
    fn any_channel_text_is_checked_without_a_panic(text in "[/a*.é -]{0,12}|.{0,12}") {
        let valid = channel::check_name(&text).is_ok();
        prop_assert_eq!(channel::to_hub(&text).is_some(), valid);
        if let Some(hub) = channel::to_hub(&text) {
            prop_assert!(crate::hub::validate_channel(hub).is_ok());
            prop_assert_eq!(channel::from_hub(hub), Some(text.clone()));
        }
        if let Ok(pattern) = Pattern::parse(&text) {
            prop_assert_eq!(pattern.text(), text.clone());
            prop_assert_eq!(pattern.exact().is_some(), valid);
        }
    }
}

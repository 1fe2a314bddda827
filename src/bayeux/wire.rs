//! The HTTP framing of Bayeux: turning a request body or query string into a
//! list of JSON messages, and a list of encoded replies into a response body.
//!
//! Three framings reach `/bayeux`: a JSON body (an array of messages, or one
//! object), a form-encoded body `message=<json>`, and the JSONP transport
//! (`callback-polling`): `GET /bayeux?jsonp=CB&message=<json>`, answered with
//! `CB([...])`. A body that is not Bayeux at all (not JSON, no messages) is an
//! HTTP-level `400`: there is no message `id` to answer in Bayeux form.
//! A fourth, `websocket`, carries the same JSON arrays in text frames
//! (`parse_frame`), each reply one frame.

use serde_json::Value;

use crate::http::query;

/// How the reply must be framed: plain JSON, or wrapped in a JSONP callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    Json,
    /// The callback name, already checked to be a safe JavaScript identifier path.
    Jsonp(String),
    /// A text frame on a WebSocket: the JSON array alone, and every reply
    /// goes out at once except a held connect's (see `Reply::Socket`).
    WebSocket,
}

impl Framing {
    pub fn content_type(&self) -> &'static str {
        match self {
            Framing::Json | Framing::WebSocket => "application/json",
            Framing::Jsonp(_) => "text/javascript; charset=utf-8",
        }
    }
}

/// A request that is not Bayeux; the server answers it with HTTP 400 and
/// `{"error": <the message>}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub &'static str);

/// Longest JSONP callback name accepted. Real clients use `_cometd_jsonp_N`
/// or `__jsonp5__`; a bound keeps the echo from being a reflection vector.
const MAX_CALLBACK: usize = 64;

/// Most messages one request may carry. A client batches a handful (a
/// connect, a few subscribes and publishes); without a bound, one body of
/// `--max-body` bytes could hold tens of thousands of cheap messages, each
/// costing the loop work and the reply bytes.
pub const MAX_MESSAGES_PER_REQUEST: usize = 1_000;

/// Parses a `POST /bayeux` body. `content_type` is the request's header, if any.
pub fn parse_post(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(Vec<Value>, Framing), BadRequest> {
    let is_form = content_type.is_some_and(|ct| {
        ct.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    if is_form {
        let body = std::str::from_utf8(body).map_err(|_| BadRequest("form body is not UTF-8"))?;
        return parse_form(body);
    }
    Ok((parse_json(body)?, Framing::Json))
}

/// Parses the payload of one text frame on a Bayeux WebSocket. Unlike a
/// request body, an empty array is fine: it asks nothing and gets no reply
/// (clients may send one to keep an idle socket open).
pub fn parse_frame(payload: &[u8]) -> Result<Vec<Value>, BadRequest> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Array(items)) if items.is_empty() => Ok(items),
        _ => parse_json(payload),
    }
}

/// Whether an HTTP publish's body is JSON: sent as `application/json` and
/// parsing as JSON. Bayeux subscribers then get the value itself as `data`;
/// any other body reaches them as a JSON string.
pub fn is_json_text(content_type: Option<&str>, text: &str) -> bool {
    let is_json_type = content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    is_json_type && serde_json::from_str::<Value>(text).is_ok()
}

/// Parses the query string of `GET /bayeux?message=...&jsonp=...` (without the `?`).
/// A `GET` is Bayeux's callback-polling transport and nothing else: without
/// `jsonp=` it is refused, since a plain JSON answer to a `GET` would let any
/// page's `<img>` or prefetch act on a session, and no client sends one.
pub fn parse_get(query_string: &str) -> Result<(Vec<Value>, Framing), BadRequest> {
    let (messages, framing) = parse_form(query_string)?;
    if framing == Framing::Json {
        return Err(BadRequest(
            "GET /bayeux is callback-polling and needs jsonp=<callback>; long-polling uses POST",
        ));
    }
    Ok((messages, framing))
}

/// Both the form body and the JSONP query carry `message=` and an optional `jsonp=`.
fn parse_form(form: &str) -> Result<(Vec<Value>, Framing), BadRequest> {
    let message = query::param(form, "message").map_err(BadRequest)?;
    let framing = match query::param(form, "jsonp").map_err(BadRequest)? {
        None => Framing::Json,
        Some(cb) if valid_callback(&cb) => Framing::Jsonp(cb),
        Some(_) => return Err(BadRequest("jsonp callback must be a JavaScript identifier")),
    };
    let message = message.ok_or(BadRequest("missing message= parameter"))?;
    Ok((parse_json(message.as_bytes())?, framing))
}

/// Whether any of a request's messages is a `/meta/handshake`: only those
/// need the client's address (`Engine::handle`), a syscall to look up.
pub fn has_handshake(messages: &[Value]) -> bool {
    messages
        .iter()
        .any(|m| m.get("channel").and_then(Value::as_str) == Some("/meta/handshake"))
}

/// A JSON body: an array of message objects, or a single object.
pub fn parse_json(body: &[u8]) -> Result<Vec<Value>, BadRequest> {
    let value: Value = serde_json::from_slice(body).map_err(|_| BadRequest("body is not JSON"))?;
    let messages = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => return Err(BadRequest("Bayeux messages must be JSON objects")),
    };
    if messages.is_empty() {
        return Err(BadRequest("no Bayeux messages"));
    }
    if messages.len() > MAX_MESSAGES_PER_REQUEST {
        return Err(BadRequest(
            "too many Bayeux messages in one request (at most 1000)",
        ));
    }
    if !messages.iter().all(Value::is_object) {
        return Err(BadRequest("Bayeux messages must be JSON objects"));
    }
    Ok(messages)
}

/// A callback is a dotted path of identifiers (`cb`, `jQuery.cb_1`, `a.$b`).
/// Anything else could inject script into the response.
fn valid_callback(cb: &str) -> bool {
    !cb.is_empty()
        && cb.len() <= MAX_CALLBACK
        && cb.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
}

/// Joins already-encoded JSON messages into one response body, framed as asked.
pub fn encode_body<S: AsRef<str>>(parts: &[S], framing: &Framing) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.as_ref().len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len + 40);
    if let Framing::Jsonp(cb) = framing {
        out.extend_from_slice(cb.as_bytes());
        out.push(b'(');
    }
    out.push(b'[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(part.as_ref().as_bytes());
    }
    out.push(b']');
    if let Framing::Jsonp(_) = framing {
        out.extend_from_slice(b");");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn post_bodies() {
        let json_ct = Some("application/json;charset=UTF-8");
        let form_ct = Some("application/x-www-form-urlencoded");
        let one = json!([{"channel": "/meta/handshake"}]);
        // (content type, body, expected messages or error)
        let cases: &[(Option<&str>, &str, Result<Value, &str>)] = &[
            (
                json_ct,
                r#"[{"channel":"/meta/handshake"}]"#,
                Ok(one.clone()),
            ),
            (json_ct, r#"{"channel":"/meta/handshake"}"#, Ok(one.clone())),
            (None, r#"{"channel":"/meta/handshake"}"#, Ok(one.clone())),
            (
                form_ct,
                "message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%7D%5D",
                Ok(one.clone()),
            ),
            (
                form_ct,
                "message={\"channel\":\"/meta/handshake\"}",
                Ok(one.clone()),
            ),
            (json_ct, "[]", Err("no Bayeux messages")),
            (json_ct, "[1]", Err("Bayeux messages must be JSON objects")),
            (
                json_ct,
                "\"x\"",
                Err("Bayeux messages must be JSON objects"),
            ),
            (json_ct, "[{", Err("body is not JSON")),
            (form_ct, "jsonp=cb", Err("missing message= parameter")),
            (form_ct, "message=%2", Err("broken percent-escape")),
            (form_ct, "message=%zz", Err("broken percent-escape")),
        ];
        for (ct, body, want) in cases {
            let got = parse_post(*ct, body.as_bytes())
                .map(|(m, _)| Value::Array(m))
                .map_err(|e| e.0);
            assert_eq!(got, want.clone(), "{ct:?} {body}");
        }
    }

    #[test]
    fn messages_per_request_are_bounded() {
        let batch = |n: usize| serde_json::to_vec(&vec![json!({"channel": "/a"}); n]).unwrap();
        let at_limit = parse_json(&batch(MAX_MESSAGES_PER_REQUEST));
        assert_eq!(at_limit.map(|m| m.len()), Ok(MAX_MESSAGES_PER_REQUEST));
        assert_eq!(
            parse_json(&batch(MAX_MESSAGES_PER_REQUEST + 1)),
            Err(BadRequest(
                "too many Bayeux messages in one request (at most 1000)"
            ))
        );
    }

    #[test]
    fn jsonp_queries() {
        let cases: &[(&str, Result<Framing, &str>)] = &[
            (
                "jsonp=_cometd_jsonp_0&message=%5B%7B%7D%5D",
                Ok(Framing::Jsonp("_cometd_jsonp_0".into())),
            ),
            (
                "message=%5B%7B%7D%5D&jsonp=jQuery.cb_1",
                Ok(Framing::Jsonp("jQuery.cb_1".into())),
            ),
            (
                "message=%5B%7B%7D%5D",
                Err("GET /bayeux is callback-polling and needs jsonp=<callback>; long-polling uses POST"),
            ),
            (
                "jsonp=alert(1)&message=%5B%7B%7D%5D",
                Err("jsonp callback must be a JavaScript identifier"),
            ),
            (
                "jsonp=a..b&message=%5B%7B%7D%5D",
                Err("jsonp callback must be a JavaScript identifier"),
            ),
            (
                "jsonp=1a&message=%5B%7B%7D%5D",
                Err("jsonp callback must be a JavaScript identifier"),
            ),
            ("jsonp=cb", Err("missing message= parameter")),
        ];
        for (query, want) in cases {
            let got = parse_get(query).map(|(_, f)| f).map_err(|e| e.0);
            assert_eq!(got, *want, "{query}");
        }
    }

    #[test]
    fn published_text_is_json_only_when_typed_and_parsing() {
        let cases: &[(Option<&str>, &str, bool)] = &[
            (Some("application/json"), r#"{"a":[1,2]}"#, true),
            (Some("Application/JSON; charset=utf-8"), "3", true),
            (Some("application/json"), "hello", false),
            (Some("text/plain"), r#"{"a":1}"#, false),
            (None, r#"{"a":1}"#, false),
            (Some("application/json-seq"), "1", false),
        ];
        for (ct, text, want) in cases {
            assert_eq!(is_json_text(*ct, text), *want, "{ct:?} {text}");
        }
    }

    #[test]
    fn bodies_are_framed() {
        let parts = [r#"{"a":1}"#, r#"{"b":2}"#];
        assert_eq!(encode_body(&parts, &Framing::Json), br#"[{"a":1},{"b":2}]"#);
        assert_eq!(
            encode_body(&parts[..1], &Framing::Jsonp("cb".into())),
            br#"cb([{"a":1}]);"#
        );
        assert_eq!(encode_body::<&str>(&[], &Framing::Json), b"[]");
    }
}

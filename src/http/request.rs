//! Parsing a request head with httparse and deciding its framing: how long the
//! body is, whether the connection stays open, and which headers halley reads.
//! Framing errors (smuggling attempts included) are rejected here, before any
//! route sees the request.

use super::Reject;

/// Request line and headers together may not exceed this (answered with 431).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// More header lines than this is answered with 431 too.
pub const MAX_HEADERS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Delete,
    Options,
    Other,
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// What halley needs from a request head, owned so the read buffer can move on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub target: String,
    pub http10: bool,
    pub body: BodyKind,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub accept_sse: bool,
    pub last_event_id: Option<String>,
    pub authorization: Option<String>,
    /// The `halley_token` cookie's value, the signed token an EventSource
    /// carries (`token::COOKIE`); other cookies are not kept.
    pub token_cookie: Option<String>,
    pub content_type: Option<String>,
    pub if_none_match: Option<String>,
    /// A publish's `Idempotency-Key`, checked where a publish is handled.
    pub idempotency_key: Option<String>,
    /// `Upgrade` names `websocket`: the client asks for a WebSocket
    /// (`ws::handshake` checks the rest).
    pub upgrade_websocket: bool,
    /// `Connection` carries the `upgrade` token.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Key` and `-Version`, boxed: most requests have none.
    pub websocket: Option<Box<WsHeaders>>,
}

/// The `Sec-WebSocket-*` headers a handshake is checked by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsHeaders {
    pub key: Option<String>,
    pub version: Option<String>,
}

/// The outcome of looking at the start of a read buffer. It is returned and
/// taken apart at once, never stored, so its size costs a move, while boxing
/// the head would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole head, which took the first `len` bytes.
    Complete { head: RequestHead, len: usize },
    /// Not enough bytes yet; not an error.
    Partial,
}

/// Parses the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(e) => return Err(Reject::new(400, format!("malformed request: {e}"))),
    };
    if len > MAX_HEAD_BYTES {
        return Err(too_large());
    }
    let head = interpret(&req)?;
    Ok(Parsed::Complete { head, len })
}

fn too_large() -> Reject {
    Reject::new(431, format!("request head exceeds {MAX_HEAD_BYTES} bytes"))
}

fn interpret(req: &httparse::Request) -> Result<RequestHead, Reject> {
    let http10 = req.version == Some(0);
    let mut head = RequestHead {
        method: match req.method.unwrap_or("") {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        },
        target: req.path.unwrap_or("/").to_owned(),
        http10,
        body: BodyKind::None,
        keep_alive: !http10,
        expect_continue: false,
        accept_sse: false,
        last_event_id: None,
        authorization: None,
        token_cookie: None,
        content_type: None,
        if_none_match: None,
        idempotency_key: None,
        upgrade_websocket: false,
        connection_upgrade: false,
        websocket: None,
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut hosts = 0;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| Reject::new(400, format!("header {} is not valid UTF-8", h.name)))?
            .trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(value)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(Reject::new(400, "conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") || chunked {
                return Err(Reject::new(
                    501,
                    format!("unsupported Transfer-Encoding: {value}"),
                ));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                    head.keep_alive = true;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    head.connection_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case("100-continue") {
                return Err(Reject::new(417, format!("unsupported Expect: {value}")));
            }
            head.expect_continue = !http10;
        } else if name.eq_ignore_ascii_case("accept") {
            head.accept_sse |= value.contains("text/event-stream");
        } else if name.eq_ignore_ascii_case("last-event-id") {
            head.last_event_id = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("cookie") {
            // Browsers send one Cookie line, but HTTP/1.1 allows several.
            if let Some(token) = crate::token::cookie_value(value, crate::token::COOKIE) {
                head.token_cookie = Some(token.to_owned());
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("if-none-match") {
            head.if_none_match = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            head.idempotency_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("upgrade") {
            head.upgrade_websocket |= value
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.websocket.get_or_insert_with(Box::default).key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            head.websocket.get_or_insert_with(Box::default).version = Some(value.to_owned());
        }
    }
    if !http10 && hosts != 1 {
        return Err(Reject::new(
            400,
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    head.body = match (content_length, chunked) {
        (Some(_), true) => {
            return Err(Reject::new(
                400,
                "both Content-Length and Transfer-Encoding are set",
            ))
        }
        (None, true) if http10 => {
            return Err(Reject::new(
                400,
                "Transfer-Encoding is not allowed in HTTP/1.0",
            ))
        }
        (None, true) => BodyKind::Chunked,
        (Some(0), false) | (None, false) => BodyKind::None,
        (Some(n), false) => BodyKind::Length(n),
    };
    Ok(head)
}

fn parse_length(value: &str) -> Result<u64, Reject> {
    let digits =
        !value.is_empty() && value.len() <= 19 && value.bytes().all(|b| b.is_ascii_digit());
    match digits {
        true => value
            .parse()
            .map_err(|_| Reject::new(400, "invalid Content-Length")),
        false => Err(Reject::new(400, "invalid Content-Length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(raw: &str) -> Result<RequestHead, Reject> {
        match parse(raw.as_bytes())? {
            Parsed::Complete { head, len } => {
                assert_eq!(len, raw.len());
                Ok(head)
            }
            Parsed::Partial => panic!("partial: {raw:?}"),
        }
    }

    fn status_of(raw: &str) -> u16 {
        head_of(raw).expect_err("should be rejected").status
    }

    #[test]
    fn every_truncated_prefix_is_partial() {
        let raw = "POST /pub/chat?event=x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
        for end in 0..raw.len() {
            assert_eq!(
                parse(&raw.as_bytes()[..end]),
                Ok(Parsed::Partial),
                "prefix {end}"
            );
        }
        let head = head_of(raw).unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.target, "/pub/chat?event=x");
        assert_eq!(head.body, BodyKind::Length(5));
        assert!(head.keep_alive);
    }

    #[test]
    fn reads_the_headers_halley_uses() {
        let head = head_of(
            "GET /sub/a HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\nLast-Event-ID: abc-1\r\n\
             Authorization: Bearer t\r\nExpect: 100-continue\r\nContent-Type: text/plain\r\n\
             Idempotency-Key:  order-42 \r\nCookie: a=1\r\nCookie: b=2; halley_token=jwt; c=3\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.token_cookie.as_deref(), Some("jwt"));
        assert!(head.accept_sse && head.expect_continue);
        assert_eq!(head.last_event_id.as_deref(), Some("abc-1"));
        assert_eq!(head.authorization.as_deref(), Some("Bearer t"));
        assert_eq!(head.content_type.as_deref(), Some("text/plain"));
        assert_eq!(head.idempotency_key.as_deref(), Some("order-42"));
        assert!(!head.upgrade_websocket && !head.connection_upgrade);
    }

    #[test]
    fn reads_a_websocket_upgrade() {
        let head = head_of(
            "GET /sub/a HTTP/1.1\r\nHost: h\r\nUpgrade: h2c, WebSocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: a2V5\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        assert!(head.upgrade_websocket && head.connection_upgrade);
        let ws = head.websocket.unwrap();
        assert_eq!(ws.key.as_deref(), Some("a2V5"));
        assert_eq!(ws.version.as_deref(), Some("13"));
    }

    #[test]
    fn decides_keep_alive() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, Close\r\n\r\n",
                false,
            ),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ];
        for (raw, want) in cases {
            assert_eq!(head_of(raw).unwrap().keep_alive, want, "{raw:?}");
        }
    }

    #[test]
    fn decides_body_framing() {
        let cases = [
            ("POST / HTTP/1.1\r\nHost: h\r\n\r\n", BodyKind::None),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
                BodyKind::None,
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
                BodyKind::Length(12),
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                BodyKind::Length(3),
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                BodyKind::Chunked,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(head_of(raw).unwrap().body, want, "{raw:?}");
        }
    }

    #[test]
    fn rejects_bad_framing_and_syntax() {
        let cases = [
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nNoColonHere\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n", 417),
            ("GARBAGE\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 400),
        ];
        for (raw, want) in cases {
            assert_eq!(status_of(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn limits_the_head_size_including_the_request_line() {
        let long_target = format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(status_of(&long_target), 431);
        let partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse(partial.as_bytes()).unwrap_err().status, 431);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(
            status_of(&format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n")),
            431
        );
    }
}

//! Routing: which endpoint a request is for, and the parameters it carries,
//! checked before anything is done. Pure; the server turns a `Route` into IO.

use crate::cursor::{self, Cursor};
use crate::encode::Transport;
use crate::http::query::{self, split_target};
use crate::http::request::{Method, RequestHead};
use crate::http::Reject;
use crate::hub::validate_channel;
use crate::ws::handshake;

/// The SSE `event:` name set with `?event=`; longer names are refused.
pub const MAX_EVENT_NAME: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    Stats,
    /// The same figures as `/stats`, for Prometheus.
    Metrics,
    /// A page or file: the server looks the target up.
    Page,
    /// CORS preflight for a known path; `allow` lists its methods.
    Preflight {
        allow: &'static str,
    },
    Publish {
        channel: String,
        event: Option<String>,
    },
    ChannelInfo {
        channel: String,
    },
    Delete {
        channel: String,
    },
    Subscribe {
        channel: String,
        mode: Mode,
        cursor: Cursor,
    },
    /// Any path under `/bayeux`: one endpoint, whatever CometD appends
    /// (`/bayeux/handshake`, `/bayeux/connect`, ...). The messages are in the
    /// body (`POST`) or the query (`GET`, JSONP).
    Bayeux,
    /// `GET /ws-echo`, a checked WebSocket handshake: the echo endpoint
    /// Autobahn|Testsuite runs against, served only with `--ws-echo`.
    WsEcho,
    /// `GET /ws`, a checked WebSocket handshake: one socket for many
    /// channels (`crate::mux`).
    Mux,
    /// `GET /bayeux` (any path under it) with a checked WebSocket
    /// handshake: Bayeux in text frames.
    BayeuxSocket,
}

/// How a subscriber wants messages. A WebSocket upgrade (its handshake
/// already checked) is `Stream(Transport::WebSocket)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Stream(Transport),
    LongPoll,
}

/// SSE event names halley sends itself, or that EventSource gives a meaning;
/// a publisher could spoof those signals to every reader.
const RESERVED_EVENTS: [&str; 5] = ["gap", "deleted", "open", "error", "drain"];

const ALLOW_READ: &str = "GET, HEAD, OPTIONS";
const ALLOW_PUB: &str = "GET, HEAD, POST, DELETE, OPTIONS";
/// No `HEAD`: a Bayeux request's answer is what its messages did, and a
/// `HEAD` must not do anything (nor can its head be known without doing it).
const ALLOW_BAYEUX: &str = "GET, POST, OPTIONS";
const ALLOW_WEBSOCKET: &str = "GET, OPTIONS";

/// The path of the echo endpoint (`--ws-echo`).
pub const WS_ECHO_PATH: &str = "/ws-echo";
/// The path of the multiplexed WebSocket.
pub const MUX_PATH: &str = "/ws";

pub fn route(head: &RequestHead) -> Result<Route, Reject> {
    let (path, query) = split_target(&head.target);
    let (allow, endpoint) = if let Some(rest) = path.strip_prefix("/pub/") {
        (ALLOW_PUB, Endpoint::Pub(rest))
    } else if let Some(rest) = path.strip_prefix("/sub/") {
        (ALLOW_READ, Endpoint::Sub(rest))
    } else if path == "/bayeux" || path.starts_with("/bayeux/") {
        (ALLOW_BAYEUX, Endpoint::Bayeux)
    } else if path == WS_ECHO_PATH {
        (ALLOW_WEBSOCKET, Endpoint::WsEcho)
    } else if path == MUX_PATH {
        (ALLOW_WEBSOCKET, Endpoint::Mux)
    } else {
        match path {
            "/healthz" => (ALLOW_READ, Endpoint::Health),
            "/stats" => (ALLOW_READ, Endpoint::Stats),
            "/metrics" => (ALLOW_READ, Endpoint::Metrics),
            // Anything else is a page: the embedded demo, or a file under --static.
            _ => (ALLOW_READ, Endpoint::Page),
        }
    };
    if head.method == Method::Options {
        return Ok(Route::Preflight { allow });
    }
    let method_allowed = match head.method {
        Method::Get => true,
        Method::Head => allow.contains("HEAD"),
        Method::Post => allow.contains("POST"),
        Method::Delete => allow.contains("DELETE"),
        Method::Options | Method::Other => false,
    };
    if !method_allowed {
        return Err(
            Reject::new(405, format!("method not allowed here; allowed: {allow}"))
                .with_allow(allow),
        );
    }
    Ok(match endpoint {
        Endpoint::Health => Route::Health,
        Endpoint::Stats => Route::Stats,
        Endpoint::Metrics => Route::Metrics,
        Endpoint::Page => Route::Page,
        // Only a GET can be an upgrade; a POST that says so is long-polling.
        Endpoint::Bayeux if head.upgrade_websocket && head.method == Method::Get => {
            handshake::check(head)?;
            Route::BayeuxSocket
        }
        Endpoint::Bayeux => Route::Bayeux,
        Endpoint::Mux => {
            handshake::check(head)?;
            Route::Mux
        }
        Endpoint::WsEcho => {
            handshake::check(head)?;
            Route::WsEcho
        }
        Endpoint::Pub(raw) => {
            let channel = channel_name(raw)?;
            match head.method {
                Method::Post => Route::Publish {
                    channel,
                    event: event_name(query)?,
                },
                Method::Delete => Route::Delete { channel },
                _ => Route::ChannelInfo { channel },
            }
        }
        Endpoint::Sub(raw) => Route::Subscribe {
            channel: channel_name(raw)?,
            mode: mode(head, query)?,
            cursor: start(head, query)?,
        },
    })
}

enum Endpoint<'a> {
    Health,
    Stats,
    Metrics,
    Page,
    Pub(&'a str),
    Sub(&'a str),
    Bayeux,
    WsEcho,
    Mux,
}

/// The path of a request target, without its query.
pub fn path(target: &str) -> &str {
    split_target(target).0
}

fn channel_name(raw: &str) -> Result<String, Reject> {
    let name =
        query::decode(raw, false).map_err(|e| Reject::new(400, format!("channel name: {e}")))?;
    validate_channel(&name)?;
    Ok(name)
}

fn param(query: &str, key: &str) -> Result<Option<String>, Reject> {
    query::param(query, key).map_err(|e| Reject::new(400, format!("query parameter {key}: {e}")))
}

fn event_name(query: &str) -> Result<Option<String>, Reject> {
    let Some(name) = param(query, "event")? else {
        return Ok(None);
    };
    check_event_name(&name)?;
    Ok(Some(name))
}

/// The rules for an SSE event name, wherever a publish sets it (`?event=`, or
/// a Bayeux publish's `ext.halley.event`).
pub fn check_event_name(name: &str) -> Result<(), Reject> {
    if name.contains(['\r', '\n']) {
        return Err(Reject::new(400, "event name must not contain CR or LF"));
    }
    if RESERVED_EVENTS.contains(&name) {
        return Err(Reject::new(
            400,
            format!("event name {name:?} is reserved for halley's own signals"),
        ));
    }
    if name.is_empty() || name.len() > MAX_EVENT_NAME {
        return Err(Reject::new(
            400,
            format!("event name must be 1 to {MAX_EVENT_NAME} bytes"),
        ));
    }
    Ok(())
}

/// A WebSocket upgrade wins (and must be a correct handshake); then an
/// explicit `?transport=` wins over `Accept`; long-poll is the default.
fn mode(head: &RequestHead, query: &str) -> Result<Mode, Reject> {
    if head.upgrade_websocket {
        handshake::check(head)?;
        return Ok(Mode::Stream(Transport::WebSocket));
    }
    match param(query, "transport")?.as_deref() {
        Some("sse") => Ok(Mode::Stream(Transport::Sse)),
        Some("stream") => Ok(Mode::Stream(Transport::Stream)),
        Some("longpoll") => Ok(Mode::LongPoll),
        Some(other) => Err(Reject::new(
            400,
            format!("unknown transport {other:?}; use sse, longpoll or stream"),
        )),
        None if head.accept_sse => Ok(Mode::Stream(Transport::Sse)),
        None => Ok(Mode::LongPoll),
    }
}

/// The `Last-Event-ID` header wins over `?last_event_id=`, which wins over
/// `?since=`: a browser's EventSource reconnects to the same URL and says
/// where it got to only in the header.
fn start(head: &RequestHead, query: &str) -> Result<Cursor, Reject> {
    let header = head.last_event_id.clone().filter(|v| !v.is_empty());
    let text = match header {
        Some(h) => Some(h),
        None => match param(query, "last_event_id")? {
            Some(v) => Some(v),
            None => param(query, "since")?,
        },
    };
    match text.filter(|t| !t.is_empty()) {
        None => Ok(Cursor::Now),
        Some(t) => cursor::parse(&t).map_err(|e| Reject::new(400, format!("{e}: {t:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{BodyKind, WsHeaders};

    fn head(method: Method, target: &str) -> RequestHead {
        RequestHead {
            method,
            target: target.into(),
            http10: false,
            body: BodyKind::None,
            keep_alive: true,
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
        }
    }

    #[test]
    fn routes_websocket_upgrades() {
        let upgrade = |method: Method, target: &str, version: &str| RequestHead {
            upgrade_websocket: true,
            connection_upgrade: true,
            websocket: Some(Box::new(WsHeaders {
                key: Some("dGhlIHNhbXBsZSBub25jZQ==".into()),
                version: Some(version.into()),
            })),
            ..head(method, target)
        };
        let sub = route(&upgrade(Method::Get, "/sub/a?since=earliest", "13")).unwrap();
        assert_eq!(
            sub,
            Route::Subscribe {
                channel: "a".into(),
                mode: Mode::Stream(Transport::WebSocket),
                cursor: Cursor::Earliest,
            }
        );
        assert_eq!(
            route(&upgrade(Method::Get, "/ws-echo", "13")),
            Ok(Route::WsEcho)
        );
        assert_eq!(status(&upgrade(Method::Get, "/ws-echo", "12")), 426);
        assert_eq!(status(&upgrade(Method::Get, "/sub/a", "12")), 426);
        assert_eq!(status(&upgrade(Method::Head, "/sub/a", "13")), 400);
        assert_eq!(status(&head(Method::Get, "/ws-echo")), 426);
        assert_eq!(status(&head(Method::Post, "/ws-echo")), 405);
    }

    fn status(h: &RequestHead) -> u16 {
        route(h).unwrap_err().status
    }

    #[test]
    fn routes_paths_and_methods() {
        use Method::*;
        let cases: &[(Method, &str, Result<Route, u16>)] = &[
            (Get, "/healthz", Ok(Route::Health)),
            (Head, "/stats", Ok(Route::Stats)),
            (Get, "/metrics", Ok(Route::Metrics)),
            (Post, "/metrics", Err(405)),
            (Get, "/", Ok(Route::Page)),
            (Head, "/halley.js", Ok(Route::Page)),
            (Get, "/nope", Ok(Route::Page)),
            (Post, "/nope", Err(405)),
            (Get, "/pub", Ok(Route::Page)),
            (Post, "/pub/a?event=gap", Err(400)),
            (Post, "/pub/a?event=deleted", Err(400)),
            (
                Post,
                "/pub/a",
                Ok(Route::Publish {
                    channel: "a".into(),
                    event: None,
                }),
            ),
            (
                Post,
                "/pub/a?event=note",
                Ok(Route::Publish {
                    channel: "a".into(),
                    event: Some("note".into()),
                }),
            ),
            (Post, "/pub/a?event=x%0Ay", Err(400)),
            (Post, "/pub/a?event=", Err(400)),
            (
                Get,
                "/pub/chat/room1",
                Ok(Route::ChannelInfo {
                    channel: "chat/room1".into(),
                }),
            ),
            (
                Delete,
                "/pub/a",
                Ok(Route::Delete {
                    channel: "a".into(),
                }),
            ),
            (Post, "/pub/", Err(400)),
            (Post, "/pub/a%20b", Err(400)),
            (
                Post,
                "/pub/chat%2Froom",
                Ok(Route::Publish {
                    channel: "chat/room".into(),
                    event: None,
                }),
            ),
            (Post, "/sub/a", Err(405)),
            (Delete, "/healthz", Err(405)),
            (Other, "/pub/a", Err(405)),
            (
                Options,
                "/sub/a",
                Ok(Route::Preflight { allow: ALLOW_READ }),
            ),
            (Options, "/pub/a", Ok(Route::Preflight { allow: ALLOW_PUB })),
            (Post, "/bayeux", Ok(Route::Bayeux)),
            (Post, "/bayeux/", Ok(Route::Bayeux)),
            (Post, "/bayeux/handshake", Ok(Route::Bayeux)),
            (Get, "/bayeux?jsonp=cb&message=%5B%5D", Ok(Route::Bayeux)),
            (
                Options,
                "/bayeux/connect",
                Ok(Route::Preflight {
                    allow: ALLOW_BAYEUX,
                }),
            ),
            (Delete, "/bayeux", Err(405)),
            (Head, "/bayeux?jsonp=cb&message=%5B%5D", Err(405)),
            (Post, "/bayeuxx", Err(405)),
        ];
        for (method, target, want) in cases {
            let got = route(&head(*method, target)).map_err(|r| r.status);
            assert_eq!(&got, want, "{method:?} {target}");
        }
        assert_eq!(
            route(&head(Post, "/sub/a")).unwrap_err().header.as_deref(),
            Some("Allow: GET, HEAD, OPTIONS")
        );
    }

    #[test]
    fn picks_the_transport() {
        let sub = |target: &str, accept_sse: bool| {
            let h = RequestHead {
                accept_sse,
                ..head(Method::Get, target)
            };
            route(&h).map(|r| match r {
                Route::Subscribe { mode, .. } => mode,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(sub("/sub/a", false), Ok(Mode::LongPoll));
        assert_eq!(sub("/sub/a", true), Ok(Mode::Stream(Transport::Sse)));
        assert_eq!(
            sub("/sub/a?transport=stream", true),
            Ok(Mode::Stream(Transport::Stream))
        );
        assert_eq!(sub("/sub/a?transport=longpoll", true), Ok(Mode::LongPoll));
        assert_eq!(
            sub("/sub/a?transport=sse", false),
            Ok(Mode::Stream(Transport::Sse))
        );
        assert_eq!(
            sub("/sub/a?transport=carrier-pigeon", false)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn picks_the_cursor() {
        let sub = |target: &str, header: Option<&str>| {
            let h = RequestHead {
                last_event_id: header.map(Into::into),
                ..head(Method::Get, target)
            };
            route(&h).map(|r| match r {
                Route::Subscribe { cursor, .. } => cursor,
                other => panic!("{other:?}"),
            })
        };
        let at = |seq| Cursor::After { epoch: 0xa, seq };
        assert_eq!(sub("/sub/c", None), Ok(Cursor::Now));
        assert_eq!(sub("/sub/c?since=earliest", None), Ok(Cursor::Earliest));
        assert_eq!(sub("/sub/c?since=a-1", None), Ok(at(1)));
        assert_eq!(sub("/sub/c?last_event_id=a-2&since=a-1", None), Ok(at(2)));
        assert_eq!(sub("/sub/c?last_event_id=a-2", Some("a-3")), Ok(at(3)));
        assert_eq!(sub("/sub/c?since=a-2", Some("")), Ok(at(2)));
        assert_eq!(status(&head(Method::Get, "/sub/c?since=bogus")), 400);
    }
}

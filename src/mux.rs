//! The `/ws` command protocol: one WebSocket carrying any number of channels.
//! The client sends one JSON command per text message; `parse` turns it into
//! a [`Command`] or the [`CommandError`] to answer, and the encoders below
//! write the server's replies. Pure: the server (`server::mux`) does the
//! subscribing and publishing, and the messages themselves go out as the
//! stream transport's JSON objects, which already name their channel.
//!
//! ```text
//! client                                        server
//! {"subscribe":"a","since":"earliest"}   ->     {"subscribed":"a","cursor":"ID"}
//!                                               {"id":..,"channel":"a","data":..}  (replay, then live)
//! {"publish":"a","data":"hi"}            ->     {"published":{"id":"ID","channel":"a"}}
//! {"unsubscribe":"a"}                    ->     {"unsubscribed":"a"}
//! {"subscribe":"a b"}                    ->     {"error":"channel names ...","channel":"a b"}
//! ```

use serde_json::{Map, Value};

use crate::cursor::{self, Cursor};
use crate::encode::{push_gap, Gap};
use crate::hub::validate_channel;
use crate::json;
use crate::routes::check_event_name;

/// Channels one `/ws` connection may follow at once. Each costs a hub entry
/// and a slot in the connection's list; a page follows a handful, and a
/// client asking for more is refused per command, not disconnected.
pub const MAX_CHANNELS: usize = 64;

/// The largest command, in bytes: the default `--ws-max-message`, past which
/// the WebSocket itself is closed (1009). A publish carries its data inside,
/// and the publishing rules then hold `data` to the channel's own body limit
/// (4 KiB on an open channel); a command over this, on a server that lets
/// WebSocket messages be larger, is refused and the connection stays open.
pub const MAX_COMMAND: usize = 64 * 1024;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Follow `channel` from `cursor`: `since` absent means from now on.
    Subscribe {
        channel: String,
        cursor: Cursor,
    },
    Unsubscribe {
        channel: String,
    },
    /// Publish `data` (text, sent as it came) with an optional SSE event name.
    Publish {
        channel: String,
        data: String,
        event: Option<String>,
    },
}

impl Command {
    pub fn channel(&self) -> &str {
        match self {
            Command::Subscribe { channel, .. }
            | Command::Unsubscribe { channel }
            | Command::Publish { channel, .. } => channel,
        }
    }
}

/// A command refused: `{"error":MESSAGE,"channel"?:CHANNEL}`. The channel is
/// given whenever the command named one, so a client with several channels
/// in flight knows which request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    pub message: String,
    pub channel: Option<String>,
}

impl CommandError {
    pub fn new(message: impl Into<String>, channel: Option<&str>) -> CommandError {
        CommandError {
            message: message.into(),
            channel: channel.map(str::to_owned),
        }
    }

    /// The error's frame payload.
    pub fn encode(&self) -> Vec<u8> {
        error(&self.message, self.channel.as_deref())
    }
}

/// The keys that name a command; a command has exactly one of them.
const VERBS: [&str; 3] = ["subscribe", "unsubscribe", "publish"];

/// Reads one command from a text message's payload.
pub fn parse(payload: &[u8]) -> Result<Command, CommandError> {
    if payload.len() > MAX_COMMAND {
        return Err(CommandError::new(
            format!("commands are at most {MAX_COMMAND} bytes"),
            None,
        ));
    }
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| CommandError::new(format!("a command is a JSON object: {e}"), None))?;
    let Value::Object(fields) = value else {
        return Err(CommandError::new("a command is a JSON object", None));
    };
    let mut verbs = VERBS.iter().filter(|v| fields.contains_key(**v));
    let (Some(verb), None) = (verbs.next(), verbs.next()) else {
        return Err(CommandError::new(
            "a command has exactly one of subscribe, unsubscribe or publish",
            None,
        ));
    };
    let channel = match &fields[*verb] {
        Value::String(name) => name.as_str(),
        _ => {
            return Err(CommandError::new(
                format!("{verb} names a channel as a string"),
                None,
            ))
        }
    };
    let fail = |message: String| CommandError::new(message, Some(channel));
    validate_channel(channel).map_err(|r| fail(r.message))?;
    let allowed: &[&str] = match *verb {
        "subscribe" => &["subscribe", "since"],
        "unsubscribe" => &["unsubscribe"],
        _ => &["publish", "data", "event"],
    };
    if let Some(key) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(fail(format!("unknown field {key:?} in {verb}")));
    }
    let channel = channel.to_owned();
    match *verb {
        "subscribe" => {
            let cursor = match optional_str(&fields, "since").map_err(fail)? {
                None => Cursor::Now,
                Some(text) => cursor::parse(text)
                    .map_err(|e| fail(format!("since: {e}; use a message id or \"earliest\"")))?,
            };
            Ok(Command::Subscribe { channel, cursor })
        }
        "unsubscribe" => Ok(Command::Unsubscribe { channel }),
        _ => {
            let Some(data) = optional_str(&fields, "data").map_err(fail)? else {
                return Err(fail("publish needs \"data\", a string".into()));
            };
            let event = optional_str(&fields, "event").map_err(fail)?;
            if let Some(name) = event {
                check_event_name(name).map_err(|r| fail(r.message))?;
            }
            Ok(Command::Publish {
                data: data.to_owned(),
                event: event.map(str::to_owned),
                channel,
            })
        }
    }
}

/// A field that, when present, must be a string.
fn optional_str<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match fields.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// `{"subscribed":CHANNEL,"cursor":ID}`: the position the subscription starts
/// after, which the client keeps as its last id until a message moves it on.
pub fn subscribed(channel: &str, cursor: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(channel.len() + cursor.len() + 32);
    out.extend_from_slice(b"{\"subscribed\":");
    json::push_str(&mut out, channel);
    out.extend_from_slice(b",\"cursor\":");
    json::push_str(&mut out, cursor);
    out.push(b'}');
    out
}

/// `{"unsubscribed":CHANNEL}`.
pub fn unsubscribed(channel: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(channel.len() + 20);
    out.extend_from_slice(b"{\"unsubscribed\":");
    json::push_str(&mut out, channel);
    out.push(b'}');
    out
}

/// `{"published":{"id":ID,"channel":CHANNEL}}`, the same object a `/pub`
/// answers with.
pub fn published(id: &str, channel: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(channel.len() + id.len() + 40);
    out.extend_from_slice(b"{\"published\":{\"id\":");
    json::push_str(&mut out, id);
    out.extend_from_slice(b",\"channel\":");
    json::push_str(&mut out, channel);
    out.extend_from_slice(b"}}");
    out
}

/// `{"gap":{...},"channel":CHANNEL}`: one channel's cursor could not be
/// honoured. The gap's `next` is the cursor to keep.
pub fn gap(channel: &str, gap: &Gap) -> Vec<u8> {
    let mut out = Vec::with_capacity(channel.len() + gap.cursor.len() + gap.next.len() + 80);
    out.extend_from_slice(b"{\"gap\":");
    push_gap(&mut out, gap);
    out.extend_from_slice(b",\"channel\":");
    json::push_str(&mut out, channel);
    out.push(b'}');
    out
}

/// `{"error":MESSAGE,"channel"?:CHANNEL}`.
pub fn error(message: &str, channel: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 40);
    out.extend_from_slice(b"{\"error\":");
    json::push_str(&mut out, message);
    if let Some(channel) = channel {
        out.extend_from_slice(b",\"channel\":");
        json::push_str(&mut out, channel);
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parse's outcome with the error as (message, channel), for comparing.
    type Parsed = Result<Command, (String, Option<String>)>;

    fn sub(channel: &str, cursor: Cursor) -> Parsed {
        Ok(Command::Subscribe {
            channel: channel.into(),
            cursor,
        })
    }

    #[test]
    fn parses_good_commands() {
        let cases: &[(&str, Parsed)] = &[
            (r#"{"subscribe":"a"}"#, sub("a", Cursor::Now)),
            (
                r#"{"subscribe":"a/b","since":"earliest"}"#,
                sub("a/b", Cursor::Earliest),
            ),
            (
                r#"{"since":"00000000000a-7","subscribe":"x"}"#,
                sub("x", Cursor::After { epoch: 10, seq: 7 }),
            ),
            (
                r#" {"unsubscribe":"a"} "#,
                Ok(Command::Unsubscribe {
                    channel: "a".into(),
                }),
            ),
            (
                r#"{"publish":"a","data":"hi \"you\""}"#,
                Ok(Command::Publish {
                    channel: "a".into(),
                    data: "hi \"you\"".into(),
                    event: None,
                }),
            ),
            (
                r#"{"publish":"a","data":"","event":"note"}"#,
                Ok(Command::Publish {
                    channel: "a".into(),
                    data: "".into(),
                    event: Some("note".into()),
                }),
            ),
        ];
        for (text, want) in cases {
            let got = parse(text.as_bytes()).map_err(|e| (e.message, e.channel));
            assert_eq!(&got, want, "command {text}");
        }
    }

    #[test]
    fn refuses_bad_commands_saying_why() {
        // (command, a phrase of the message, the channel the error names)
        let cases: &[(&[u8], &str, Option<&str>)] = &[
            (b"", "a command is a JSON object", None),
            (b"{", "a command is a JSON object", None),
            (b"\xff\xfe", "a command is a JSON object", None),
            (b"[1,2]", "a command is a JSON object", None),
            (b"\"subscribe\"", "a command is a JSON object", None),
            (b"{}", "exactly one of", None),
            (b"{\"hello\":\"a\"}", "exactly one of", None),
            (
                b"{\"subscribe\":\"a\",\"publish\":\"a\"}",
                "exactly one of",
                None,
            ),
            (
                b"{\"subscribe\":7}",
                "subscribe names a channel as a string",
                None,
            ),
            (
                b"{\"unsubscribe\":null}",
                "unsubscribe names a channel",
                None,
            ),
            (
                b"{\"subscribe\":\"\"}",
                "channel names are 1 to 128",
                Some(""),
            ),
            (b"{\"subscribe\":\"a b\"}", "channel names are", Some("a b")),
            (
                b"{\"subscribe\":\"a\",\"since\":\"later\"}",
                "since: cursor is not a message id",
                Some("a"),
            ),
            (
                b"{\"subscribe\":\"a\",\"since\":5}",
                "since must be a string",
                Some("a"),
            ),
            (
                b"{\"subscribe\":\"a\",\"sinc\":\"earliest\"}",
                "unknown field \"sinc\"",
                Some("a"),
            ),
            (
                b"{\"unsubscribe\":\"a\",\"since\":\"earliest\"}",
                "unknown field \"since\"",
                Some("a"),
            ),
            (b"{\"publish\":\"a\"}", "publish needs \"data\"", Some("a")),
            (
                b"{\"publish\":\"a\",\"data\":{\"x\":1}}",
                "data must be a string",
                Some("a"),
            ),
            (
                b"{\"publish\":\"a\",\"data\":\"x\",\"event\":\"gap\"}",
                "reserved",
                Some("a"),
            ),
            (
                b"{\"publish\":\"a\",\"data\":\"x\",\"event\":\"a\\nb\"}",
                "CR or LF",
                Some("a"),
            ),
            (
                b"{\"publish\":\"a\",\"data\":\"x\",\"event\":\"\"}",
                "1 to 64 bytes",
                Some("a"),
            ),
            (
                b"{\"publish\":\"a\",\"data\":\"x\",\"event\":3}",
                "event must be a string",
                Some("a"),
            ),
        ];
        for (text, phrase, channel) in cases {
            let err = parse(text).expect_err(&String::from_utf8_lossy(text));
            assert!(
                err.message.contains(phrase),
                "{:?}: {:?} lacks {phrase:?}",
                String::from_utf8_lossy(text),
                err.message
            );
            assert_eq!(
                err.channel.as_deref(),
                *channel,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn refuses_a_command_over_the_cap_before_parsing_it() {
        let data = "x".repeat(MAX_COMMAND);
        let text = format!(r#"{{"publish":"a","data":"{data}"}}"#);
        let err = parse(text.as_bytes()).unwrap_err();
        assert_eq!(
            err.message,
            format!("commands are at most {MAX_COMMAND} bytes")
        );
        // Just under the cap still parses: the cap is on the command, not on a guess.
        let data = "x".repeat(MAX_COMMAND - 40);
        let text = format!(r#"{{"publish":"a","data":"{data}"}}"#);
        assert!(parse(text.as_bytes()).is_ok());
    }

    #[test]
    fn encodes_replies() {
        let gap = Gap {
            reason: "expired",
            missed: Some(3),
            cursor: "0a-1".into(),
            next: "0a-4".into(),
        };
        let cases: &[(Vec<u8>, &str)] = &[
            (
                subscribed("a/b", "0a-4"),
                r#"{"subscribed":"a/b","cursor":"0a-4"}"#,
            ),
            (unsubscribed("a"), r#"{"unsubscribed":"a"}"#),
            (
                published("0a-5", "a"),
                r#"{"published":{"id":"0a-5","channel":"a"}}"#,
            ),
            (
                super::gap("a", &gap),
                r#"{"gap":{"reason":"expired","missed":3,"cursor":"0a-1","next":"0a-4"},"channel":"a"}"#,
            ),
            (error("no \"x\"", None), r#"{"error":"no \"x\""}"#),
            (
                error("bad", Some("a b")),
                r#"{"error":"bad","channel":"a b"}"#,
            ),
            (
                CommandError::new("bad", Some("c")).encode(),
                r#"{"error":"bad","channel":"c"}"#,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(String::from_utf8_lossy(got), *want);
            // Every reply is one JSON value a client can parse.
            serde_json::from_slice::<Value>(got).expect("valid JSON");
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// Short strings of any characters (no regex strategies in this build).
        fn text() -> impl Strategy<Value = String> {
            proptest::collection::vec(any::<char>(), 0..20).prop_map(|c| c.into_iter().collect())
        }

        proptest! {
            /// Whatever a client sends, the parser answers and never panics,
            /// and an error always encodes to valid JSON.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                if let Err(e) = parse(&bytes) {
                    serde_json::from_slice::<Value>(&e.encode()).expect("valid JSON");
                }
            }

            /// Commands built from arbitrary strings parse or fail cleanly.
            #[test]
            fn arbitrary_commands_never_panic(
                verb in prop::sample::select(vec!["subscribe", "unsubscribe", "publish", "x"]),
                channel in text(),
                extra in prop::sample::select(vec!["since", "data", "event", "other"]),
                value in text(),
            ) {
                let mut fields = Map::new();
                fields.insert(verb.to_owned(), Value::String(channel.clone()));
                fields.insert(extra.to_owned(), Value::String(value));
                let cmd = Value::Object(fields).to_string();
                match parse(cmd.as_bytes()) {
                    Ok(c) => prop_assert_eq!(c.channel(), channel.as_str()),
                    Err(e) => { serde_json::from_slice::<Value>(&e.encode()).expect("valid JSON"); }
                }
            }
        }
    }
}

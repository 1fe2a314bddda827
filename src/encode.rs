//! Transport encoders: a message, a gap or a deletion in, bytes out. SSE and
//! NDJSON stream frames come out as complete HTTP chunks, so one buffer serves
//! every HTTP/1.1 subscriber; HTTP/1.0 subscribers get the chunk's payload.
//! WebSocket frames are whole unmasked text frames, the same for everyone.

use crate::http::response::write_chunk;
use crate::json;
use crate::message::Message;
use crate::ws::close;
use crate::ws::frame::{self, Opcode};

/// How a streaming subscriber wants its messages framed: SSE events,
/// NDJSON lines, or WebSocket text frames holding the NDJSON line's object.
/// Each has its own shared frame per message (`Message::sse`,
/// `Message::stream`, `Message::ws`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Sse,
    Stream,
    WebSocket,
}

impl Transport {
    /// The name the trace and `/stats` use.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Stream => "stream",
            Transport::WebSocket => "websocket",
        }
    }
}

/// A cursor the server could not honour, and what that cost the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Why messages were lost: `"restarted"` (the cursor is from an earlier
    /// server run) or `"expired"` (evicted from the buffer or past the TTL).
    pub reason: &'static str,
    /// How many messages were lost, when the server can know.
    pub missed: Option<u64>,
    /// The cursor the client gave.
    pub cursor: String,
    /// The cursor that acknowledges the gap: delivery continues after it.
    pub next: String,
}

/// The SSE event for a message: `id:`, optional `event:`, and one `data:`
/// line per line of the message, as an HTTP chunk.
pub fn sse_event(msg: &Message) -> Vec<u8> {
    let mut ev = Vec::with_capacity(msg.data.len() + msg.id.len() + 24);
    ev.extend_from_slice(b"id: ");
    ev.extend_from_slice(msg.id.as_bytes());
    ev.push(b'\n');
    if let Some(name) = &msg.event {
        ev.extend_from_slice(b"event: ");
        ev.extend_from_slice(name.as_bytes());
        ev.push(b'\n');
    }
    push_sse_data(&mut ev, &msg.data);
    chunk(&ev)
}

/// Appends `data:` lines for `text`. CR, LF and CRLF all end a line, exactly
/// as the EventSource parser splits them, so no line break survives inside a
/// field; the blank line after them ends the event.
fn push_sse_data(ev: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i <= bytes.len() {
        let end_of_line = i == bytes.len() || bytes[i] == b'\n' || bytes[i] == b'\r';
        if end_of_line {
            ev.extend_from_slice(b"data: ");
            ev.extend_from_slice(&bytes[start..i]);
            ev.push(b'\n');
            if i + 1 < bytes.len() && bytes[i] == b'\r' && bytes[i + 1] == b'\n' {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    ev.push(b'\n');
}

/// The NDJSON line for a message, as an HTTP chunk.
pub fn stream_line(msg: &Message) -> Vec<u8> {
    let mut line = json_object(msg);
    line.push(b'\n');
    chunk(&line)
}

/// `{"id","channel","data","event"?}`.
pub fn json_object(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.data.len() + msg.channel.len() + 48);
    out.extend_from_slice(b"{\"id\":");
    json::push_str(&mut out, &msg.id);
    out.extend_from_slice(b",\"channel\":");
    json::push_str(&mut out, &msg.channel);
    out.extend_from_slice(b",\"data\":");
    json::push_str(&mut out, &msg.data);
    if let Some(name) = &msg.event {
        out.extend_from_slice(b",\"event\":");
        json::push_str(&mut out, name);
    }
    out.push(b'}');
    out
}

/// A long-poll answer: `{"messages":[...],"next":CURSOR,"gap"?:{...}}`.
pub fn poll_body(messages: &[&Message], gap: Option<&Gap>, next: &str) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(64 + messages.iter().map(|m| m.data.len() + 64).sum::<usize>());
    out.extend_from_slice(b"{\"messages\":[");
    for (i, msg) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(msg.json());
    }
    out.extend_from_slice(b"],\"next\":");
    json::push_str(&mut out, next);
    if let Some(gap) = gap {
        out.extend_from_slice(b",\"gap\":");
        push_gap(&mut out, gap);
    }
    out.push(b'}');
    out
}

/// `{"reason","missed","cursor","next"}`.
pub fn push_gap(out: &mut Vec<u8>, gap: &Gap) {
    out.extend_from_slice(b"{\"reason\":");
    json::push_str(out, gap.reason);
    out.extend_from_slice(b",\"missed\":");
    match gap.missed {
        Some(n) => json::push_u64(out, n),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"cursor\":");
    json::push_str(out, &gap.cursor);
    out.extend_from_slice(b",\"next\":");
    json::push_str(out, &gap.next);
    out.push(b'}');
}

/// The SSE `gap` event. Its id is the gap's `next` cursor, so a browser that
/// reconnects after it does not hear about the same gap twice.
pub fn sse_gap(gap: &Gap) -> Vec<u8> {
    let mut ev = Vec::with_capacity(128);
    ev.extend_from_slice(b"id: ");
    ev.extend_from_slice(gap.next.as_bytes());
    ev.extend_from_slice(b"\nevent: gap\ndata: ");
    push_gap(&mut ev, gap);
    ev.extend_from_slice(b"\n\n");
    chunk(&ev)
}

/// The stream's `{"gap":{...}}` line.
pub fn stream_gap(gap: &Gap) -> Vec<u8> {
    let mut line = b"{\"gap\":".to_vec();
    push_gap(&mut line, gap);
    line.extend_from_slice(b"}\n");
    chunk(&line)
}

/// A gap in `transport`'s framing.
pub fn gap_frame(transport: Transport, gap: &Gap) -> Vec<u8> {
    match transport {
        Transport::Sse => sse_gap(gap),
        Transport::Stream => stream_gap(gap),
        Transport::WebSocket => ws_gap(gap),
    }
}

/// A stream's last frame when its channel is deleted, in `transport`'s
/// framing; a WebSocket's includes its close frame (1000).
pub fn deleted_frame(transport: Transport, channel: &str) -> Vec<u8> {
    match transport {
        Transport::Sse => sse_deleted(channel),
        Transport::Stream => stream_deleted(channel),
        Transport::WebSocket => ws_deleted(channel),
    }
}

/// The message's object as one WebSocket text frame.
pub fn ws_message(msg: &Message) -> Vec<u8> {
    frame::frame(Opcode::Text, msg.json())
}

/// `{"gap":{...}}` as a WebSocket text frame.
pub fn ws_gap(gap: &Gap) -> Vec<u8> {
    let mut text = b"{\"gap\":".to_vec();
    push_gap(&mut text, gap);
    text.push(b'}');
    frame::frame(Opcode::Text, &text)
}

/// `{"deleted":true,"channel":...}` as a text frame, then the close frame
/// (1000) that ends the WebSocket.
pub fn ws_deleted(channel: &str) -> Vec<u8> {
    let mut text = b"{\"deleted\":true,\"channel\":".to_vec();
    json::push_str(&mut text, channel);
    text.push(b'}');
    let mut out = frame::frame(Opcode::Text, &text);
    out.extend(close::frame(close::NORMAL, "channel deleted"));
    out
}

/// What a WebSocket subscriber whose token ended reads: the `error` object
/// the stream transport writes, then close 1008 with the same reason, so a
/// page can tell "get a new token" from a network failure.
pub fn ws_token_expired() -> Vec<u8> {
    let mut out = frame::frame(Opcode::Text, b"{\"error\":\"token expired\"}");
    out.extend(close::frame(close::POLICY, "token expired"));
    out
}

/// A WebSocket subscriber's heartbeat: a ping, which the peer must answer,
/// then a text frame a browser's script can see (it never sees pings), so
/// that a page can tell a dead connection from a quiet channel.
pub const WS_HEARTBEAT: &[u8] = b"\x89\x00\x81\x12{\"heartbeat\":true}";
/// The ping alone, for connections whose peers only echo (`--ws-echo`).
pub const WS_PING: &[u8] = b"\x89\x00";

/// The SSE `deleted` event sent when a channel is deleted.
pub fn sse_deleted(channel: &str) -> Vec<u8> {
    let mut ev = b"event: deleted\ndata: {\"channel\":".to_vec();
    json::push_str(&mut ev, channel);
    ev.extend_from_slice(b"}\n\n");
    chunk(&ev)
}

/// The stream's final line when its channel is deleted.
pub fn stream_deleted(channel: &str) -> Vec<u8> {
    let mut line = b"{\"deleted\":true,\"channel\":".to_vec();
    json::push_str(&mut line, channel);
    line.extend_from_slice(b"}\n");
    chunk(&line)
}

/// The first bytes of an SSE stream: the reconnect delay, then a comment, so
/// that proxies and the browser see the stream open at once. With `cursor`, an
/// event carrying only an `id:` follows: EventSource dispatches nothing for
/// it but adopts the id, so a subscriber that drops before its first message
/// still reconnects from where it started, not from "now".
pub fn sse_preamble(retry_ms: u64, cursor: Option<&str>) -> Vec<u8> {
    let mut text = format!("retry: {retry_ms}\n: halley\n\n");
    if let Some(cursor) = cursor {
        text.push_str("id: ");
        text.push_str(cursor);
        text.push_str("\n\n");
    }
    chunk(text.as_bytes())
}

/// An SSE comment, sent as a heartbeat.
pub const SSE_HEARTBEAT: &[u8] = b"3\r\n:\n\n\r\n";
/// An empty line, the stream's heartbeat.
pub const STREAM_HEARTBEAT: &[u8] = b"1\r\n\n\r\n";

fn chunk(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    write_chunk(&mut out, payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::chunk_payload;
    use std::time::Instant;

    fn msg(data: &str, event: Option<&str>) -> Message {
        Message::new(
            0x1a2b3c,
            3,
            "e-3".into(),
            "room".into(),
            event.map(Into::into),
            data.into(),
            false,
            Instant::now(),
        )
    }

    fn payload(chunk: &[u8]) -> String {
        String::from_utf8(chunk[chunk_payload(chunk)].to_vec()).unwrap()
    }

    #[test]
    fn sse_splits_lines_like_eventsource() {
        let cases = [
            ("hello", "id: e-3\ndata: hello\n\n"),
            ("", "id: e-3\ndata: \n\n"),
            ("a\nb", "id: e-3\ndata: a\ndata: b\n\n"),
            ("a\r\nb", "id: e-3\ndata: a\ndata: b\n\n"),
            ("a\rb", "id: e-3\ndata: a\ndata: b\n\n"),
            ("a\n\nb", "id: e-3\ndata: a\ndata: \ndata: b\n\n"),
            ("a\r\r\nb", "id: e-3\ndata: a\ndata: \ndata: b\n\n"),
            ("end\n", "id: e-3\ndata: end\ndata: \n\n"),
        ];
        for (data, want) in cases {
            assert_eq!(payload(&sse_event(&msg(data, None))), want, "data {data:?}");
        }
        assert_eq!(
            payload(&sse_event(&msg("x", Some("note")))),
            "id: e-3\nevent: note\ndata: x\n\n"
        );
    }

    #[test]
    fn stream_and_json() {
        let m = msg("say \"hi\"\n", Some("note"));
        let want = r#"{"id":"e-3","channel":"room","data":"say \"hi\"\n","event":"note"}"#;
        assert_eq!(String::from_utf8(json_object(&m)).unwrap(), want);
        assert_eq!(payload(&stream_line(&m)), format!("{want}\n"));
    }

    #[test]
    fn poll_bodies_and_gaps() {
        let m = msg("x", None);
        let gap = Gap {
            reason: "expired",
            missed: Some(2),
            cursor: "e-0".into(),
            next: "e-2".into(),
        };
        let body = String::from_utf8(poll_body(&[&m], Some(&gap), "e-3")).unwrap();
        assert_eq!(
            body,
            r#"{"messages":[{"id":"e-3","channel":"room","data":"x"}],"next":"e-3","gap":{"reason":"expired","missed":2,"cursor":"e-0","next":"e-2"}}"#
        );
        let unknown = Gap {
            missed: None,
            ..gap
        };
        assert_eq!(
            payload(&sse_gap(&unknown)),
            "id: e-2\nevent: gap\ndata: {\"reason\":\"expired\",\"missed\":null,\"cursor\":\"e-0\",\"next\":\"e-2\"}\n\n"
        );
        assert_eq!(
            payload(&stream_gap(&unknown)),
            "{\"gap\":{\"reason\":\"expired\",\"missed\":null,\"cursor\":\"e-0\",\"next\":\"e-2\"}}\n"
        );
    }

    #[test]
    fn websocket_frames_hold_the_stream_objects() {
        let m = msg("x", None);
        let object = br#"{"id":"e-3","channel":"room","data":"x"}"#;
        assert_eq!(
            ws_message(&m),
            [&[0x81, object.len() as u8][..], object].concat()
        );
        let gap = Gap {
            reason: "expired",
            missed: None,
            cursor: "e-0".into(),
            next: "e-2".into(),
        };
        let text = br#"{"gap":{"reason":"expired","missed":null,"cursor":"e-0","next":"e-2"}}"#;
        assert_eq!(ws_gap(&gap), [&[0x81, text.len() as u8][..], text].concat());
        let deleted = ws_deleted("room");
        let text = br#"{"deleted":true,"channel":"room"}"#;
        assert!(deleted.starts_with(&[&[0x81, text.len() as u8][..], text].concat()));
        assert_eq!(&deleted[2 + text.len()..][..4], [0x88, 17, 0x03, 0xE8]);
        let beat = WS_HEARTBEAT;
        assert_eq!(&beat[..2], WS_PING);
        assert_eq!(beat[3] as usize, beat.len() - 4);
        assert_eq!(&beat[4..], br#"{"heartbeat":true}"#);
    }

    #[test]
    fn static_frames_are_valid_chunks() {
        assert_eq!(payload(SSE_HEARTBEAT), ":\n\n");
        assert_eq!(payload(STREAM_HEARTBEAT), "\n");
        assert_eq!(
            payload(&sse_preamble(2000, None)),
            "retry: 2000\n: halley\n\n"
        );
        assert_eq!(
            payload(&sse_preamble(10, Some("e-4"))),
            "retry: 10\n: halley\n\nid: e-4\n\n"
        );
    }
}

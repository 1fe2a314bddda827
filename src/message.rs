//! A published message and its encodings. Each transport's bytes are built at
//! most once per message, on first use, and shared by every subscriber through
//! an `Rc`, so fan-out copies nothing.

use std::cell::OnceCell;
use std::rc::Rc;
use std::time::Instant;

use crate::encode;

#[derive(Debug)]
pub struct Message {
    /// The channel's epoch (the server run's in memory, the channel's in
    /// Redis) and the message's position in it; ids are
    /// `cursor::format(epoch, seq)`.
    pub epoch: u64,
    pub seq: u64,
    pub id: Box<str>,
    pub channel: Rc<str>,
    /// The SSE event type, if the publisher named one.
    pub event: Option<Box<str>>,
    pub data: Box<str>,
    /// `data` is JSON text (published as `application/json` and known to
    /// parse): Bayeux delivers it as that value rather than as a string. The
    /// HTTP transports send the text either way.
    pub data_is_json: bool,
    pub published: Instant,
    sse: OnceCell<Rc<[u8]>>,
    stream: OnceCell<Rc<[u8]>>,
    json: OnceCell<Rc<[u8]>>,
    ws: OnceCell<Rc<[u8]>>,
    poll_body: OnceCell<Rc<[u8]>>,
}

impl Message {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        epoch: u64,
        seq: u64,
        id: String,
        channel: Rc<str>,
        event: Option<Box<str>>,
        data: Box<str>,
        data_is_json: bool,
        published: Instant,
    ) -> Message {
        Message {
            epoch,
            seq,
            id: id.into_boxed_str(),
            channel,
            event,
            data,
            data_is_json,
            published,
            sse: OnceCell::new(),
            stream: OnceCell::new(),
            json: OnceCell::new(),
            ws: OnceCell::new(),
            poll_body: OnceCell::new(),
        }
    }

    /// The SSE event as one HTTP chunk.
    pub fn sse(&self) -> &Rc<[u8]> {
        self.sse.get_or_init(|| encode::sse_event(self).into())
    }

    /// The NDJSON line as one HTTP chunk.
    pub fn stream(&self) -> &Rc<[u8]> {
        self.stream.get_or_init(|| encode::stream_line(self).into())
    }

    /// The message as a JSON object.
    pub fn json(&self) -> &Rc<[u8]> {
        self.json.get_or_init(|| encode::json_object(self).into())
    }

    /// The JSON object as one WebSocket text frame: server frames are
    /// unmasked, so every WebSocket subscriber is sent these same bytes.
    pub fn ws(&self) -> &Rc<[u8]> {
        self.ws.get_or_init(|| encode::ws_message(self).into())
    }

    /// A long-poll body carrying just this message, which every poller parked
    /// at the head of the channel receives when it is published.
    pub fn poll_body(&self) -> &Rc<[u8]> {
        self.poll_body
            .get_or_init(|| encode::poll_body(&[self], None, &self.id).into())
    }
}

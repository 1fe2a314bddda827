//! RFC 6455 frames: a decoder for what clients send, one small step per
//! state like `http::chunked`, so frames may arrive split at any byte; and
//! the encoder for what the server sends. Client frames must be masked and
//! server frames never are, which is what lets one encoded message serve
//! every subscriber.
//!
//! The decoder enforces the protocol's rules as bytes arrive and says which
//! close code a violation earns: reserved bits, unknown opcodes, unmasked
//! frames, fragmented or oversized control frames and stray continuations
//! are 1002; a message over the cap is 1009, refused by its announced length
//! before any of it is buffered; text that is not UTF-8 is 1007 at the first
//! bad byte, even across fragments.

use super::close;
use super::utf8::Utf8;

/// A control frame's payload may not be longer (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Whether a message is text (UTF-8, checked) or binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Binary,
}

/// A control frame's payload, held inline: at most 125 bytes, so a ping
/// costs no allocation on its way to being answered.
#[derive(Clone, Copy)]
pub struct Control {
    len: u8,
    bytes: [u8; MAX_CONTROL_PAYLOAD],
}

impl Control {
    fn new(payload: &[u8]) -> Control {
        let mut bytes = [0; MAX_CONTROL_PAYLOAD];
        bytes[..payload.len()].copy_from_slice(payload);
        Control {
            len: payload.len() as u8,
            bytes,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Control({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl PartialEq for Control {
    fn eq(&self, other: &Control) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// What a client sent, once a whole unit of it has arrived.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// A whole message, its payload appended to the decoder's `out`.
    Message(MessageKind),
    Ping(Control),
    Pong,
    /// A close frame, with its code if it carried one (checked valid, and
    /// its reason checked UTF-8).
    Close(Option<u16>),
}

/// A protocol violation: the code and reason of the close frame it earns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fail {
    pub code: u16,
    pub reason: &'static str,
}

const fn fail(code: u16, reason: &'static str) -> Fail {
    Fail { code, reason }
}

/// Where the decoder stands inside the current frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// At a frame boundary, waiting for a whole header.
    Header,
    /// Inside a data frame's payload: `left` bytes to go, unmasked with
    /// `mask` starting at `mask[offset]`; `fin` if it ends its message.
    Payload {
        left: u64,
        mask: [u8; 4],
        offset: u8,
        fin: bool,
    },
}

/// A data message whose frames are still arriving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Partial {
    kind: MessageKind,
    utf8: Utf8,
    /// Payload bytes announced so far, against the cap.
    len: u64,
}

/// The incremental decoder of one connection's client frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoder {
    step: Step,
    message: Option<Partial>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            step: Step::Header,
            message: None,
        }
    }
}

impl Decoder {
    /// At a frame boundary with no message half-read: the decoder holds
    /// nothing worth keeping.
    pub fn is_idle(&self) -> bool {
        self.step == Step::Header && self.message.is_none()
    }

    /// Decodes from `input`, appending data payloads to `out`, and stops at
    /// the first complete event. Returns the bytes consumed and the event,
    /// or `None` when it needs more input (everything usable was consumed;
    /// a control frame or header is only consumed whole). `max_message` caps
    /// a data message's total payload.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_message: usize,
    ) -> Result<(usize, Option<Event>), Fail> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let (n, event) = match self.step {
                Step::Header => self.step_header(rest, out, max_message)?,
                Step::Payload { .. } => self.step_payload(rest, out)?,
            };
            used += n;
            if event.is_some() || n == 0 {
                return Ok((used, event));
            }
        }
    }

    /// A whole header (and, for a control frame, its whole payload), or
    /// nothing consumed.
    fn step_header(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_message: usize,
    ) -> Result<(usize, Option<Event>), Fail> {
        let [b0, b1, ..] = *input else {
            return Ok((0, None));
        };
        if b0 & 0x70 != 0 {
            return Err(fail(close::PROTOCOL_ERROR, "reserved bits set"));
        }
        let Some(opcode) = Opcode::from_bits(b0 & 0x0F) else {
            return Err(fail(close::PROTOCOL_ERROR, "unknown opcode"));
        };
        let fin = b0 & 0x80 != 0;
        if b1 & 0x80 == 0 {
            return Err(fail(close::PROTOCOL_ERROR, "client frames must be masked"));
        }
        let (len, len_bytes) = match b1 & 0x7F {
            126 => (0, 2),
            127 => (0, 8),
            n => (u64::from(n), 0),
        };
        let header_len = 2 + len_bytes + 4;
        if input.len() < header_len {
            return Ok((0, None));
        }
        let len = match len_bytes {
            0 => len,
            2 => u64::from(u16::from_be_bytes([input[2], input[3]])),
            _ => {
                let n = u64::from_be_bytes(input[2..10].try_into().expect("8 bytes"));
                if n >> 63 != 0 {
                    return Err(fail(close::PROTOCOL_ERROR, "frame length too large"));
                }
                n
            }
        };
        let mask: [u8; 4] = input[header_len - 4..header_len]
            .try_into()
            .expect("4 bytes");
        if opcode.is_control() {
            if !fin {
                return Err(fail(
                    close::PROTOCOL_ERROR,
                    "control frames must not be fragmented",
                ));
            }
            if len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(fail(
                    close::PROTOCOL_ERROR,
                    "control frame payload over 125 bytes",
                ));
            }
            let end = header_len + len as usize;
            if input.len() < end {
                return Ok((0, None));
            }
            let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
            let payload = &mut payload[..len as usize];
            payload.copy_from_slice(&input[header_len..end]);
            unmask(payload, mask, 0);
            let event = match opcode {
                Opcode::Ping => Event::Ping(Control::new(payload)),
                Opcode::Pong => Event::Pong,
                _ => Event::Close(close_code(payload)?),
            };
            return Ok((end, Some(event)));
        }
        let kind = match (opcode, self.message) {
            (Opcode::Continuation, None) => {
                return Err(fail(
                    close::PROTOCOL_ERROR,
                    "continuation frame without a message to continue",
                ))
            }
            (Opcode::Continuation, Some(partial)) => partial.kind,
            (_, Some(_)) => {
                return Err(fail(
                    close::PROTOCOL_ERROR,
                    "new message before the previous one ended",
                ))
            }
            (Opcode::Text, None) => MessageKind::Text,
            _ => MessageKind::Binary,
        };
        let partial = self.message.get_or_insert(Partial {
            kind,
            utf8: Utf8::default(),
            len: 0,
        });
        partial.len = partial.len.saturating_add(len);
        if partial.len > max_message as u64 {
            return Err(fail(close::TOO_BIG, "message too big"));
        }
        // The announced length is within the cap, so reserving it is bounded.
        out.reserve(len as usize);
        self.step = Step::Payload {
            left: len,
            mask,
            offset: 0,
            fin,
        };
        // A payload of zero bytes ends the frame now.
        if len == 0 {
            let (_, event) = self.step_payload(&[], out)?;
            return Ok((header_len, event));
        }
        Ok((header_len, None))
    }

    /// As much of a data frame's payload as has arrived.
    fn step_payload(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event>), Fail> {
        let Step::Payload {
            left,
            mask,
            offset,
            fin,
        } = self.step
        else {
            unreachable!("step_payload outside a payload");
        };
        let partial = self
            .message
            .as_mut()
            .expect("a payload belongs to a message");
        let take = left.min(input.len() as u64) as usize;
        let start = out.len();
        out.extend_from_slice(&input[..take]);
        unmask(&mut out[start..], mask, offset as usize);
        if partial.kind == MessageKind::Text && !partial.utf8.feed(&out[start..]) {
            return Err(fail(close::INVALID_DATA, "text is not valid UTF-8"));
        }
        let left = left - take as u64;
        if left > 0 {
            self.step = Step::Payload {
                left,
                mask,
                offset: ((offset as usize + take) % 4) as u8,
                fin,
            };
            return Ok((take, None));
        }
        self.step = Step::Header;
        if !fin {
            return Ok((take, None));
        }
        let kind = partial.kind;
        if kind == MessageKind::Text && !partial.utf8.is_complete() {
            return Err(fail(close::INVALID_DATA, "text ends inside a character"));
        }
        self.message = None;
        Ok((take, Some(Event::Message(kind))))
    }
}

/// A close frame's code: none, or one a peer may send, followed by a UTF-8
/// reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, Fail> {
    match payload {
        [] => Ok(None),
        [_] => Err(fail(close::PROTOCOL_ERROR, "close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close::is_valid(code) {
                return Err(fail(close::PROTOCOL_ERROR, "invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(fail(close::INVALID_DATA, "close reason is not valid UTF-8"));
            }
            Ok(Some(code))
        }
    }
}

fn unmask(bytes: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b ^= mask[(offset + i) & 3];
    }
}

/// Writes the header of an unmasked, final server frame of `len` bytes.
pub fn write_header(out: &mut Vec<u8>, opcode: Opcode, len: usize) {
    out.push(0x80 | opcode as u8);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// A whole unmasked server frame.
pub fn frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    write_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// A masked client frame, as a browser would send it: for tests here and
/// in `tests/websocket.rs`'s own copy.
#[cfg(test)]
pub fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        0..=125 => out.push(0x80 | payload.len() as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
    out
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;

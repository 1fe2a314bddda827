//! Reading deliveries out of an SSE stream. Each benchmark message's text is
//! `SEQ SENT_NS[ padding]`: a sequence number and the CLOCK_MONOTONIC time the publisher sent it,
//! so any process on this machine can time the delivery without asking the publisher.

/// One benchmark message as a subscriber received it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivery {
    pub seq: u64,
    pub sent_ns: u64,
}

/// Writes a message body in the format [`parse_payload`] reads, padded with `x` to `size` bytes.
pub fn write_payload(out: &mut Vec<u8>, seq: u64, sent_ns: u64, size: usize) {
    use std::io::Write;
    let start = out.len();
    write!(out, "{seq} {sent_ns}").unwrap();
    let len = out.len() - start;
    if size > len + 1 {
        out.push(b' ');
        out.resize(start + size, b'x');
    }
}

/// Reads `SEQ SENT_NS` from the start of a message; anything else is not ours.
pub fn parse_payload(data: &[u8]) -> Option<Delivery> {
    let mut fields = data.split(|&b| b == b' ');
    let seq = parse_u64(fields.next()?)?;
    let sent_ns = parse_u64(fields.next()?)?;
    Some(Delivery { seq, sent_ns })
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + (b - b'0') as u64)
    })
}

/// An incremental event-stream parser. It keeps only a partial line between reads (which is
/// rare, so the carry buffer is usually empty and never allocated), and dispatches an event at the
/// blank line that ends it, as EventSource does.
#[derive(Debug, Default)]
pub struct SseParser {
    carry: Vec<u8>,
    pending: Option<Delivery>,
    /// `data:` lines that were not benchmark messages.
    pub foreign: u64,
}

impl SseParser {
    pub fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(Delivery)) {
        while let Some(nl) = input.iter().position(|&b| b == b'\n') {
            if self.carry.is_empty() {
                self.line(&input[..nl], on_event);
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&input[..nl]);
                self.line(&line, on_event);
                line.clear();
                self.carry = line;
            }
            input = &input[nl + 1..];
        }
        self.carry.extend_from_slice(input);
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(Delivery)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if let Some(d) = self.pending.take() {
                on_event(d);
            }
        } else if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            match parse_payload(value) {
                Some(d) => self.pending = Some(d),
                None => self.foreign += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_padding() {
        let mut buf = Vec::new();
        write_payload(&mut buf, 42, 123456789, 0);
        assert_eq!(buf, b"42 123456789");
        assert_eq!(
            parse_payload(&buf),
            Some(Delivery {
                seq: 42,
                sent_ns: 123456789
            })
        );
        buf.clear();
        write_payload(&mut buf, 1, 2, 16);
        assert_eq!(buf, b"1 2 xxxxxxxxxxxx");
        assert_eq!(parse_payload(&buf), Some(Delivery { seq: 1, sent_ns: 2 }));
        for bad in [&b""[..], b"1", b"x 2", b"1 2x", b"99999999999999999999 1"] {
            assert_eq!(parse_payload(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn events_survive_every_split() {
        // What Nchan, Node and halley send: comments, ids, retry, CRLF or LF endings.
        let wire = b":ok\n\nretry: 2000\n: hi\r\n\r\nid: 1\ndata: 7 100\n\nevent: x\r\ndata: 8 200\r\n\r\ndata: hello\n\n";
        for at in 0..=wire.len() {
            let mut p = SseParser::default();
            let mut got = Vec::new();
            p.feed(&wire[..at], &mut |d| got.push(d));
            p.feed(&wire[at..], &mut |d| got.push(d));
            let seqs: Vec<u64> = got.iter().map(|d| d.seq).collect();
            assert_eq!(seqs, [7, 8], "split at {at}");
            assert_eq!(p.foreign, 1, "split at {at}");
        }
    }

    #[test]
    fn an_event_is_dispatched_only_at_its_blank_line() {
        let mut p = SseParser::default();
        let mut n = 0;
        p.feed(b"data: 1 1\n", &mut |_| n += 1);
        assert_eq!(n, 0);
        p.feed(b"\n", &mut |_| n += 1);
        assert_eq!(n, 1);
    }
}

//! The client side of HTTP/1.1 the generator needs: parsing a response head and finding where its
//! body ends (Content-Length, chunked, or close). Pure functions over byte slices, so every
//! truncation point is testable; the sockets live in the callers.

/// How a response body is delimited, taken from its head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// A complete response head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    pub status: u16,
    /// Bytes the head occupies; the body starts right after.
    pub len: usize,
    pub framing: Framing,
}

/// Parses a response head; `Ok(None)` means more bytes are needed, which is not an error.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let mut framing = Framing::UntilClose;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value.eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            framing = Framing::Length(v.ok_or("bad Content-Length")?);
        }
    }
    // These statuses never carry a body, whatever the headers say.
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Ok(Some(Head {
        status,
        len,
        framing,
    }))
}

/// Where a chunked decoder is; each state consumes bytes and names the next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    Size(u64),
    Extension(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer lines after the last chunk; `true` while at the start of a line.
    Trailer(bool),
    Done,
}

/// Reads one body, handing its payload bytes to a sink and saying when it is complete.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Body {
    framing: Framing,
    remaining: u64,
    chunk: Chunk,
}

impl Body {
    pub fn new(framing: Framing) -> Body {
        let remaining = if let Framing::Length(n) = framing {
            n
        } else {
            0
        };
        Body {
            framing,
            remaining,
            chunk: Chunk::Size(0),
        }
    }

    pub fn is_done(&self) -> bool {
        match self.framing {
            Framing::Length(_) => self.remaining == 0,
            Framing::Chunked => self.chunk == Chunk::Done,
            Framing::UntilClose => false,
        }
    }

    /// Consumes framing and payload from `input` and returns how many bytes belonged to this body;
    /// the rest, if any, starts the next response on a keep-alive connection.
    pub fn feed(&mut self, input: &[u8], sink: &mut impl FnMut(&[u8])) -> Result<usize, String> {
        match self.framing {
            Framing::UntilClose => {
                sink(input);
                Ok(input.len())
            }
            Framing::Length(_) => {
                let n = (self.remaining.min(input.len() as u64)) as usize;
                sink(&input[..n]);
                self.remaining -= n as u64;
                Ok(n)
            }
            Framing::Chunked => self.feed_chunked(input, sink),
        }
    }

    fn feed_chunked(
        &mut self,
        input: &[u8],
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<usize, String> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.chunk = match self.chunk {
                Chunk::Size(n) => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (b as char).to_digit(16).unwrap() as u64;
                        Chunk::Size(n.checked_mul(16).ok_or("chunk size overflow")? + digit)
                    }
                    b';' | b' ' | b'\t' | b'\r' => Chunk::Extension(n),
                    b'\n' => Self::after_size(n),
                    _ => return Err(format!("bad chunk size byte {b:#x}")),
                },
                Chunk::Extension(n) => {
                    if b == b'\n' {
                        Self::after_size(n)
                    } else {
                        Chunk::Extension(n)
                    }
                }
                Chunk::Data(n) => {
                    let take = (n.min((input.len() - i) as u64)) as usize;
                    sink(&input[i..i + take]);
                    i += take;
                    self.chunk = if n == take as u64 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(n - take as u64)
                    };
                    continue;
                }
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    b'\n' => Chunk::Size(0),
                    _ => return Err("chunk data longer than its size".into()),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size(0),
                    _ => return Err("chunk data longer than its size".into()),
                },
                Chunk::Trailer(at_start) => match b {
                    b'\n' if at_start => Chunk::Done,
                    b'\n' => Chunk::Trailer(true),
                    b'\r' => Chunk::Trailer(at_start),
                    _ => Chunk::Trailer(false),
                },
                Chunk::Done => return Ok(i),
            };
            i += 1;
            if self.chunk == Chunk::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }

    fn after_size(n: u64) -> Chunk {
        if n == 0 {
            Chunk::Trailer(true)
        } else {
            Chunk::Data(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` split at `at`, as two reads would deliver it.
    fn decode_split(framing: Framing, wire: &[u8], at: usize) -> (Vec<u8>, usize, bool) {
        let mut body = Body::new(framing);
        let mut out = Vec::new();
        let mut used = 0;
        for part in [&wire[..at], &wire[at..]] {
            if body.is_done() {
                break;
            }
            used += body
                .feed(part, &mut |b: &[u8]| out.extend_from_slice(b))
                .unwrap();
        }
        (out, used, body.is_done())
    }

    #[test]
    fn chunked_survives_every_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for at in 0..=wire.len() {
            let (out, used, done) = decode_split(Framing::Chunked, wire, at);
            assert_eq!(out, b"hello, world", "split at {at}");
            assert!(done, "split at {at}");
            assert_eq!(&wire[used..], b"NEXT", "split at {at}");
        }
    }

    #[test]
    fn content_length_stops_at_its_end() {
        let wire = b"abcdefNEXT";
        for at in 0..=wire.len() {
            let (out, used, done) = decode_split(Framing::Length(6), wire, at);
            assert_eq!((out.as_slice(), used, done), (&b"abcdef"[..], 6, true));
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut body = Body::new(Framing::Chunked);
        assert!(body.feed(b"zz\r\n", &mut |_: &[u8]| {}).is_err());
        let mut body = Body::new(Framing::Chunked);
        assert!(body.feed(b"1\r\nab\r\n", &mut |_: &[u8]| {}).is_err());
    }

    #[test]
    fn heads() {
        type Case<'a> = (&'a [u8], Option<(u16, Framing)>);
        let cases: [Case; 5] = [
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Some((200, Framing::Chunked)),
            ),
            (
                b"HTTP/1.1 201 Created\r\nContent-Length: 12\r\n\r\n",
                Some((201, Framing::Length(12))),
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", Some((200, Framing::UntilClose))),
            (
                b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
                Some((204, Framing::Length(0))),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Le", None),
        ];
        for (wire, want) in cases {
            let got = parse_head(wire).unwrap().map(|h| (h.status, h.framing));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(wire));
        }
        assert!(parse_head(b"SMTP ready\r\n\r\n").is_err());
    }
}

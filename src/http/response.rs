//! Writing response heads. Every response carries the CORS origin and says
//! whether the connection stays open; bodies are framed by length, by chunks,
//! or (for HTTP/1.0 streams) by closing the connection.

use std::io::Write;

/// How the body that follows a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 streams).
    UntilClose,
}

/// The parts of a response head that vary.
pub struct Head<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub cors_origin: &'a str,
    /// Further header lines, each without its CRLF.
    pub extra: &'a [&'a str],
}

impl Head<'_> {
    pub fn write(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        if let Some(ct) = self.content_type {
            let _ = write!(out, "Content-Type: {ct}\r\n");
        }
        match self.framing {
            // 204 and 304 responses carry no body and must not announce one.
            Framing::Length(_) if matches!(self.status, 204 | 304) => {}
            Framing::Length(n) => {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
            Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Framing::UntilClose => {}
        }
        let keep_alive = self.keep_alive && self.framing != Framing::UntilClose;
        out.extend_from_slice(match keep_alive {
            true => b"Connection: keep-alive\r\n",
            false => b"Connection: close\r\n",
        });
        let _ = write!(
            out,
            "Access-Control-Allow-Origin: {}\r\nAccess-Control-Expose-Headers: Halley-Cursor, Retry-After\r\n",
            self.cors_origin
        );
        for line in self.extra {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes a complete response with a body of known length. For `HEAD`,
/// `send_body` is false: the head still announces the length.
pub fn write_full(out: &mut Vec<u8>, head: Head, body: &[u8], send_body: bool) {
    Head {
        framing: Framing::Length(body.len()),
        ..head
    }
    .write(out);
    if send_body {
        out.extend_from_slice(body);
    }
}

/// Wraps `payload` as one chunk of a chunked body.
pub fn write_chunk(out: &mut Vec<u8>, payload: &[u8]) {
    let _ = write!(out, "{:x}\r\n", payload.len());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// The part of a chunk written by `write_chunk` that HTTP/1.0 clients get,
/// which is the payload without its size line and trailing CRLF.
pub fn chunk_payload(chunk: &[u8]) -> std::ops::Range<usize> {
    let start = chunk.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    start..chunk.len().saturating_sub(2).max(start)
}

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_heads() {
        let mut out = Vec::new();
        let head = Head {
            status: 404,
            content_type: Some("application/json"),
            framing: Framing::Length(0),
            keep_alive: true,
            cors_origin: "*",
            extra: &["Allow: GET"],
        };
        write_full(&mut out, head, b"{}", true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
             Connection: keep-alive\r\nAccess-Control-Allow-Origin: *\r\n\
             Access-Control-Expose-Headers: Halley-Cursor, Retry-After\r\nAllow: GET\r\n\r\n{}"
        );
    }

    #[test]
    fn frames_chunks() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"0123456789abcdefX");
        assert_eq!(out, b"11\r\n0123456789abcdefX\r\n");
        assert_eq!(&out[chunk_payload(&out)], b"0123456789abcdefX");
    }
}

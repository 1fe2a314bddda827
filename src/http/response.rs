//! Writing response heads. Every response carries the CORS origin and says
//! whether the connection stays open; bodies are framed by length, by chunks,
//! or (for HTTP/1.0 streams) by closing the connection. `HttpDate` is the
//! `Date` header's value, formatted once a second, not once a response.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// How the body that follows a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 streams).
    UntilClose,
    /// `101 Switching Protocols` to a WebSocket: no body, and the
    /// connection carries frames from here on.
    Upgrade,
}

/// The parts of a response head that vary.
pub struct ResponseHead<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub cors_origin: &'a str,
    /// The `Date` header's value (`HttpDate::as_str`); an origin server
    /// with a clock sends one on every response (RFC 9110 6.6.1).
    pub date: Option<&'a str>,
    /// Further header lines, each without its CRLF.
    pub extra: &'a [&'a str],
}

impl ResponseHead<'_> {
    pub fn write(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        if let Some(date) = self.date {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(date.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
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
            Framing::UntilClose | Framing::Upgrade => {}
        }
        let keep_alive = self.keep_alive && self.framing != Framing::UntilClose;
        out.extend_from_slice(match (self.framing, keep_alive) {
            (Framing::Upgrade, _) => b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
            (_, true) => b"Connection: keep-alive\r\n",
            (_, false) => b"Connection: close\r\n",
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
pub fn write_full(out: &mut Vec<u8>, head: ResponseHead, body: &[u8], send_body: bool) {
    ResponseHead {
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

/// The current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`,
/// RFC 9110 5.6.7), reformatted only when the second changes: the server
/// updates it once per loop iteration and every response copies the bytes.
pub struct HttpDate {
    secs: u64,
    text: [u8; IMF_FIXDATE_LEN],
}

/// The length of every IMF-fixdate.
const IMF_FIXDATE_LEN: usize = 29;

impl HttpDate {
    pub fn new(now: SystemTime) -> HttpDate {
        let secs = unix_secs(now);
        HttpDate {
            secs,
            text: imf_fixdate(secs),
        }
    }

    /// Moves to `now`; formats only if a new second has begun.
    pub fn update(&mut self, now: SystemTime) {
        let secs = unix_secs(now);
        if secs != self.secs {
            self.secs = secs;
            self.text = imf_fixdate(secs);
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).expect("an IMF-fixdate is ASCII")
    }
}

fn unix_secs(now: SystemTime) -> u64 {
    // A clock before 1970 is wrong; 1970 is as good an answer as any.
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Formats seconds since 1970 as an IMF-fixdate.
fn imf_fixdate(secs: u64) -> [u8; IMF_FIXDATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let in_day = secs % 86_400;
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let mut two = |at: usize, n: u64| {
        out[at] = b'0' + (n / 10) as u8;
        out[at + 1] = b'0' + (n % 10) as u8;
    };
    two(5, day);
    two(17, in_day / 3600);
    two(20, in_day / 60 % 60);
    two(23, in_day % 60);
    two(12, year / 100 % 100);
    two(14, year % 100);
    out[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    out
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01, by
/// Howard Hinnant's `civil_from_days`: the year is shifted to start in
/// March, so the leap day falls at its end, in 400-year eras.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
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
        426 => "Upgrade Required",
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
        let head = ResponseHead {
            status: 404,
            content_type: Some("application/json"),
            framing: Framing::Length(0),
            keep_alive: true,
            cors_origin: "*",
            date: None,
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
    fn writes_a_switch_to_websocket() {
        let mut out = Vec::new();
        ResponseHead {
            status: 101,
            content_type: None,
            framing: Framing::Upgrade,
            keep_alive: false,
            cors_origin: "*",
            date: None,
            extra: &["Sec-WebSocket-Accept: abc="],
        }
        .write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Access-Control-Allow-Origin: *\r\n\
             Access-Control-Expose-Headers: Halley-Cursor, Retry-After\r\nSec-WebSocket-Accept: abc=\r\n\r\n"
        );
    }

    #[test]
    fn formats_imf_fixdates() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (951_868_799, "Tue, 29 Feb 2000 23:59:59 GMT"),
            (978_307_199, "Sun, 31 Dec 2000 23:59:59 GMT"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for (secs, want) in cases {
            let got = imf_fixdate(secs);
            assert_eq!(std::str::from_utf8(&got).unwrap(), want, "{secs}");
        }
    }

    #[test]
    fn the_date_changes_only_with_the_second() {
        use std::time::Duration;
        let t = UNIX_EPOCH + Duration::from_millis(784_111_777_250);
        let mut date = HttpDate::new(t);
        assert_eq!(date.as_str(), "Sun, 06 Nov 1994 08:49:37 GMT");
        date.update(t + Duration::from_millis(700));
        assert_eq!(date.as_str(), "Sun, 06 Nov 1994 08:49:37 GMT");
        date.update(t + Duration::from_millis(750));
        assert_eq!(date.as_str(), "Sun, 06 Nov 1994 08:49:38 GMT");

        let mut out = Vec::new();
        let head = ResponseHead {
            status: 200,
            content_type: None,
            framing: Framing::Length(0),
            keep_alive: false,
            cors_origin: "*",
            date: Some(date.as_str()),
            extra: &[],
        };
        head.write(&mut out);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:38 GMT\r\n"));
    }

    #[test]
    fn frames_chunks() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"0123456789abcdefX");
        assert_eq!(out, b"11\r\n0123456789abcdefX\r\n");
        assert_eq!(&out[chunk_payload(&out)], b"0123456789abcdefX");
    }
}

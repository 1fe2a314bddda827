//! RESP2, the Redis wire protocol, as pure functions: `parse` takes one reply
//! from the front of a buffer of received bytes, `write_command` appends one
//! command. halley never sends `HELLO`, so Redis always answers in RESP2.
//!
//! A link's replies buffer is parsed again each time bytes arrive, so `parse`
//! first walks the value without allocating to see whether it is whole
//! (`scan`), and builds it only then (`build`). A prefix of a value is
//! `Ok(None)`, "need more bytes", as in httparse; only bytes that no prefix of
//! a valid reply could hold are an error. Every length Redis sends is checked
//! against a limit before it is believed, so garbage can neither panic nor
//! make the parser allocate more than the bytes it was given.

use std::fmt;

use crate::json::push_u64;

/// The longest bulk string accepted: Redis's own `proto-max-bulk-len` default.
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// The most elements one array may announce.
pub const MAX_ARRAY: usize = 1 << 24;
/// How deeply arrays may nest. The deepest reply halley asks for is a
/// pub/sub push or an `XRANGE` reply (array of entries, each an array holding
/// an array of fields): three levels.
pub const MAX_DEPTH: usize = 8;
/// The longest status or error line, without its CRLF.
pub const MAX_LINE: usize = 64 * 1024;
/// The longest integer or length line, without its CRLF:
/// `-9223372036854775808` is 20 bytes.
const MAX_NUMBER_LINE: usize = 20;

/// One RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`: a simple string.
    Status(Box<str>),
    /// `-ERR ...`: an error reply, the whole line after the `-`.
    Error(Box<str>),
    /// `:42`.
    Int(i64),
    /// `$3\r\nabc`: a binary-safe string.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`: no value (a missing key, a timed-out wait).
    Nil,
    /// `*2\r\n...`: a sequence of values, possibly nested.
    Array(Vec<Value>),
}

/// What made a buffer unreadable as RESP2. The link that gets one closes its
/// connection: after garbage, no later reply can be matched to its command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The byte that opens a value is none of `+ - : $ *`.
    BadType(u8),
    /// An integer or length line is not a decimal `i64`.
    NotANumber,
    /// A bulk or array length is negative but not `-1`.
    NegativeLength(i64),
    /// A bulk string longer than `MAX_BULK`.
    BulkTooLong(i64),
    /// An array longer than `MAX_ARRAY`.
    ArrayTooLong(i64),
    /// Arrays nested more than `MAX_DEPTH` deep.
    TooDeep,
    /// A status or error line longer than `MAX_LINE`.
    LineTooLong,
    /// A bulk string's payload is not followed by CRLF.
    MissingCrlf,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::BadType(byte) => {
                write!(f, "RESP: a value cannot start with byte 0x{byte:02x}")
            }
            ProtocolError::NotANumber => {
                write!(f, "RESP: an integer or length line is not a decimal number")
            }
            ProtocolError::NegativeLength(n) => write!(f, "RESP: length {n} is negative"),
            ProtocolError::BulkTooLong(n) => {
                write!(
                    f,
                    "RESP: a bulk string of {n} bytes exceeds the limit of {MAX_BULK}"
                )
            }
            ProtocolError::ArrayTooLong(n) => {
                write!(
                    f,
                    "RESP: an array of {n} elements exceeds the limit of {MAX_ARRAY}"
                )
            }
            ProtocolError::TooDeep => write!(f, "RESP: arrays nested more than {MAX_DEPTH} deep"),
            ProtocolError::LineTooLong => {
                write!(f, "RESP: a status or error line runs past {MAX_LINE} bytes")
            }
            ProtocolError::MissingCrlf => {
                write!(f, "RESP: a bulk string's payload is not followed by CRLF")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// One value from the start of `buf`: `Ok(Some((value, bytes consumed)))`, or
/// `Ok(None)` when `buf` holds only a prefix of a value ("need more bytes" is
/// not an error).
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let Some(end) = scan(buf, 0, 0)? else {
        return Ok(None);
    };
    let (value, built_to) = build(buf, 0);
    debug_assert_eq!(built_to, end);
    Ok(Some((value, end)))
}

/// Appends one command as a RESP array of bulk strings, the only form of
/// request Redis needs (and the only binary-safe one).
pub fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_u64(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_u64(out, arg.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Where the value starting at `at` ends, if `buf` holds all of it; `depth`
/// is how many arrays enclose it. Allocates nothing.
fn scan(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let body = at + 1;
    match kind {
        b'+' | b'-' => Ok(line(buf, body)?.map(|(_, next)| next)),
        b':' => Ok(number(buf, body)?.map(|(_, next)| next)),
        b'$' => match bulk_length(buf, body)? {
            None => Ok(None),
            Some((None, next)) => Ok(Some(next)),
            Some((Some(len), start)) => payload_end(buf, start, len),
        },
        b'*' => {
            let Some((len, mut next)) = array_length(buf, body)? else {
                return Ok(None);
            };
            let Some(len) = len else {
                return Ok(Some(next));
            };
            if depth == MAX_DEPTH {
                return Err(ProtocolError::TooDeep);
            }
            for _ in 0..len {
                match scan(buf, next, depth + 1)? {
                    Some(end) => next = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(next))
        }
        other => Err(ProtocolError::BadType(other)),
    }
}

/// Builds the value starting at `at`, which `scan` found whole and valid, and
/// returns it with where it ends.
fn build(buf: &[u8], at: usize) -> (Value, usize) {
    let body = at + 1;
    match buf[at] {
        b'+' => {
            let (text, next) = scanned(line(buf, body));
            (Value::Status(String::from_utf8_lossy(text).into()), next)
        }
        b'-' => {
            let (text, next) = scanned(line(buf, body));
            (Value::Error(String::from_utf8_lossy(text).into()), next)
        }
        b':' => {
            let (n, next) = scanned(number(buf, body));
            (Value::Int(n), next)
        }
        b'$' => match scanned(bulk_length(buf, body)) {
            (None, next) => (Value::Nil, next),
            (Some(len), start) => (
                Value::Bulk(buf[start..start + len].to_vec()),
                start + len + 2,
            ),
        },
        _ => match scanned(array_length(buf, body)) {
            (None, next) => (Value::Nil, next),
            (Some(len), mut next) => {
                // `scan` has seen all `len` elements in `buf`, each at least
                // three bytes, so this capacity is bounded by the bytes received.
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    let (item, end) = build(buf, next);
                    items.push(item);
                    next = end;
                }
                (Value::Array(items), next)
            }
        },
    }
}

/// Unwraps what a helper returns for bytes that `scan` has already accepted.
fn scanned<T>(result: Result<Option<T>, ProtocolError>) -> T {
    match result {
        Ok(Some(t)) => t,
        _ => unreachable!("parse builds only what scan found whole and valid"),
    }
}

/// The status or error line from `from` to its CRLF, and where the next value
/// starts.
fn line(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    match crlf_within(buf, from, MAX_LINE) {
        Some(Some(end)) => Ok(Some((&buf[from..end], end + 2))),
        Some(None) => Ok(None),
        None => Err(ProtocolError::LineTooLong),
    }
}

/// The integer on the line from `from`, and where the next value starts.
fn number(buf: &[u8], from: usize) -> Result<Option<(i64, usize)>, ProtocolError> {
    match crlf_within(buf, from, MAX_NUMBER_LINE) {
        Some(Some(end)) => match decimal(&buf[from..end]) {
            Some(n) => Ok(Some((n, end + 2))),
            None => Err(ProtocolError::NotANumber),
        },
        Some(None) => Ok(None),
        None => Err(ProtocolError::NotANumber),
    }
}

/// Where the CRLF that ends the line starting at `from` begins:
/// `Some(Some(index))`; `Some(None)` while the line may still end within
/// `max` bytes; `None` as soon as it cannot, so that garbage without line
/// ends is refused after `max + 2` bytes at most.
fn crlf_within(buf: &[u8], from: usize, max: usize) -> Option<Option<usize>> {
    let window = &buf[from..buf.len().min(from + max + 2)];
    if let Some(offset) = window.windows(2).position(|pair| pair == b"\r\n") {
        return Some(Some(from + offset));
    }
    // With no CRLF among them, the bytes are all content unless the last
    // one is the CR of a CRLF still on its way.
    let content = match window.last() {
        Some(b'\r') => window.len() - 1,
        _ => window.len(),
    };
    if content > max {
        None
    } else {
        Some(None)
    }
}

/// A bulk string's length (`None` for `$-1`) and where its payload starts.
fn bulk_length(buf: &[u8], from: usize) -> Result<Option<(Option<usize>, usize)>, ProtocolError> {
    length(buf, from, MAX_BULK, ProtocolError::BulkTooLong)
}

/// An array's length (`None` for `*-1`) and where its first element starts.
fn array_length(buf: &[u8], from: usize) -> Result<Option<(Option<usize>, usize)>, ProtocolError> {
    length(buf, from, MAX_ARRAY, ProtocolError::ArrayTooLong)
}

fn length(
    buf: &[u8],
    from: usize,
    max: usize,
    too_long: fn(i64) -> ProtocolError,
) -> Result<Option<(Option<usize>, usize)>, ProtocolError> {
    let Some((n, next)) = number(buf, from)? else {
        return Ok(None);
    };
    match n {
        -1 => Ok(Some((None, next))),
        n if n < 0 => Err(ProtocolError::NegativeLength(n)),
        n if n as u64 > max as u64 => Err(too_long(n)),
        n => Ok(Some((Some(n as usize), next))),
    }
}

/// Where the value after a bulk payload of `len` bytes at `start` begins,
/// once the payload and its CRLF are all in `buf`. A wrong byte where the CRLF
/// belongs is an error as soon as it arrives.
fn payload_end(buf: &[u8], start: usize, len: usize) -> Result<Option<usize>, ProtocolError> {
    let end = start + len;
    match buf.get(end..) {
        Some([b'\r', b'\n', ..]) => Ok(Some(end + 2)),
        None | Some([]) | Some([b'\r']) => Ok(None),
        Some(_) => Err(ProtocolError::MissingCrlf),
    }
}

/// A strict decimal `i64`: an optional `-`, then one or more digits.
/// (`str::parse` would also take a leading `+`.)
fn decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated as a negative number, so that i64::MIN fits.
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

#[cfg(test)]
#[path = "resp_tests.rs"]
mod tests;

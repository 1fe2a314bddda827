//! Decoding a chunked request body, one small step per state, so a body may
//! arrive split at any byte. Chunk extensions and trailers are read and dropped.

/// Where the decoder stands between two calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` counts them.
    Size {
        size: u64,
        digits: u8,
    },
    /// Skipping a chunk extension up to the CR.
    Extension {
        size: u64,
    },
    /// After the CR that ends a size line.
    SizeLf {
        size: u64,
    },
    /// Inside chunk data, `left` bytes to go.
    Data {
        left: u64,
    },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// After a CR in the trailer section; `empty` when the line was empty.
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Incremental chunked decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoder {
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The framing is broken; the connection cannot be trusted any more.
    Malformed(&'static str),
    /// The decoded body would exceed the limit it was given.
    TooLarge,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            state: State::Size { size: 0, digits: 0 },
        }
    }
}

impl Decoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending body bytes to `out` (never past `max`
    /// bytes in all). Returns how many input bytes were consumed; input after
    /// the end of the body is left alone, as it belongs to the next request.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<usize, Error> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if let State::Data { left } = self.state {
                let take = (left as usize).min(input.len() - i);
                if out.len() + take > max {
                    return Err(Error::TooLarge);
                }
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                continue;
            }
            self.state = self.step(input[i], out.len(), max)?;
            i += 1;
        }
        Ok(i)
    }

    /// Advances over one framing byte.
    fn step(&self, b: u8, decoded: usize, max: usize) -> Result<State, Error> {
        use State::*;
        let next = match (self.state, b) {
            (Size { size, digits }, b) if b.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return Err(Error::Malformed("chunk size too long"));
                }
                let digit = (b as char).to_digit(16).expect("checked hex digit") as u64;
                Size {
                    size: size * 16 + digit,
                    digits: digits + 1,
                }
            }
            (Size { digits: 0, .. }, _) => return Err(Error::Malformed("missing chunk size")),
            (Size { size, .. }, b'\r') => SizeLf { size },
            (Size { size, .. }, b';' | b' ' | b'\t') => Extension { size },
            (Extension { size }, b'\r') => SizeLf { size },
            (Extension { size }, b) if b != b'\n' => Extension { size },
            (SizeLf { size: 0 }, b'\n') => TrailerStart,
            (SizeLf { size }, b'\n') if decoded as u64 + size > max as u64 => {
                return Err(Error::TooLarge)
            }
            (SizeLf { size }, b'\n') => Data { left: size },
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size { size: 0, digits: 0 },
            (TrailerStart, b'\r') => TrailerLf { empty: true },
            (Trailer, b'\r') => TrailerLf { empty: false },
            (TrailerStart | Trailer, b) if b != b'\n' => Trailer,
            (TrailerLf { empty: true }, b'\n') => Done,
            (TrailerLf { empty: false }, b'\n') => TrailerStart,
            _ => return Err(Error::Malformed("invalid chunked framing")),
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], max: usize) -> Result<(Vec<u8>, usize), Error> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let used = d.decode(input, &mut out, max)?;
        assert!(d.is_done(), "not done after {input:?}");
        Ok((out, used))
    }

    #[test]
    fn decodes_valid_bodies() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"0\r\n\r\n", b""),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"3;name=value\r\nabc\r\n0\r\n\r\n", b"abc"),
            (b"3\r\nabc\r\n0\r\nX-Trailer: yes\r\n\r\n", b"abc"),
        ];
        for (input, want) in cases {
            let (out, used) = decode_all(input, 1024).unwrap();
            assert_eq!(out, *want);
            assert_eq!(used, input.len());
        }
    }

    #[test]
    fn accepts_any_split() {
        let input = b"5\r\nhello\r\n6;x\r\n world\r\n0\r\nT: 1\r\n\r\n";
        for split in 0..input.len() {
            let mut d = Decoder::default();
            let mut out = Vec::new();
            let a = d.decode(&input[..split], &mut out, 1024).unwrap();
            assert_eq!(a, split);
            let b = d.decode(&input[split..], &mut out, 1024).unwrap();
            assert_eq!(a + b, input.len());
            assert!(d.is_done());
            assert_eq!(out, b"hello world");
        }
    }

    #[test]
    fn leaves_the_next_request_alone() {
        let input = b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let (out, used) = decode_all(input, 10).unwrap();
        assert_eq!(out, b"a");
        assert_eq!(used, 11);
    }

    #[test]
    fn rejects_broken_framing() {
        let cases: &[&[u8]] = &[
            b"\r\n",
            b"g\r\n",
            b"5\r\nhelloX",
            b"5\nhello\r\n",
            b"1\r\na\r\r",
            b"ffffffffffffffff\r\n",
            b"0\r\n\n",
        ];
        for input in cases {
            let mut d = Decoder::default();
            let err = d.decode(input, &mut Vec::new(), usize::MAX);
            assert!(
                matches!(err, Err(Error::Malformed(_))),
                "{input:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn enforces_the_size_limit() {
        assert_eq!(
            decode_all(b"4\r\nabcd\r\n0\r\n\r\n", 3),
            Err(Error::TooLarge)
        );
        assert_eq!(
            decode_all(b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n", 3),
            Err(Error::TooLarge)
        );
        assert!(decode_all(b"3\r\nabc\r\n0\r\n\r\n", 3).is_ok());
    }
}

//! Bayeux clientIds: 128 random bits from `/dev/urandom`, written as 32 hex
//! digits. A clientId is the only credential a Bayeux session has, so it must
//! not be guessable; reading the kernel's generator needs no extra crate.
//!
//! The engine takes its id source as a closure so that tests can use a
//! counter; `Urandom` is the real one and the only IO in the Bayeux module.

use std::fs::File;
use std::io::{self, Read};

/// Reads `/dev/urandom` a block at a time: one `read` serves 32 handshakes.
pub struct Urandom {
    file: File,
    buf: [u8; 512],
    pos: usize,
}

impl Urandom {
    pub fn open() -> io::Result<Urandom> {
        Ok(Urandom {
            file: File::open("/dev/urandom")?,
            buf: [0; 512],
            pos: 512,
        })
    }

    /// The next 128 random bits.
    pub fn next_u128(&mut self) -> io::Result<u128> {
        if self.pos + 16 > self.buf.len() {
            self.file.read_exact(&mut self.buf)?;
            self.pos = 0;
        }
        let bytes: [u8; 16] = self.buf[self.pos..self.pos + 16]
            .try_into()
            .expect("16 bytes");
        self.pos += 16;
        Ok(u128::from_le_bytes(bytes))
    }

    /// An id source for `Engine::new`. A failing read of `/dev/urandom` means
    /// the machine is broken beyond what a server can work around; ids must
    /// never fall back to something guessable, so it panics.
    pub fn into_source(mut self) -> Box<dyn FnMut() -> u128> {
        Box::new(move || self.next_u128().expect("reading /dev/urandom"))
    }
}

/// The wire form of a clientId.
pub fn format_id(bits: u128) -> String {
    format!("{bits:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_bits_of_hex() {
        assert_eq!(format_id(0), "0".repeat(32));
        assert_eq!(format_id(u128::MAX), "f".repeat(32));
        let mut u = Urandom::open().unwrap();
        // More ids than one block holds, so the refill path runs too.
        let ids: std::collections::HashSet<u128> =
            (0..100).map(|_| u.next_u128().unwrap()).collect();
        assert_eq!(ids.len(), 100);
    }
}

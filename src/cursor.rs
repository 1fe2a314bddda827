//! Message ids and cursors. An id is `EPOCH-SEQ`: the server's epoch (random at
//! every start) in hex and the message's per-channel sequence number. Clients
//! treat ids as opaque; the server reads them back as cursors meaning "I have
//! everything up to and including this message".

use std::fmt::Write;

/// Where a subscriber wants delivery to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// Only messages published from now on.
    Now,
    /// Everything the channel buffer still holds.
    Earliest,
    /// Everything after the message `seq` of the server run `epoch`.
    After { epoch: u64, seq: u64 },
}

/// Formats the id of message `seq` in server run `epoch`.
pub fn format(epoch: u64, seq: u64) -> String {
    let mut id = String::with_capacity(32);
    write!(id, "{epoch:012x}-{seq}").expect("writing to a String cannot fail");
    id
}

/// Reads a cursor given by a client: an id, or `earliest`.
pub fn parse(text: &str) -> Result<Cursor, &'static str> {
    if text == "earliest" {
        return Ok(Cursor::Earliest);
    }
    let (epoch, seq) = text.split_once('-').ok_or("cursor is not a message id")?;
    // Hex digits only: `u64::from_str_radix` would also take a leading `+`.
    let valid_epoch =
        !epoch.is_empty() && epoch.len() <= 16 && epoch.bytes().all(|b| b.is_ascii_hexdigit());
    let valid_seq = !seq.is_empty() && seq.len() <= 20 && seq.bytes().all(|b| b.is_ascii_digit());
    match (valid_epoch, valid_seq) {
        (true, true) => Ok(Cursor::After {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| "cursor is not a message id")?,
            seq: seq.parse().map_err(|_| "cursor is not a message id")?,
        }),
        _ => Err("cursor is not a message id"),
    }
}

/// A fresh epoch for this server run. It comes from the kernel's random pool,
/// so two runs never share one in practice and no clock is trusted.
pub fn new_epoch() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // Without /dev/urandom, mix the time and pid; still distinct per start.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ ((std::process::id() as u64) << 40)).to_le_bytes();
    }
    // 48 bits keep ids short while making a collision between runs negligible.
    u64::from_le_bytes(bytes) & 0xffff_ffff_ffff
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (epoch, seq) in [(0, 1), (0xabc, 42), (0xffff_ffff_ffff, u64::MAX)] {
            assert_eq!(parse(&format(epoch, seq)), Ok(Cursor::After { epoch, seq }));
        }
    }

    #[test]
    fn parses_client_cursors() {
        let cases: &[(&str, Result<Cursor, ()>)] = &[
            ("earliest", Ok(Cursor::Earliest)),
            (
                "00000000abcd-7",
                Ok(Cursor::After {
                    epoch: 0xabcd,
                    seq: 7,
                }),
            ),
            ("", Err(())),
            ("-", Err(())),
            ("abc", Err(())),
            ("abc-", Err(())),
            ("-5", Err(())),
            ("xyz-5", Err(())),
            ("abc-5x", Err(())),
            ("abc-+5", Err(())),
            ("+abc-5", Err(())),
            ("abc-99999999999999999999999", Err(())),
            ("11112222333344445-1", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).map_err(|_| ()), *want, "cursor {text:?}");
        }
    }

    #[test]
    fn epochs_differ_between_calls() {
        assert_ne!(new_epoch(), new_epoch());
    }
}

//! Property tests of cursors, which clients send back in `?since=`,
//! `Last-Event-ID` and Bayeux `ext`: every id the server formats parses back
//! to itself, and any text either parses to a cursor whose id is the same
//! message or is refused, without a panic.
//!
//! Run long with `PROPTEST_CASES=100000 cargo test --release --lib prop`.

use proptest::prelude::*;

use super::*;

proptest! {
    #[test]
    fn formatted_ids_parse_back(epoch in any::<u64>(), seq in any::<u64>()) {
        prop_assert_eq!(parse(&format(epoch, seq)), Ok(Cursor::After { epoch, seq }));
    }

    #[test]
    fn ids_of_this_servers_epochs_keep_their_width(epoch in 0u64..=0xffff_ffff_ffff, seq in any::<u64>()) {
        let id = format(epoch, seq);
        let (hex, digits) = id.split_once('-').unwrap();
        prop_assert_eq!(hex.len(), 12);
        prop_assert_eq!(digits, seq.to_string());
    }

    #[test]
    fn any_text_is_a_cursor_or_refused(
        text in prop_oneof![
            "[0-9a-fA-F+-]{0,24}",
            "[+ -]?[0-9a-f]{1,17}-[+ ]?[0-9]{1,21}",
            ".{0,24}",
        ],
    ) {
        match parse(&text) {
            Ok(Cursor::Earliest) => prop_assert_eq!(text.as_str(), "earliest"),
            Ok(Cursor::After { epoch, seq }) => {
                // Only an id is read as one: hex, a dash, decimal. Case and
                // leading zeros may differ from the server's own form, the
                // message may not.
                let (hex, digits) = text.split_once('-').unwrap();
                prop_assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "epoch of {:?}", text);
                prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()), "seq of {:?}", text);
                prop_assert_eq!(parse(&format(epoch, seq)), Ok(Cursor::After { epoch, seq }));
            }
            Ok(Cursor::Now) => prop_assert!(false, "no text means now: {:?}", text),
            Err(why) => prop_assert_eq!(why, "cursor is not a message id"),
        }
    }
}

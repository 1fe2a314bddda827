//! Response heads say what is true of the response: `HEAD` on a
//! subscription announces the framing `GET` would use (chunked, or nothing
//! for HTTP/1.0 streams; the real length of a long-poll answer), never a
//! `Content-Length: 0` that `GET` does not keep; and every response carries
//! a `Date` (RFC 9110 6.6.1) in IMF-fixdate form.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

#[test]
fn head_on_a_stream_announces_the_framing_get_uses() {
    let addr = start_default();
    let ch = channel("head-stream");
    for transport in ["sse", "stream"] {
        let path = format!("/sub/{ch}?transport={transport}");
        let mut get = Client::connect(addr);
        get.request("GET", &path, &[], b"");
        let get_head = get.read_head();
        assert_eq!(get_head.header("transfer-encoding"), Some("chunked"));

        let mut c = Client::connect(addr);
        c.request("HEAD", &path, &[], b"");
        let head = c.read_head_response();
        assert_eq!(head.status, 200, "{transport}");
        assert_eq!(
            head.header("content-length"),
            None,
            "HEAD {transport} promises a length GET does not keep: {head:?}"
        );
        assert_eq!(
            head.header("transfer-encoding"),
            Some("chunked"),
            "{transport}"
        );
        assert_eq!(
            head.header("content-type"),
            get_head.header("content-type"),
            "{transport}"
        );
        // Nothing follows the head: the connection answers the next request.
        c.request("GET", "/healthz", &[], b"");
        assert_eq!(c.read_response().body, b"ok", "{transport}");
    }
}

#[test]
fn head_on_a_stream_over_http10_announces_no_length_and_closes() {
    let addr = start_default();
    let ch = channel("head-10");
    let mut c = Client::connect(addr);
    c.send(format!(
        "HEAD /sub/{ch}?transport=sse HTTP/1.0\r\nHost: t\r\n\r\n"
    ));
    let head = c.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), None, "{head:?}");
    assert_eq!(head.header("transfer-encoding"), None, "{head:?}");
    assert_eq!(head.header("connection"), Some("close"));
    c.expect_closed();
}

#[test]
fn head_on_a_long_poll_with_messages_announces_the_get_length() {
    let addr = start_default();
    let ch = channel("head-poll");
    for i in 0..3 {
        let resp = call(
            addr,
            "POST",
            &format!("/pub/{ch}"),
            &[],
            format!("m{i}").as_bytes(),
        );
        assert_eq!(resp.status, 201);
    }
    let path = format!("/sub/{ch}?transport=longpoll&since=earliest");
    let body = get(addr, &path).body;
    let head = call(addr, "HEAD", &path, &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(&*body.len().to_string())
    );
}

/// Seconds since 1970 of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// or `None` if `text` is not one.
fn parse_imf_fixdate(text: &str) -> Option<u64> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = text.as_bytes();
    if b.len() != 29 || &text[3..5] != ", " || &text[25..] != " GMT" {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = &text[range];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let day = num(5..7)?;
    let month = MONTHS.iter().position(|m| *m == &text[8..11])? as u64 + 1;
    let year = num(12..16)?;
    let (hour, min, sec) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if [b[7], b[11], b[16], b[19], b[22]] != [b' ', b' ', b' ', b':', b':'] {
        return None;
    }
    // Days from civil (Howard Hinnant), with the year starting in March.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    if DAYS[(days % 7) as usize] != &text[..3] {
        return None;
    }
    Some(days * 86_400 + hour * 3600 + min * 60 + sec)
}

#[track_caller]
fn assert_recent_date(what: &str, response: &Response) {
    let date = response
        .header("date")
        .unwrap_or_else(|| panic!("{what}: no Date header: {response:?}"));
    let secs = parse_imf_fixdate(date)
        .unwrap_or_else(|| panic!("{what}: Date {date:?} is not an IMF-fixdate"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let off = Duration::from_secs(now.abs_diff(secs));
    assert!(
        off <= Duration::from_secs(5),
        "{what}: Date {date:?} is {off:?} from now"
    );
}

#[test]
fn the_date_parser_here_reads_the_rfc_example() {
    assert_eq!(
        parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(parse_imf_fixdate("Mon, 06 Nov 1994 08:49:37 GMT"), None);
    assert_eq!(parse_imf_fixdate("Sunday, 06-Nov-94 08:49:37 GMT"), None);
}

#[test]
fn every_kind_of_response_carries_a_date() {
    let addr = start_default();
    let ch = channel("dated");
    assert_recent_date("200", &get(addr, "/healthz"));
    assert_recent_date("404", &get(addr, "/no/such/route"));
    assert_recent_date("HEAD", &call(addr, "HEAD", "/healthz", &[], b""));
    assert_recent_date("page", &get(addr, "/"));

    // A stream's head, and a parked long-poll answered by a publish.
    let mut stream = Client::connect(addr);
    stream.request("GET", &format!("/sub/{ch}?transport=sse"), &[], b"");
    assert_recent_date("SSE", &stream.read_head());
    let mut poll = Client::connect(addr);
    poll.request("GET", &format!("/sub/{ch}?transport=longpoll"), &[], b"");
    wait_until("the long-poll is parked", || {
        let stats = get(addr, "/stats");
        let stats: serde_json::Value = serde_json::from_str(stats.text()).unwrap();
        stats["connections"]["longpoll"].as_u64() == Some(1)
    });
    let published = call(addr, "POST", &format!("/pub/{ch}"), &[], b"hi");
    assert_eq!(published.status, 201);
    assert_recent_date("201", &published);
    let answer = poll.read_response();
    assert_eq!(answer.status, 200);
    assert_recent_date("long-poll answer", &answer);
}

use std::rc::Rc;
use std::time::Instant;

use super::*;
use crate::cursor;

const E: u64 = 0xe1;
const E2: u64 = 0xe2;

fn msg(epoch: u64, seq: u64) -> Rc<Message> {
    Rc::new(Message::new(
        epoch,
        seq,
        cursor::format(epoch, seq),
        "room".into(),
        None,
        format!("m{seq}").into(),
        false,
        Instant::now(),
    ))
}

fn history(epoch: u64, last: u64, seqs: &[u64], truncated: bool) -> History {
    History {
        epoch,
        last,
        entries: seqs.iter().map(|&s| msg(epoch, s)).collect(),
        truncated,
    }
}

/// The steps as short strings: `d:E-S`, `gap:reason:missed:from>to`, `read:N`, `ahead`.
fn show(out: &mut Vec<Step>) -> Vec<String> {
    out.drain(..)
        .map(|s| match s {
            Step::Deliver(m) => format!("d:{:x}-{}", m.epoch, m.seq),
            Step::Gap {
                reason,
                missed,
                from,
                to,
            } => format!(
                "gap:{reason}:{}:{:x}-{}>{:x}-{}",
                missed.map_or("?".into(), |m| m.to_string()),
                from.0,
                from.1,
                to.0,
                to.1
            ),
            Step::Read { after } => format!("read:{after}"),
            Step::Ahead => "ahead".into(),
        })
        .collect()
}

#[test]
fn live_messages_in_order_pass_and_repeats_drop() {
    let mut m = Merge::at(E, 4);
    let mut out = Vec::new();
    for seq in [5, 6, 6, 3, 7] {
        m.on_live(msg(E, seq), &mut out);
    }
    assert_eq!(show(&mut out), ["d:e1-5", "d:e1-6", "d:e1-7"]);
    assert!(m.is_settled());
    assert_eq!(m.position(), (E, 7));
}

#[test]
fn a_skipped_number_is_read_from_the_stream_before_what_follows() {
    let mut m = Merge::at(E, 4);
    let mut out = Vec::new();
    m.on_live(msg(E, 7), &mut out);
    assert_eq!(show(&mut out), ["read:4"]);
    // More live messages while the read is out are held back.
    m.on_live(msg(E, 8), &mut out);
    assert!(out.is_empty());
    m.on_history(history(E, 8, &[5, 6, 7, 8], false), &mut out);
    assert_eq!(show(&mut out), ["d:e1-5", "d:e1-6", "d:e1-7", "d:e1-8"]);
    assert!(m.is_settled());
}

#[test]
fn a_hole_the_stream_no_longer_has_is_an_expired_gap() {
    let mut m = Merge::at(E, 4);
    let mut out = Vec::new();
    m.on_live(msg(E, 9), &mut out);
    assert_eq!(show(&mut out), ["read:4"]);
    m.on_history(history(E, 9, &[8, 9], false), &mut out);
    assert_eq!(
        show(&mut out),
        ["gap:expired:3:e1-4>e1-7", "d:e1-8", "d:e1-9"]
    );
}

#[test]
fn catching_up_merges_history_with_live_arrivals_without_repeats() {
    let (mut m, read) = Merge::new(Start::After { epoch: E, seq: 2 });
    assert!(matches!(read, Step::Read { after: 2 }));
    let mut out = Vec::new();
    // Published while the read was in flight: some also in its answer.
    for seq in [5, 6, 7] {
        m.on_live(msg(E, seq), &mut out);
    }
    assert!(out.is_empty());
    m.on_history(history(E, 6, &[3, 4, 5, 6], false), &mut out);
    assert_eq!(
        show(&mut out),
        ["d:e1-3", "d:e1-4", "d:e1-5", "d:e1-6", "d:e1-7"]
    );
    assert!(m.is_settled());
}

#[test]
fn a_live_arrival_past_a_read_that_ended_first_asks_again() {
    let (mut m, _) = Merge::new(Start::After { epoch: E, seq: 2 });
    let mut out = Vec::new();
    m.on_live(msg(E, 6), &mut out);
    // The read ran before 5 and 6 were published; 5's live copy was lost.
    m.on_history(history(E, 4, &[3, 4], false), &mut out);
    assert_eq!(show(&mut out), ["d:e1-3", "d:e1-4", "read:4"]);
    m.on_history(history(E, 6, &[5, 6], false), &mut out);
    assert_eq!(show(&mut out), ["d:e1-5", "d:e1-6"]);
    assert!(m.is_settled());
}

#[test]
fn a_read_cut_at_its_count_is_continued() {
    let (mut m, _) = Merge::new(Start::After { epoch: E, seq: 0 });
    let mut out = Vec::new();
    m.on_live(msg(E, 5), &mut out);
    m.on_history(history(E, 5, &[1, 2], true), &mut out);
    assert_eq!(show(&mut out), ["d:e1-1", "d:e1-2", "read:2"]);
    m.on_history(history(E, 5, &[3, 4, 5], false), &mut out);
    assert_eq!(show(&mut out), ["d:e1-3", "d:e1-4", "d:e1-5"]);
    assert!(m.is_settled());
}

#[test]
fn a_cursor_past_the_trimmed_stream_gets_an_expired_gap() {
    let (mut m, _) = Merge::new(Start::After { epoch: E, seq: 3 });
    let mut out = Vec::new();
    m.on_history(history(E, 10, &[8, 9, 10], false), &mut out);
    assert_eq!(
        show(&mut out),
        ["gap:expired:4:e1-3>e1-7", "d:e1-8", "d:e1-9", "d:e1-10"]
    );
    // Everything expired: the gap reaches the channel's last message.
    let (mut m, _) = Merge::new(Start::After { epoch: E, seq: 3 });
    m.on_history(history(E, 10, &[], false), &mut out);
    assert_eq!(show(&mut out), ["gap:expired:7:e1-3>e1-10"]);
    assert_eq!(m.position(), (E, 10));
}

#[test]
fn entries_left_out_for_their_age_inside_the_stream_are_a_gap() {
    let (mut m, _) = Merge::new(Start::After { epoch: E, seq: 3 });
    let mut out = Vec::new();
    m.on_history(history(E, 6, &[4, 6], false), &mut out);
    assert_eq!(
        show(&mut out),
        ["d:e1-4", "gap:expired:1:e1-4>e1-5", "d:e1-6"]
    );
}

#[test]
fn a_cursor_of_another_epoch_is_restarted_from_the_new_start() {
    let (mut m, _) = Merge::new(Start::After { epoch: E, seq: 30 });
    let mut out = Vec::new();
    m.on_history(history(E2, 3, &[], false), &mut out);
    assert_eq!(show(&mut out), ["read:0"]);
    m.on_live(msg(E2, 4), &mut out);
    m.on_history(history(E2, 3, &[2, 3], false), &mut out);
    assert_eq!(
        show(&mut out),
        ["gap:restarted:?:e1-30>e2-1", "d:e2-2", "d:e2-3", "d:e2-4"]
    );
}

#[test]
fn a_live_message_of_a_new_epoch_is_a_restart() {
    let mut m = Merge::at(E, 9);
    let mut out = Vec::new();
    m.on_live(msg(E2, 1), &mut out);
    assert_eq!(show(&mut out), ["read:9"]);
    m.on_history(history(E2, 1, &[], false), &mut out);
    assert_eq!(show(&mut out), ["read:0"]);
    m.on_history(history(E2, 1, &[1], false), &mut out);
    assert_eq!(show(&mut out), ["gap:restarted:?:e1-9>e2-0", "d:e2-1"]);
    assert!(m.is_settled());
}

#[test]
fn held_back_messages_of_an_older_epoch_are_dropped() {
    let (mut m, _) = Merge::new(Start::After { epoch: E2, seq: 1 });
    let mut out = Vec::new();
    m.on_live(msg(E, 50), &mut out);
    m.on_live(msg(E2, 2), &mut out);
    m.on_history(history(E2, 1, &[], false), &mut out);
    assert_eq!(show(&mut out), ["d:e2-2"]);
}

#[test]
fn a_cursor_ahead_of_the_channel_is_refused() {
    let (mut m, _) = Merge::new(Start::After { epoch: E, seq: 12 });
    let mut out = Vec::new();
    m.on_history(history(E, 10, &[], false), &mut out);
    assert_eq!(show(&mut out), ["ahead"]);
}

#[test]
fn a_head_start_takes_the_position_and_only_what_follows() {
    let (mut m, read) = Merge::new(Start::Head);
    assert!(matches!(read, Step::Read { after: 0 }));
    let mut out = Vec::new();
    m.on_live(msg(E, 7), &mut out);
    m.on_live(msg(E, 8), &mut out);
    m.on_history(history(E, 7, &[6, 7], false), &mut out);
    assert_eq!(show(&mut out), ["d:e1-8"]);
    assert!(m.is_placed());
    assert_eq!(m.position(), (E, 8));
}

#[test]
fn an_earliest_start_gets_the_whole_stream_without_a_gap() {
    let (mut m, _) = Merge::new(Start::Earliest);
    let mut out = Vec::new();
    m.on_history(history(E, 9, &[7, 8, 9], false), &mut out);
    assert_eq!(show(&mut out), ["d:e1-7", "d:e1-8", "d:e1-9"]);
    let (mut m, _) = Merge::new(Start::Earliest);
    m.on_history(history(E, 9, &[], false), &mut out);
    assert!(show(&mut out).is_empty());
    assert_eq!(m.position(), (E, 9));
}

//! Long-polling: immediate answers, held requests, the 204 with
//! `Halley-Cursor` and resuming from it, 1,000 messages through a chain of
//! cursors, the batch cap, gaps, deletion (410), pipelining behind a held
//! poll, and a client that leaves while held.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn messages_after_the_cursor_are_answered_at_once() {
    let addr = start_default();
    let ch = channel("now");
    let ids: Vec<String> = (1..=3)
        .map(|i| publish(addr, &ch, &format!("m{i}")))
        .collect();
    let r = get(addr, &format!("/sub/{ch}?since={}", ids[0]));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(
        r.text(),
        format!(
            "{{\"messages\":[{{\"id\":\"{}\",\"channel\":\"{ch}\",\"data\":\"m2\"}},\
             {{\"id\":\"{}\",\"channel\":\"{ch}\",\"data\":\"m3\"}}],\"next\":\"{}\"}}",
            ids[1], ids[2], ids[2]
        )
    );
    // Long-poll is the default transport; `earliest` is the whole buffer.
    let all = get(addr, &format!("/sub/{ch}?since=earliest")).json();
    assert_eq!(all["messages"].as_array().unwrap().len(), 3);
    assert_eq!(all["next"].as_str().unwrap(), ids[2]);
}

#[test]
fn a_held_poll_is_answered_by_the_next_message() {
    let addr = start_default();
    let ch = channel("held");
    let last = publish(addr, &ch, "old");
    let mut c = Client::connect(addr);
    c.request("GET", &format!("/sub/{ch}?since={last}"), &[], b"");
    wait_subscribers(addr, &ch, 1);
    let id = call(addr, "POST", &format!("/pub/{ch}?event=ev"), &[], b"new").json();
    assert_eq!(id["subscribers"].as_u64().unwrap(), 1);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let body = r.json();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["data"].as_str().unwrap(), "new");
    assert_eq!(messages[0]["event"].as_str().unwrap(), "ev");
    assert_eq!(body["next"].as_str().unwrap(), id["id"].as_str().unwrap());
    // The poller left the channel with its answer.
    assert_eq!(subscribers(addr, &ch), 0);
}

#[test]
fn several_held_polls_without_a_cursor_all_get_the_message() {
    let addr = start_default();
    let ch = channel("many");
    let mut polls: Vec<Client> = (0..10)
        .map(|_| {
            let mut c = Client::connect(addr);
            c.request("GET", &format!("/sub/{ch}"), &[], b"");
            c
        })
        .collect();
    wait_subscribers(addr, &ch, 10);
    let id = publish(addr, &ch, "all of you");
    for c in &mut polls {
        let body = c.read_response().json();
        assert_eq!(body["messages"][0]["data"].as_str().unwrap(), "all of you");
        assert_eq!(body["next"].as_str().unwrap(), id);
    }
}

#[test]
fn timeout_answers_204_with_a_cursor_to_resume_from_without_loss() {
    let timeout = Duration::from_millis(300);
    let addr = start(Config {
        longpoll_timeout: timeout,
        ..config()
    });
    let ch = channel("timeout");
    let before = publish(addr, &ch, "before");
    let mut c = Client::connect(addr);
    let started = Instant::now();
    c.request("GET", &format!("/sub/{ch}"), &[], b"");
    let r = c.read_response();
    assert_eq!(r.status, 204, "{r:?}");
    assert!(
        started.elapsed() >= timeout - Duration::from_millis(20),
        "answered after {:?}, before the timeout",
        started.elapsed()
    );
    let cursor = r.header("halley-cursor").expect("Halley-Cursor").to_owned();
    assert_eq!(cursor, before, "the cursor covers everything so far");
    assert_eq!(r.header("connection"), Some("keep-alive"));
    // Published between the 204 and the next poll: not lost.
    let missed = publish(addr, &ch, "in between");
    c.request("GET", &format!("/sub/{ch}?since={cursor}"), &[], b"");
    let body = c.read_response().json();
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(body["messages"][0]["data"].as_str().unwrap(), "in between");
    assert_eq!(body["next"].as_str().unwrap(), missed);

    // On a channel that has never had a message, the cursor still resumes.
    let empty = channel("empty");
    c.request("GET", &format!("/sub/{empty}"), &[], b"");
    let r = c.read_response();
    assert_eq!(r.status, 204);
    let cursor = r.header("halley-cursor").unwrap().to_owned();
    let first = publish(addr, &empty, "first");
    c.request("GET", &format!("/sub/{empty}?since={cursor}"), &[], b"");
    let body = c.read_response().json();
    assert_eq!(body["messages"][0]["id"].as_str().unwrap(), first);
}

#[test]
fn a_thousand_messages_arrive_complete_and_in_order_through_chained_cursors() {
    const N: usize = 1000;
    let addr = start_default();
    let ch = channel("chain");
    let publisher = {
        let ch = ch.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            for i in 0..N {
                c.request(
                    "POST",
                    &format!("/pub/{ch}"),
                    &[],
                    format!("{i}").as_bytes(),
                );
                assert_eq!(c.read_response().status, 201);
            }
        })
    };
    let mut c = Client::connect(addr);
    // `earliest` on a fresh channel: whatever has been published already,
    // else held for the first message, so nothing is missed either way.
    let mut cursor = "earliest".to_owned();
    let mut got: Vec<usize> = Vec::with_capacity(N);
    let mut polls = 0;
    while got.len() < N {
        c.request("GET", &format!("/sub/{ch}?since={cursor}"), &[], b"");
        let r = c.read_response();
        polls += 1;
        assert_eq!(r.status, 200, "poll {polls}: {r:?}");
        let body = r.json();
        assert!(body["gap"].is_null(), "{body:?}");
        let messages = body["messages"].as_array().unwrap();
        assert!(!messages.is_empty());
        for m in messages {
            got.push(m["data"].as_str().unwrap().parse().unwrap());
        }
        let next = body["next"].as_str().unwrap().to_owned();
        assert_eq!(next, messages.last().unwrap()["id"].as_str().unwrap());
        cursor = next;
    }
    publisher.join().unwrap();
    let want: Vec<usize> = (0..N).collect();
    assert_eq!(got, want, "complete, in order, no duplicates");
    assert_eq!(seq_of(&cursor), N as u64);
}

#[test]
fn a_long_backlog_comes_in_batches_whose_next_continues() {
    let addr = start(Config {
        longpoll_batch: 3,
        ..config()
    });
    let ch = channel("batch");
    let ids: Vec<String> = (1..=8)
        .map(|i| publish(addr, &ch, &format!("m{i}")))
        .collect();
    let mut c = Client::connect(addr);
    let mut cursor = "earliest".to_owned();
    let mut sizes = Vec::new();
    let mut got = Vec::new();
    while got.len() < 8 {
        c.request("GET", &format!("/sub/{ch}?since={cursor}"), &[], b"");
        let body = c.read_response().json();
        let messages = body["messages"].as_array().unwrap();
        sizes.push(messages.len());
        got.extend(
            messages
                .iter()
                .map(|m| m["data"].as_str().unwrap().to_owned()),
        );
        cursor = body["next"].as_str().unwrap().to_owned();
    }
    assert_eq!(sizes, vec![3, 3, 2]);
    assert_eq!(got, (1..=8).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert_eq!(cursor, ids[7]);
}

#[test]
fn a_cursor_older_than_the_buffer_gets_a_gap_field() {
    let addr = start(Config {
        buffer: 3,
        longpoll_batch: 2,
        ..config()
    });
    let ch = channel("gap");
    let ids: Vec<String> = (1..=6)
        .map(|i| publish(addr, &ch, &format!("m{i}")))
        .collect();
    let body = get(addr, &format!("/sub/{ch}?since={}", ids[0])).json();
    assert_eq!(keys(&body), vec!["messages", "next", "gap"]);
    let gap = &body["gap"];
    assert_eq!(gap["reason"].as_str().unwrap(), "expired");
    assert_eq!(gap["missed"].as_u64().unwrap(), 2, "m2 and m3 were evicted");
    assert_eq!(gap["cursor"].as_str().unwrap(), ids[0]);
    assert_eq!(gap["next"].as_str().unwrap(), ids[2]);
    // Delivery goes on from the oldest held message, batch by batch.
    let data: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, vec!["m4", "m5"]);
    assert_eq!(body["next"].as_str().unwrap(), ids[4]);
    let body = get(addr, &format!("/sub/{ch}?since={}", ids[4])).json();
    assert!(body["gap"].is_null());
    assert_eq!(body["messages"][0]["data"].as_str().unwrap(), "m6");
}

#[test]
fn a_cursor_from_another_run_gets_a_restarted_gap_field() {
    let before = start_default();
    let after = start_default();
    let ch = channel("restart");
    let old = publish(before, &ch, "lost");
    let kept = publish(after, &ch, "kept");
    let body = get(after, &format!("/sub/{ch}?since={old}")).json();
    let gap = &body["gap"];
    assert_eq!(gap["reason"].as_str().unwrap(), "restarted");
    assert!(gap["missed"].is_null());
    assert_eq!(gap["cursor"].as_str().unwrap(), old);
    assert_eq!(body["messages"][0]["data"].as_str().unwrap(), "kept");
    assert_eq!(body["next"].as_str().unwrap(), kept);

    // On a channel with nothing held, the gap alone is the answer (not a
    // silent hold), and its `next` is a cursor that resumes.
    let quiet = channel("quiet");
    let old = publish(before, &quiet, "lost");
    let body = get(after, &format!("/sub/{quiet}?since={old}")).json();
    assert_eq!(body["gap"]["reason"].as_str().unwrap(), "restarted");
    assert!(body["messages"].as_array().unwrap().is_empty());
    let next = body["next"].as_str().unwrap().to_owned();
    let id = publish(after, &quiet, "first");
    let body = get(after, &format!("/sub/{quiet}?since={next}")).json();
    assert!(body["gap"].is_null());
    assert_eq!(body["messages"][0]["id"].as_str().unwrap(), id);
}

#[test]
fn deleting_the_channel_answers_held_polls_410() {
    let addr = start_default();
    let ch = channel("del");
    let mut c = Client::connect(addr);
    c.request("GET", &format!("/sub/{ch}"), &[], b"");
    wait_subscribers(addr, &ch, 1);
    assert_eq!(
        call(addr, "DELETE", &format!("/pub/{ch}"), &[], b"").status,
        204
    );
    let r = c.read_response();
    r.assert_error(410);
    // The connection is still good for the next request.
    c.request("GET", "/healthz", &[], b"");
    assert_eq!(c.read_response().body, b"ok");
}

#[test]
fn a_pipelined_request_behind_a_held_poll_is_answered_after_it() {
    let addr = start(Config {
        longpoll_timeout: Duration::from_millis(200),
        ..config()
    });
    let ch = channel("behind");
    let last = publish(addr, &ch, "old");
    let mut c = Client::connect(addr);
    let mut batch = request_bytes("GET", &format!("/sub/{ch}?since={last}"), &[], b"");
    batch.extend(request_bytes("GET", "/healthz", &[], b""));
    batch.extend(request_bytes("POST", &format!("/pub/{ch}"), &[], b"self"));
    c.send(&batch);
    wait_subscribers(addr, &ch, 1);
    let id = publish(addr, &ch, "wake");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["messages"][0]["id"].as_str().unwrap(), id);
    assert_eq!(c.read_response().body, b"ok");
    let r = c.read_response();
    assert_eq!(r.status, 201);

    // The same behind a poll that times out.
    c.send(
        [
            request_bytes("GET", &format!("/sub/{ch}"), &[], b""),
            request_bytes("GET", "/healthz", &[], b""),
        ]
        .concat(),
    );
    assert_eq!(c.read_response().status, 204);
    assert_eq!(c.read_response().body, b"ok");

    // And behind a poll answered 410 by a delete.
    c.send(
        [
            request_bytes(
                "GET",
                &format!("/sub/{ch}?since={}", seq_cursor(&id, 1)),
                &[],
                b"",
            ),
            request_bytes("GET", "/healthz", &[], b""),
        ]
        .concat(),
    );
    wait_subscribers(addr, &ch, 1);
    assert_eq!(
        call(addr, "DELETE", &format!("/pub/{ch}"), &[], b"").status,
        204
    );
    c.read_response().assert_error(410);
    assert_eq!(c.read_response().body, b"ok");
}

/// The id `n` messages after `id` on the same channel.
fn seq_cursor(id: &str, n: u64) -> String {
    format!("{}-{}", epoch_of(id), seq_of(id) + n)
}

#[test]
fn http10_long_poll_closes_after_its_answer() {
    let addr = start_default();
    let ch = channel("h10");
    let last = publish(addr, &ch, "old");
    let mut c = Client::connect(addr);
    c.send(format!("GET /sub/{ch}?since={last} HTTP/1.0\r\n\r\n"));
    wait_subscribers(addr, &ch, 1);
    publish(addr, &ch, "new");
    let r = c.read_response();
    assert_eq!(r.json()["messages"][0]["data"].as_str().unwrap(), "new");
    assert!(r.closes());
    c.expect_closed();
}

#[test]
fn a_client_leaving_while_held_is_noticed_and_its_channel_freed() {
    let addr = start_default();
    let ch = channel("leave");
    let mut c = Client::connect(addr);
    c.request("GET", &format!("/sub/{ch}"), &[], b"");
    wait_subscribers(addr, &ch, 1);
    assert_eq!(stats(addr)["connections"]["longpoll"].as_u64().unwrap(), 1);
    drop(c);
    // With neither subscribers nor messages, the channel is freed.
    wait_until("the channel is freed", || {
        get(addr, &format!("/pub/{ch}")).status == 404
    });
    let s = stats(addr);
    assert_eq!(s["connections"]["longpoll"].as_u64().unwrap(), 0);
    assert_eq!(s["channels"].as_u64().unwrap(), 0);
}

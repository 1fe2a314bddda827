//! A subscriber that comes back with a cursor catches up from the channel's
//! Redis stream: page by page when the history is long, and whole even when
//! it is far larger than what a live subscriber may let pile up
//! (`--max-queued-bytes`), as the memory engine's replay is.

mod common;

use common::redis::{node, RedisServer};
use common::*;

#[test]
fn a_long_history_catches_up_whole_page_by_page() {
    let redis = RedisServer::start();
    let shards = std::slice::from_ref(&redis);
    // Large messages make small pages: 8 MiB / --max-body 1 MiB = 8 per read.
    let flags = [
        "--buffer",
        "300",
        "--max-queued-bytes",
        "65536",
        "--max-body",
        "1048576",
    ];
    let (a, b) = (node(shards, &flags), node(shards, &flags));
    let ch = channel("backlog");
    let body = "x".repeat(40_000);
    let ids: Vec<String> = (0..300)
        .map(|i| publish(a.addr, &ch, &format!("{i}:{body}")))
        .collect();

    // 12 MB of history, 180 times the live bound and more than the kernel's
    // socket buffers hold, read from Redis 8 entries at a time, to a client
    // that lets it pile up before it reads.
    let mut sse = Sub::sse(b.addr, &ch, "&since=earliest", &[]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (i, id) in ids.iter().enumerate() {
        let ev = sse.next_event();
        assert_eq!(ev.id.as_deref(), Some(id.as_str()), "message {i}");
        assert!(ev.data().starts_with(&format!("{i}:")), "message {i}");
    }
    // Then live, from the same feed.
    let live = publish(a.addr, &ch, "live");
    assert_eq!(sse.next_event().id, Some(live));
    assert_eq!(stats(b.addr)["slow_consumer_closes"], 0);
}

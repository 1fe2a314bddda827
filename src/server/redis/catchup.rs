//! Subscribing with Redis. A subscriber waits (`State::Waiting`) until its
//! channel's feed knows its position; one that wants only what comes next,
//! or whose cursor is that position, then parks on the hub as in memory.
//! Any other catches up: its own `Merge` reads the stream after its cursor
//! while the feed's live messages go into the same merge, so nothing is lost
//! or doubled between the read and the live messages; it joins the feed's
//! fan-out once its position is the feed's. Bayeux resumes read the stream
//! the same way.

use std::rc::Rc;

use super::{Reader, Server};
use crate::conn_id::ConnId;
use crate::cursor::{self, Cursor};
use crate::encode::{self, Gap};
use crate::http::request::{Method, RequestHead};
use crate::http::Reject;
use crate::hub::Replay;
use crate::message::Message;
use crate::redis::merge::{History, Merge, Start, Step};
use crate::routes::Mode;
use crate::server::conn::State;
use crate::server::respond::Ask;

/// What a waiting subscriber asked for, to answer it once Redis has.
#[derive(Clone, Copy)]
struct Request {
    mode: Mode,
    http10: bool,
    keep_alive: bool,
    /// A WebSocket's `Sec-WebSocket-Accept`, for its `101`.
    accept: Option<crate::ws::handshake::Accept>,
}

/// A merge of `cursor`'s history with the live messages, for a subscriber
/// (`/sub` here, a `/ws` channel in `mux_catchup`), and the sequence number
/// its first stream read starts after. `now` never gets here: it is the
/// feed's own position, which joins at once.
pub(super) fn merge_from(cursor: Cursor) -> (Merge, u64) {
    let start = match cursor {
        Cursor::After { epoch, seq } => Start::After { epoch, seq },
        Cursor::Earliest => Start::Earliest,
        Cursor::Now => unreachable!("`now` is the feed's position, checked before"),
    };
    let (merge, read) = Merge::new(start);
    let Step::Read { after } = read else {
        unreachable!("a merge starts with a read");
    };
    (merge, after)
}

pub(in crate::server) struct CatchUp {
    channel: Rc<str>,
    request: Request,
    cursor: Cursor,
    /// `None` while the feed has no position yet.
    pub(super) merge: Option<Merge>,
    /// A stream whose head has gone out: it is parked on the hub, and the
    /// fan-out skips it until it has caught up.
    opened: bool,
}

impl CatchUp {
    pub(super) fn channel(&self) -> &Rc<str> {
        &self.channel
    }

    /// Where to read again after the read in flight was lost.
    pub(super) fn reread_from(&self) -> Option<u64> {
        self.merge.as_ref().map(|m| m.position().1)
    }

    /// Does the cursor ask for what follows `position` exactly (so there is
    /// nothing to read)?
    fn cursor_is(&self, position: (u64, u64)) -> bool {
        match self.cursor {
            Cursor::Now => true,
            Cursor::After { epoch, seq } => (epoch, seq) == position,
            Cursor::Earliest => false,
        }
    }

    fn read_count(&self, longpoll_batch: usize, page: usize) -> usize {
        match self.request.mode {
            Mode::LongPoll => longpoll_batch,
            Mode::Stream(_) => page,
        }
    }
}

impl Server {
    /// `GET /sub/{channel}` with Redis: the subscriber waits for its
    /// channel's feed, at most `--redis-timeout`.
    pub(in crate::server) fn subscribe_via_redis(
        &mut self,
        id: ConnId,
        head: &RequestHead,
        channel: &str,
        mode: Mode,
        cursor: Cursor,
    ) {
        if head.method == Method::Head {
            // What GET would be answered with is not known without Redis;
            // the head of a stream is, and a long-poll says it would wait.
            return self.subscribe_head_only(id, head, mode);
        }
        let request = Request {
            mode,
            http10: head.http10,
            keep_alive: head.keep_alive,
            accept: crate::ws::handshake::check(head).ok(),
        };
        let cluster = self.cluster.as_mut().expect("subscribing via Redis");
        let channel = cluster.ensure_feed(channel);
        let timeout = cluster.timeout;
        let catchup = CatchUp {
            channel: channel.clone(),
            request,
            cursor,
            merge: None,
            opened: false,
        };
        let feed = cluster.feeds.get_mut(&channel).expect("just made");
        if let Some(position) = feed.position() {
            // The common case: the feed is live and the subscriber wants what
            // comes next; it parks at once, as in memory, and costs nothing
            // more than there.
            if catchup.cursor_is(position) {
                return self.attach(id, &catchup, position);
            }
        } else {
            feed.waiting.push(id);
        }
        let placed = feed.position().is_some();
        cluster.catchups.insert(id, catchup);
        if let Some(conn) = self.conns.get(id) {
            conn.wait_for_redis(head.keep_alive);
        }
        self.set_deadline(id, self.now + timeout);
        if placed {
            self.start_catchup(id);
        }
    }

    /// The channel's feed has its position: the subscriber parks at it, or
    /// starts reading what it missed.
    pub(super) fn start_catchup(&mut self, id: ConnId) {
        let now = self.now;
        let batch = self.config.longpoll_batch;
        let cluster = self.cluster.as_mut().expect("catching up via Redis");
        let Some(catchup) = cluster.catchups.get_mut(&id) else {
            return;
        };
        let Some((epoch, seq)) = cluster
            .feeds
            .get(&catchup.channel)
            .and_then(|f| f.position())
        else {
            return;
        };
        if catchup.cursor_is((epoch, seq)) {
            let catchup = cluster.catchups.remove(&id).expect("checked");
            if self.is_waiting(id) {
                self.attach(id, &catchup, (epoch, seq));
            }
            return;
        }
        let (merge, after) = merge_from(catchup.cursor);
        catchup.merge = Some(merge);
        let channel = catchup.channel.clone();
        let count = catchup.read_count(batch, cluster.page);
        if let Some(feed) = cluster.feeds.get_mut(&channel) {
            feed.catching.push(id);
        }
        cluster.send_read(&channel, Reader::Conn(id), after, count, now);
    }

    /// A subscriber at the feed's position parks on the hub, as in memory.
    /// The caller knows the connection is still there to park.
    fn attach(&mut self, id: ConnId, catchup: &CatchUp, (epoch, seq): (u64, u64)) {
        let request = catchup.request;
        match request.mode {
            Mode::Stream(transport) => {
                let replay = Replay {
                    gap: None,
                    messages: Vec::new(),
                    next: cursor::format(epoch, seq),
                    more: false,
                };
                let (http10, accept) = (request.http10, request.accept);
                self.open_stream(id, http10, &catchup.channel, transport, accept, replay);
            }
            Mode::LongPoll => self.park_poll(id, request.keep_alive, &catchup.channel),
        }
    }

    pub(super) fn on_catchup_history(&mut self, id: ConnId, history: History) {
        let cluster = self.cluster.as_mut().expect("a Redis reply");
        let Some(merge) = cluster.catchups.get_mut(&id).and_then(|c| c.merge.as_mut()) else {
            return;
        };
        let mut steps = Vec::new();
        merge.on_history(history, &mut steps);
        self.apply_conn_steps(id, steps);
    }

    /// Carries out a catching-up subscriber's steps.
    pub(super) fn apply_conn_steps(&mut self, id: ConnId, steps: Vec<Step>) {
        let cluster = self.cluster.as_mut().expect("catching up via Redis");
        let Some(catchup) = cluster.catchups.get(&id) else {
            return;
        };
        let alive = match self.conns.get(id).map(|c| c.state()) {
            Some(State::Waiting { .. }) => !catchup.opened,
            Some(State::Streaming { .. } | State::WebSocket(_)) => catchup.opened,
            _ => false,
        };
        if !alive {
            let catchup = cluster.catchups.remove(&id).expect("checked");
            return self.note_maybe_idle(&catchup.channel);
        }
        let request = catchup.request;
        if steps.iter().any(|s| matches!(s, Step::Ahead)) {
            let catchup = cluster.catchups.remove(&id).expect("checked");
            self.note_maybe_idle(&catchup.channel);
            let ask = Ask {
                keep_alive: request.keep_alive,
                head_only: false,
            };
            self.reject(id, Reject::new(400, "cursor is ahead of this channel"), ask);
            return self.conns.resume_later(id);
        }
        match request.mode {
            Mode::Stream(transport) => self.stream_steps(id, transport, steps),
            Mode::LongPoll => self.poll_steps(id, steps),
        }
    }

    /// A catching-up stream: its head goes out with the first messages or
    /// gap (or once there is nothing to read), then each step as it comes.
    fn stream_steps(&mut self, id: ConnId, transport: encode::Transport, steps: Vec<Step>) {
        let now = self.now;
        let cluster = self.cluster.as_mut().expect("catching up via Redis");
        let catchup = cluster
            .catchups
            .get_mut(&id)
            .expect("checked by the caller");
        let merge = catchup
            .merge
            .as_ref()
            .expect("a catching-up subscriber has a merge");
        let channel = catchup.channel.clone();
        let (http10, accept) = (catchup.request.http10, catchup.request.accept);
        let mut steps = steps.into_iter().peekable();
        if !catchup.opened {
            let has_output = matches!(steps.peek(), Some(Step::Deliver(_) | Step::Gap { .. }));
            if !has_output && merge.is_reading() {
                // Only a read so far (a restarted cursor reads the new epoch).
                for step in steps {
                    if let Step::Read { after } = step {
                        let page = cluster.page;
                        cluster.send_read(&channel, Reader::Conn(id), after, page, now);
                    }
                }
                return;
            }
            catchup.opened = true;
            let mut replay = Replay {
                gap: None,
                messages: Vec::new(),
                next: fmt(merge.position()),
                more: false,
            };
            if let Some(Step::Gap { .. }) = steps.peek() {
                replay.gap = steps.next().map(gap_of);
            }
            while let Some(Step::Deliver(_)) = steps.peek() {
                if let Some(Step::Deliver(m)) = steps.next() {
                    replay.messages.push(m);
                }
            }
            self.open_stream(id, http10, &channel, transport, accept, replay);
        }
        for step in steps {
            match step {
                Step::Deliver(message) => self.send_message(id, &message),
                Step::Gap { .. } => {
                    let gap = gap_of(step);
                    let frame = encode::gap_frame(transport, &gap);
                    self.send_frame(id, frame.into(), http10);
                }
                Step::Read { after } => {
                    let cluster = self.cluster.as_mut().expect("checked");
                    let page = cluster.page;
                    cluster.send_read(&channel, Reader::Conn(id), after, page, now);
                }
                Step::Ahead => {}
            }
        }
        self.finish_if_caught_up(id);
    }

    /// A catching-up long-poll: answered with the first messages or gap
    /// that come, or parked on the hub once it is at the feed's position.
    fn poll_steps(&mut self, id: ConnId, steps: Vec<Step>) {
        let now = self.now;
        let batch = self.config.longpoll_batch;
        let cluster = self.cluster.as_mut().expect("catching up via Redis");
        let catchup = cluster.catchups.get(&id).expect("checked by the caller");
        let channel = catchup.channel.clone();
        let keep_alive = catchup.request.keep_alive;
        let mut gap = None;
        let mut messages: Vec<Rc<Message>> = Vec::new();
        let mut reads = Vec::new();
        for step in steps {
            match step {
                Step::Gap { .. } if gap.is_none() && messages.is_empty() => {
                    gap = Some(gap_of(step))
                }
                Step::Deliver(m) if messages.len() < batch => messages.push(m),
                Step::Read { after } => reads.push(after),
                _ => {}
            }
        }
        if gap.is_some() || !messages.is_empty() {
            cluster.catchups.remove(&id);
            let next = match (messages.last(), &gap) {
                (Some(m), _) => m.id.to_string(),
                (None, Some(gap)) => gap.next.clone(),
                (None, None) => unreachable!("checked"),
            };
            let refs: Vec<&Message> = messages.iter().map(|m| &**m).collect();
            let body = encode::poll_body(&refs, gap.as_ref(), &next);
            self.counters.delivered += messages.len() as u64;
            let ask = Ask {
                keep_alive,
                head_only: false,
            };
            self.respond(
                id,
                ask,
                200,
                "application/json",
                &body,
                &["Cache-Control: no-cache"],
            );
            self.conns.resume_later(id);
            return self.note_maybe_idle(&channel);
        }
        for after in reads {
            cluster.send_read(&channel, Reader::Conn(id), after, batch, now);
        }
        let merge = catchup_merge(cluster, id);
        let feed_position = cluster.feeds.get(&channel).and_then(|f| f.position());
        if merge.is_some_and(|m| m.is_settled() && Some(m.position()) == feed_position) {
            let catchup = cluster.catchups.remove(&id).expect("checked");
            let position = feed_position.expect("checked");
            // apply_conn_steps found the poll still waiting.
            self.attach(id, &catchup, position);
        }
    }

    /// A stream that has caught up with its feed leaves catching up: from
    /// now the fan-out writes to it directly.
    fn finish_if_caught_up(&mut self, id: ConnId) {
        let cluster = self.cluster.as_mut().expect("catching up via Redis");
        let Some(catchup) = cluster.catchups.get(&id) else {
            return;
        };
        let feed_position = cluster
            .feeds
            .get(&catchup.channel)
            .and_then(|f| f.position());
        let caught_up = catchup
            .merge
            .as_ref()
            .is_some_and(|m| m.is_settled() && Some(m.position()) == feed_position);
        if caught_up {
            cluster.catchups.remove(&id);
        }
    }

    /// One message to a stream catching up, from its shared frame.
    fn send_message(&mut self, id: ConnId, message: &Rc<Message>) {
        let Some((transport, http10)) = self.conns.get(id).and_then(|c| c.stream_kind()) else {
            return;
        };
        let (frame, range) = crate::server::deliver::frame_for(message, transport, http10);
        let frame = frame.clone();
        if self.send_owed(id, &frame, range) {
            self.counters.delivered += 1;
        }
    }

    /// A frame of one stream's own (a gap), as a chunk or, for HTTP/1.0, bare.
    fn send_frame(&mut self, id: ConnId, frame: Rc<[u8]>, http10: bool) {
        let range = match http10 {
            true => crate::http::response::chunk_payload(&frame),
            false => 0..frame.len(),
        };
        self.send_owed(id, &frame, range);
    }

    /// Catching up is the stream's replay, which in memory goes out whole
    /// with its head: owed like a response, bounded by the send timeout and
    /// the history's length, not by `--max-queued-bytes`, which bounds what
    /// a live subscriber lets pile up. Returns false if the connection failed.
    fn send_owed(&mut self, id: ConnId, frame: &Rc<[u8]>, range: std::ops::Range<usize>) -> bool {
        let Some(conn) = self.conns.get(id) else {
            return false;
        };
        conn.queue_owed(crate::outq::Chunk::Shared(frame.clone(), range));
        match conn.flush() {
            Ok(_) => true,
            Err(e) => {
                let e = crate::server::conn::SendError::Io(e);
                crate::server::respond::note_send_error(&mut self.counters, id, &e);
                self.close(id);
                false
            }
        }
    }

    /// A subscriber still waiting or catching up when its channel is deleted.
    pub(super) fn end_catchup_deleted(&mut self, id: ConnId, channel: &str) {
        let cluster = self.cluster.as_mut().expect("a feed");
        let Some(catchup) = cluster.catchups.remove(&id) else {
            return;
        };
        match self.conns.get(id).map(|c| c.state()) {
            Some(State::Waiting { keep_alive }) => {
                let ask = Ask {
                    keep_alive: *keep_alive,
                    head_only: false,
                };
                let gone = Reject::new(410, format!("channel {channel} was deleted"));
                self.reject(id, gone, ask);
                self.conns.resume_later(id);
            }
            Some(State::Streaming { .. } | State::WebSocket(_)) if catchup.opened => {
                let conn = self.conns.get(id).expect("checked above");
                let Some((transport, http10)) = conn.stream_kind() else {
                    return;
                };
                if let Some(conn) = self.conns.get(id) {
                    if let Some((channel, kind, key)) = conn.unpark() {
                        self.hub.unsubscribe(&channel, kind, key, id, self.now);
                    }
                }
                let frame = encode::deleted_frame(transport, channel);
                self.end_stream(id, &frame, transport, http10);
            }
            _ => {}
        }
    }

    /// `HEAD` on a subscription with Redis.
    fn subscribe_head_only(&mut self, id: ConnId, head: &RequestHead, mode: Mode) {
        match mode {
            Mode::Stream(transport) => self.stream_head_only(id, head, transport),
            Mode::LongPoll => self.respond(
                id,
                Ask::of(head),
                200,
                "application/json",
                b"",
                &["Cache-Control: no-cache"],
            ),
        }
    }
}

fn catchup_merge(cluster: &super::Cluster, id: ConnId) -> Option<&Merge> {
    cluster.catchups.get(&id).and_then(|c| c.merge.as_ref())
}

pub(super) fn fmt((epoch, seq): (u64, u64)) -> String {
    cursor::format(epoch, seq)
}

/// A merge's gap step as the transports' `Gap`.
pub(super) fn gap_of(step: Step) -> Gap {
    match step {
        Step::Gap {
            reason,
            missed,
            from,
            to,
        } => Gap {
            reason,
            missed,
            cursor: fmt(from),
            next: fmt(to),
        },
        _ => unreachable!("called with a gap"),
    }
}

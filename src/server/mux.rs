//! `GET /ws`: one WebSocket for any number of channels. The commands and
//! replies are `crate::mux`'s; this is what they do. A subscribe puts the
//! connection's id in the channel's stream list, as a `/sub` WebSocket's
//! is, so a message reaches it as the very frame every WebSocket subscriber
//! shares (`Message::ws`, whose object names its channel) and fan-out needs
//! no case of its own. The connection's `Mux` lists what it follows, so
//! leaving, closing and reaping undo all of it. With Redis a channel
//! first catches up from the stream on its own (`redis::mux_catchup`) and
//! joins the hub, and `Mux::subs`, once it has.

use log::debug;

use super::conn::{Role, SendError, Subscription};
use super::publish::{Draft, Publisher};
use super::respond::note_send_error;
use super::Server;
use crate::conn_id::ConnId;
use crate::cursor::{self, Cursor};
use crate::http::request::RequestHead;
use crate::hub::Kind;
use crate::mux::{self, Command, CommandError, MAX_CHANNELS};
use crate::outq::Chunk;
use crate::token::Token;
use crate::ws::frame::{self, MessageKind, Opcode};
use crate::ws::handshake::Accept;

/// What a `/ws` connection follows and may do. Boxed in `Role::Mux`, so a
/// `/sub` WebSocket does not pay for it; with a few channels it is a few
/// dozen bytes per channel beyond a parked `/sub` WebSocket.
pub struct Mux {
    /// One hub subscription per channel: `(channel, Kind::Stream, key)`.
    pub subs: Vec<Subscription>,
    /// The upgrade request, kept only when `--publish-token` or
    /// `--token-secret` is set: each subscribe and publish on the socket is
    /// judged by its credentials (`Authorization`, the token cookie or
    /// `?token=`) for its own channel, as a request to `/sub` or `/pub` is.
    pub credentials: Option<Box<RequestHead>>,
}

impl Server {
    /// Answers a checked `/ws` handshake; the connection then takes commands.
    pub(super) fn on_mux_upgrade(
        &mut self,
        id: ConnId,
        accept: Accept,
        credentials: Option<Box<RequestHead>>,
    ) {
        let mux = Mux {
            subs: Vec::new(),
            credentials,
        };
        self.upgrade(id, accept, Role::Mux(Box::new(mux)));
    }

    /// One whole message from a `/ws` peer: a command, answered at once.
    pub(super) fn on_mux_message(&mut self, id: ConnId, kind: MessageKind) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let message = conn.ws_message();
        let command = match kind {
            MessageKind::Text => mux::parse(message),
            MessageKind::Binary => Err(CommandError::new(
                "commands are JSON in text messages",
                None,
            )),
        };
        message.clear();
        self.counters.mux_commands += 1;
        let answer = match command {
            Ok(Command::Subscribe { channel, cursor }) => self.mux_subscribe(id, &channel, cursor),
            Ok(Command::Unsubscribe { channel }) => self.mux_unsubscribe(id, &channel),
            Ok(Command::Publish {
                channel,
                data,
                event,
            }) => self.mux_publish(id, channel, data, event),
            Err(e) => Err(e),
        };
        if let Err(e) = answer {
            self.counters.mux_errors += 1;
            debug!("{id:?}: /ws command refused: {}", e.message);
            self.ws_send(id, Opcode::Text, &e.encode());
        }
    }

    /// Follows `channel` from `cursor`: `subscribed`, the replay (after its
    /// gap, if any) and from then on every live message, in that order,
    /// since nothing else runs on the loop in between.
    fn mux_subscribe(&mut self, id: ConnId, channel: &str, cursor: Cursor) -> Answer {
        let refuse = |message: String| Err(CommandError::new(message, Some(channel)));
        let Some(mux) = self.conns.get(id).and_then(|c| c.mux()) else {
            return Ok(());
        };
        let catching_up = self.cluster.as_ref().map_or(0, |c| c.mux_n_catching_up(id));
        let catching_this = catching_up > 0
            && self
                .cluster
                .as_ref()
                .is_some_and(|c| c.mux_is_catching_up(id, channel));
        if catching_this || mux.subs.iter().any(|(c, ..)| **c == *channel) {
            return refuse("already subscribed to this channel".into());
        }
        if mux.subs.len() + catching_up >= MAX_CHANNELS {
            self.counters.mux_channels_refused += 1;
            return refuse(format!(
                "a connection follows at most {MAX_CHANNELS} channels"
            ));
        }
        if let Some(head) = mux.credentials.clone() {
            if let Err(reject) = self.admit_subscriber(id, &head, channel) {
                return refuse(reject.message);
            }
            // A token that ends ends the socket then (`end_token_expired`).
            let at = self.token_deadline(id, self.now + self.config.heartbeat);
            self.set_deadline(id, at);
        }
        if self.cluster.is_some() {
            // Redis holds the history: this channel catches up on its own
            // (`server::redis::mux_catchup`), the others flowing meanwhile.
            self.mux_subscribe_via_redis(id, channel, cursor);
            return Ok(());
        }
        let replay = match self.hub.replay(channel, cursor, usize::MAX) {
            Ok(replay) => replay,
            Err(reject) => return refuse(reject.message),
        };
        // Where the subscription starts: just before its first replayed
        // message, so a client that drops mid-replay and resumes from here
        // is sent it again rather than never.
        let start = match replay.messages.first() {
            Some(first) => cursor::format(first.epoch, first.seq - 1),
            None => replay.next.clone(),
        };
        let mut head = frame::frame(Opcode::Text, &mux::subscribed(channel, &start));
        if let Some(gap) = &replay.gap {
            head.extend(frame::frame(Opcode::Text, &mux::gap(channel, gap)));
        }
        self.mux_follow(id, channel);
        let conn = self.conns.get(id).expect("checked above");
        self.counters.delivered += replay.messages.len() as u64;
        // The replay goes out as the messages' shared frames, uncopied.
        conn.queue_owed(Chunk::Owned(head));
        for message in &replay.messages {
            let frame = message.ws();
            conn.queue_owed(Chunk::Shared(frame.clone(), 0..frame.len()));
        }
        if let Err(e) = conn.flush() {
            note_send_error(&mut self.counters, id, &SendError::Io(e));
            self.close(id);
        }
        Ok(())
    }

    /// Makes socket `id` one of `channel`'s stream entries in the hub, so
    /// fan-out reaches it, and records it among the socket's subscriptions,
    /// so closing leaves it. False if `id` is no longer a `/ws` socket.
    pub(super) fn mux_follow(&mut self, id: ConnId, channel: &str) -> bool {
        if self.conns.get(id).and_then(|c| c.mux()).is_none() {
            return false;
        }
        let (name, key) = self.hub.subscribe(channel, Kind::Stream, id);
        let mux = self
            .conns
            .get(id)
            .and_then(|c| c.mux())
            .expect("checked above");
        mux.subs.push((name, Kind::Stream, key));
        true
    }

    fn mux_unsubscribe(&mut self, id: ConnId, channel: &str) -> Answer {
        let Some(mux) = self.conns.get(id).and_then(|c| c.mux()) else {
            return Ok(());
        };
        let Some(at) = mux.subs.iter().position(|(c, ..)| **c == *channel) else {
            if self.mux_cancel_catchup(id, channel) {
                self.ws_send(id, Opcode::Text, &mux::unsubscribed(channel));
                return Ok(());
            }
            return Err(CommandError::new(
                "not subscribed to this channel",
                Some(channel),
            ));
        };
        let (name, kind, key) = mux.subs.swap_remove(at);
        self.hub.unsubscribe(&name, kind, key, id, self.now);
        self.note_maybe_idle(&name);
        self.ws_send(id, Opcode::Text, &mux::unsubscribed(channel));
        Ok(())
    }

    /// A publish under the rules of `POST /pub` (`Web::admit`): the token
    /// the upgrade carried, open channels with their size and rate limits,
    /// and `--max-body`. Answered with `published` once it has its id.
    fn mux_publish(
        &mut self,
        id: ConnId,
        channel: String,
        data: String,
        event: Option<String>,
    ) -> Answer {
        let Some(mux) = self.conns.get(id).and_then(|c| c.mux()) else {
            return Ok(());
        };
        let token = match &mux.credentials {
            None => Token::NotConfigured,
            Some(head) => match self.web.publisher(head, &channel) {
                Ok(token) => token,
                Err(reject) => return Err(CommandError::new(reject.message, Some(&channel))),
            },
        };
        let peer = self
            .conns
            .get(id)
            .and_then(|c| c.socket.peer_addr().ok())
            .map(|a| a.ip());
        let refuse = |message: String| Err(CommandError::new(message, Some(&channel)));
        match self
            .web
            .decide_publish(&channel, token, data.len(), peer, self.now)
        {
            Ok(()) => {}
            Err(reject) => {
                *self.counters.rejections.entry(reject.status).or_default() += 1;
                return refuse(reject.message);
            }
        }
        let draft = Draft {
            channel,
            data: data.into(),
            data_is_json: false,
            event: event.map(Into::into),
        };
        self.publish(draft, Publisher::Mux(id));
        Ok(())
    }

    /// The publish a `/ws` peer sent has its id.
    pub(super) fn answer_mux_publish(&mut self, id: ConnId, message_id: &str, channel: &str) {
        if self.conns.get(id).and_then(|c| c.mux()).is_some() {
            self.ws_send(id, Opcode::Text, &mux::published(message_id, channel));
        }
    }

    /// A `/ws` publish Redis did not take: the socket is told, with the
    /// channel when it is known.
    pub(super) fn mux_publish_failed(&mut self, id: ConnId, channel: &str, why: &str) {
        if self.conns.get(id).and_then(|c| c.mux()).is_some() {
            let channel = (!channel.is_empty()).then_some(channel);
            self.ws_send(id, Opcode::Text, &mux::error(why, channel));
        }
    }

    /// A channel a `/ws` connection follows was deleted: it is told, and
    /// follows the others still. The hub has already dropped the entry.
    pub(super) fn mux_channel_deleted(&mut self, id: ConnId, channel: &str) {
        let Some(mux) = self.conns.get(id).and_then(|c| c.mux()) else {
            return;
        };
        mux.subs.retain(|(c, ..)| **c != *channel);
        let mut text = b"{\"deleted\":true,\"channel\":".to_vec();
        crate::json::push_str(&mut text, channel);
        text.push(b'}');
        self.ws_send(id, Opcode::Text, &text);
    }

    /// Leaves every channel a `/ws` connection follows, before it ends.
    pub(super) fn mux_leave_all(&mut self, id: ConnId) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.drop_mux_catchups(id, self.now);
        }
        let Some(mux) = self.conns.get(id).and_then(|c| c.mux()) else {
            return;
        };
        for (channel, kind, key) in std::mem::take(&mut mux.subs) {
            self.hub.unsubscribe(&channel, kind, key, id, self.now);
            self.note_maybe_idle(&channel);
        }
    }
}

/// What a command comes to: done (its replies sent), or refused.
type Answer = Result<(), CommandError>;

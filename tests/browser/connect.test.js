// Unit tests of halley.connect(), in Node with a fake WebSocket, EventSource and clock: one socket for
// every channel, each channel resumed from its own last id after a drop and delivered exactly once,
// errors and gaps routed to their channel, and the fallback to per-channel subscriptions when
// WebSocket never opens (and only then).

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const SOURCE = fs.readFileSync(path.join(__dirname, '../../src/web/assets/halley.js'), 'utf8');
const BASE = 'http://halley.test/';

function load({ withWebSocket = true, random = () => 1 } = {}) {
  const world = { now: 0, timers: [], sockets: [], sources: [], log: [] };
  world.setTimeout = (fn, ms) => {
    const timer = { at: world.now + ms, ms, fn, live: true };
    world.timers.push(timer);
    return timer;
  };
  world.clearTimeout = (timer) => { if (timer) timer.live = false; };
  world.advance = (ms) => {
    const until = world.now + ms;
    for (;;) {
      const due = world.timers.filter((t) => t.live && t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.live = false;
      world.now = due.at;
      due.fn();
    }
    world.now = until;
  };
  world.pending = () => world.timers.filter((t) => t.live);

  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closed = false;
      world.sockets.push(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.closed = true; this.readyState = 3; }
    open() { this.readyState = 1; this.onopen?.({}); }
    frame(obj) { this.onmessage?.({ data: JSON.stringify(obj) }); }
    drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
  }
  class FakeEventSource {
    constructor(url) { this.url = url; this.listeners = {}; world.sources.push(this); }
    addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
    close() { this.closed = true; }
  }
  const context = {
    URL, URLSearchParams, AbortController, JSON, Array, Error, Promise, Object, Number,
    Math: Object.assign(Object.create(Math), { random }),
    setTimeout: world.setTimeout,
    clearTimeout: world.clearTimeout,
    fetch: () => new Promise(() => {}),
    MessageEvent: class MessageEvent {},
    EventSource: FakeEventSource,
    document: { currentScript: { src: `${BASE}halley.js` } },
  };
  if (withWebSocket) context.WebSocket = FakeWebSocket;
  context.window = context;
  vm.runInNewContext(SOURCE, context);
  world.halley = context.window.halley;
  world.socket = () => world.sockets[world.sockets.length - 1];
  /** A subscription through `conn` whose callbacks log into world.log as "channel kind value". */
  world.follow = (conn, channel, opts = {}) => conn.subscribe(channel, {
    onMessage: (m) => world.log.push(`${channel} msg ${m.data}`),
    onGap: (g) => world.log.push(`${channel} gap ${g.next}`),
    onState: (s, t) => world.log.push(`${channel} state ${s}/${t}`),
    onError: (e) => world.log.push(`${channel} error ${e.message}`),
    ...opts,
  });
  return world;
}

const msg = (channel, seq, data = `${channel}${seq}`) => ({ id: `e1-${seq}`, channel, data });

test('one socket carries every channel and resumes each from its own last id, exactly once', () => {
  const w = load();
  const states = [];
  const conn = w.halley.connect({ onState: (s, t) => states.push(`${s}/${t}`) });
  w.follow(conn, 'a', { since: 'earliest' });
  w.follow(conn, 'b');
  assert.equal(w.sockets.length, 1, 'one socket for both');
  assert.equal(w.socket().url, 'ws://halley.test/ws');
  w.socket().open();
  assert.deepEqual(w.socket().sent, [{ subscribe: 'a', since: 'earliest' }, { subscribe: 'b' }]);
  w.socket().frame({ subscribed: 'a', cursor: 'e1-0' });
  w.socket().frame({ subscribed: 'b', cursor: 'e1-7' });
  w.socket().frame(msg('a', 1));
  w.socket().frame(msg('a', 2));
  w.socket().frame({ id: 'e1-9', channel: 'zzz', data: 'not ours' });

  w.socket().drop();
  assert.deepEqual(states, ['connecting/websocket', 'live/websocket', 'reconnecting/websocket']);
  assert.equal(w.pending().length, 1, 'one reconnect timer');
  w.advance(500);
  assert.equal(w.sockets.length, 2);
  w.socket().open();
  // a resumes after its last message, b from the cursor its subscribe was given.
  assert.deepEqual(w.socket().sent, [{ subscribe: 'a', since: 'e1-2' }, { subscribe: 'b', since: 'e1-7' }]);
  // A replay that overlaps what arrived before the drop is delivered once.
  w.socket().frame(msg('a', 2));
  w.socket().frame(msg('a', 1));
  w.socket().frame(msg('a', 3));
  w.socket().frame(msg('b', 8));
  const delivered = w.log.filter((l) => l.includes(' msg '));
  assert.deepEqual(delivered, ['a msg a1', 'a msg a2', 'a msg a3', 'b msg b8']);
  // Another epoch (the server restarted) is new whatever its number.
  w.socket().frame({ id: 'f2-1', channel: 'a', data: 'after restart' });
  assert.equal(w.log.at(-1), 'a msg after restart');
});

test('the backoff grows with failed attempts and resets once a socket opens', () => {
  const w = load();
  const conn = w.halley.connect();
  w.follow(conn, 'a');
  w.socket().open();
  const delays = [];
  for (let i = 0; i < 3; i++) {
    w.socket().drop();
    delays.push(w.pending()[0].ms);
    w.advance(w.pending()[0].ms);
  }
  assert.deepEqual(delays, [500, 1000, 2000]);
  w.socket().open();
  w.socket().drop();
  assert.equal(w.pending()[0].ms, 500);
});

test('gaps, deletions and errors reach their own channel only', () => {
  const w = load();
  const conn = w.halley.connect();
  w.follow(conn, 'a', { since: 'old-1' });
  w.follow(conn, 'b');
  w.socket().open();
  w.socket().frame({ gap: { reason: 'restarted', missed: null, cursor: 'old-1', next: 'e1-4' }, channel: 'a' });
  w.socket().frame({ error: 'channel names are 1 to 128 bytes', channel: 'b' });
  w.socket().frame({ error: 'commands are at most 10 bytes' });
  assert.deepEqual(w.log.filter((l) => !l.includes(' state ')), ['a gap e1-4', 'b error channel names are 1 to 128 bytes']);
  assert.ok(w.log.includes('b state closed/websocket'));
  w.socket().frame(msg('b', 1));
  assert.ok(!w.log.includes('b msg b1'), 'a failed subscription delivers nothing');
  w.socket().drop();
  w.advance(500);
  w.socket().open();
  assert.deepEqual(w.socket().sent, [{ subscribe: 'a', since: 'e1-4' }], 'a resumes after its gap; b is gone');
  w.socket().frame({ deleted: true, channel: 'a' });
  assert.equal(w.log.at(-1), 'a state closed/websocket');
});

test('closing a subscription unsubscribes it; subscribing twice to a channel is an error', () => {
  const w = load();
  const conn = w.halley.connect();
  const sub = w.follow(conn, 'a');
  assert.throws(() => w.follow(conn, 'a'), /already subscribed/);
  assert.throws(() => w.follow(conn, 'no spaces'), /a channel is/);
  w.socket().open();
  sub.close();
  assert.deepEqual(w.socket().sent, [{ subscribe: 'a' }, { unsubscribe: 'a' }]);
  w.socket().frame(msg('a', 1));
  assert.ok(!w.log.some((l) => l.includes(' msg ')));
  conn.close();
  assert.equal(w.socket().closed, true);
  assert.equal(w.pending().length, 0, 'a closed connection leaves no timer');
});

test('a WebSocket that never opens falls back per channel, resuming where it was', () => {
  const w = load();
  const states = [];
  const conn = w.halley.connect({ onState: (s, t) => states.push(`${s}/${t}`) });
  w.follow(conn, 'a', { since: 'earliest' });
  w.follow(conn, 'b');
  w.socket().drop(); // refused before opening
  w.advance(500);
  assert.equal(w.sockets.length, 2);
  w.advance(4000); // the second never opens either
  assert.equal(w.sockets.length, 2, 'no third attempt');
  assert.equal(w.sources.length, 2, 'an EventSource per channel');
  assert.deepEqual(states, ['connecting/websocket', 'reconnecting/websocket', 'fallback/null']);
  assert.deepEqual(w.sources.map((s) => s.url), [
    `${BASE}sub/a?transport=sse&since=earliest`,
    `${BASE}sub/b?transport=sse`,
  ]);
  // A channel subscribed after the fallback goes the same way.
  w.follow(conn, 'c');
  assert.equal(w.sources.length, 3);
  assert.equal(w.sockets.length, 2);
});

test('once a WebSocket worked, drops reconnect it and never fall back', () => {
  const w = load();
  const conn = w.halley.connect();
  w.follow(conn, 'a');
  w.socket().open();
  // Dropped, then refused again and again: the server is away, WebSocket is not blocked.
  for (let i = 0; i < 5; i++) {
    w.socket().drop();
    w.advance(w.pending()[0].ms);
  }
  assert.equal(w.sources.length, 0);
  assert.equal(w.sockets.length, 6);
});

test('without WebSocket in the browser, connect() subscribes per channel at once', () => {
  const w = load({ withWebSocket: false });
  const conn = w.halley.connect();
  w.follow(conn, 'a', { since: 'earliest' });
  assert.equal(w.sources.length, 1);
  assert.equal(w.sources[0].url, `${BASE}sub/a?transport=sse&since=earliest`);
});

test('a socket silent for longer than two heartbeats is replaced and resumed', () => {
  const w = load();
  const conn = w.halley.connect({ silenceMs: 40000 });
  w.follow(conn, 'a');
  w.socket().open();
  w.socket().frame(msg('a', 1));
  w.advance(30000);
  w.socket().frame({ heartbeat: true });
  w.advance(30000);
  assert.equal(w.sockets.length, 1, 'a heartbeat keeps it');
  assert.equal(w.socket().closed, false);
  w.advance(10001);
  assert.equal(w.sockets[0].closed, true, 'silent for 40 s: dropped');
  w.advance(500);
  w.socket().open();
  assert.deepEqual(w.socket().sent, [{ subscribe: 'a', since: 'e1-1' }]);
});

// Lets a token function's promise settle (the fake clock does not drive promises).
const settle = () => new Promise((resolve) => setImmediate(resolve));

test('a token function is asked before the socket and again when the server ends it for its token', async () => {
  const w = load();
  const asked = [];
  const conn = w.halley.connect({ token: () => { asked.push(asked.length); return `t${asked.length}`; } });
  w.follow(conn, 'a');
  assert.equal(w.sockets.length, 0, 'no socket before the token');
  await settle();
  assert.equal(w.sockets.length, 1);
  // No page origin here, so the token travels as ?token= (a same-origin page sets the cookie).
  assert.equal(w.socket().url, 'ws://halley.test/ws?token=t1');
  w.socket().open();
  w.socket().frame(msg('a', 1));
  // What the server sends when the token ends, then its close 1008.
  w.socket().frame({ error: 'token expired' });
  w.socket().drop();
  assert.ok(!w.log.some((l) => l.includes('error')), 'a renewable token is no error');
  w.advance(500);
  await settle();
  assert.equal(w.sockets.length, 2);
  assert.equal(w.socket().url, 'ws://halley.test/ws?token=t2');
  w.socket().open();
  assert.deepEqual(w.socket().sent, [{ subscribe: 'a', since: 'e1-1' }], 'resumed after its last message');
  assert.deepEqual(asked, [0, 1]);
});

test('a fixed token that ends closes every channel with a token error', async () => {
  const w = load();
  const errors = [];
  const conn = w.halley.connect({ token: 'fixed', onError: (e) => errors.push(`${e.status} ${e.message}`) });
  w.follow(conn, 'a');
  await settle();
  w.socket().open();
  w.socket().frame({ error: 'token expired' });
  w.socket().drop();
  w.advance(60000);
  assert.equal(w.sockets.length, 1, 'no reconnect with a token that cannot be renewed');
  assert.ok(w.log.includes('a error token expired'), w.log.join('\n'));
  assert.ok(w.log.includes('a state closed/websocket'), w.log.join('\n'));
  assert.deepEqual(errors, ['401 token expired']);
});

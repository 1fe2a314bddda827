// Unit tests of halley.js's decisions, in Node with a fake EventSource, fetch and clock: which URL
// each reconnect uses, when it falls back, how it backs off, what a gap does to the cursor. They need
// neither the server nor a browser, so they run in a moment and say exactly what broke.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const SOURCE = fs.readFileSync(path.join(__dirname, '../../src/web/assets/halley.js'), 'utf8');
const BASE = 'http://halley.test/';

/** Loads halley.js into a fresh context whose timers, EventSource and fetch the test drives. */
function load({ withEventSource = true, random = Math.random } = {}) {
  const world = { now: 0, timers: [], sources: [], fetches: [], states: [], messages: [], gaps: [], errors: [] };

  world.setTimeout = (fn, ms) => {
    const timer = { at: world.now + ms, ms, fn, live: true };
    world.timers.push(timer);
    return timer;
  };
  world.clearTimeout = (timer) => { if (timer) timer.live = false; };
  /** Moves the clock, firing due timers in order. */
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
  /** Timers not yet fired or cleared. */
  world.pending = () => world.timers.filter((t) => t.live);

  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.closed = false;
      this.listeners = {};
      world.sources.push(this);
    }
    addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
    close() { this.closed = true; }
    emit(type, fields = {}) {
      const event = { type, lastEventId: '', data: '', ...fields };
      if (type === 'open') return this.onopen(event);
      if (type === 'message') return this.onmessage(event);
      if (type === 'error') return this.onerror(event);
      for (const fn of this.listeners[type] || []) fn(event);
    }
  }

  world.fetch = (url, opts = {}) => new Promise((resolve, reject) => {
    const call = { url, opts, resolve, reject };
    opts.signal?.addEventListener('abort', () => {
      call.aborted = true;
      reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    });
    world.fetches.push(call);
  });

  const context = {
    URL, URLSearchParams, AbortController, JSON, Array, Error, Promise,
    Math: Object.assign(Object.create(Math), { random }),
    setTimeout: world.setTimeout,
    clearTimeout: world.clearTimeout,
    fetch: world.fetch,
    MessageEvent: class MessageEvent {},
    document: { currentScript: { src: `${BASE}halley.js` } },
  };
  if (withEventSource) context.EventSource = FakeEventSource;
  context.window = context;
  vm.runInNewContext(SOURCE, context);
  world.halley = context.window.halley;
  world.MessageEvent = context.MessageEvent;
  world.subscribe = (channel, opts = {}) => world.halley.subscribe(channel, {
    onState: (state, transport) => world.states.push(`${state}/${transport}`),
    onMessage: (msg) => world.messages.push(msg),
    onGap: (gap) => world.gaps.push(gap),
    onError: (err) => world.errors.push(err),
    ...opts,
  });
  world.lastSource = () => world.sources[world.sources.length - 1];
  world.lastFetch = () => world.fetches[world.fetches.length - 1];
  return world;
}

/** Lets promise callbacks run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

function response(status, { body = '', headers = {} } = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (name) => headers[name] ?? null },
    json: async () => JSON.parse(text),
    text: async () => text,
  };
}

function query(url) {
  return Object.fromEntries(new URL(url).searchParams);
}

test('EventSource resumes from the last id after a drop, with backoff', () => {
  const w = load();
  w.subscribe('demo/post-1', { since: 'earliest' });
  assert.equal(w.lastSource().url, `${BASE}sub/demo/post-1?transport=sse&since=earliest`);
  w.lastSource().emit('open');
  w.lastSource().emit('message', { lastEventId: 'e1-1', data: 'one' });
  w.lastSource().emit('message', { lastEventId: 'e1-2', data: 'two' });
  // A replay of the cursor's own message is dropped.
  w.lastSource().emit('message', { lastEventId: 'e1-2', data: 'two' });
  assert.deepEqual(w.messages.map((m) => m.data), ['one', 'two']);
  // Objects made inside the script's context have that context's prototypes; compare them as JSON.
  assert.deepEqual(JSON.parse(JSON.stringify(w.messages[0])), { id: 'e1-1', channel: 'demo/post-1', data: 'one' });

  w.lastSource().emit('error');
  assert.equal(w.lastSource().closed, true, 'the browser is not left to reconnect on its own');
  assert.deepEqual(w.states, ['connecting/sse', 'live/sse', 'reconnecting/sse']);
  w.advance(500);
  assert.equal(w.sources.length, 2);
  assert.deepEqual(query(w.lastSource().url), { transport: 'sse', last_event_id: 'e1-2' });
});

test('reconnect delays grow, are jittered over their whole range, and reset once connected', () => {
  // Each draw is the given fraction of its ceiling: full jitter reaches down to 0.
  const fractions = [0, 0.25, 0.5, 0.99, 0, 1, 0.1, 0.75];
  let draw = 0;
  const w = load({ random: () => fractions[draw++ % fractions.length] });
  w.subscribe('demo/post-1');
  w.lastSource().emit('open');
  const delays = [];
  for (let i = 0; i < 8; i++) {
    w.lastSource().emit('error');
    const [retry, ...others] = w.pending();
    assert.equal(others.length, 0, 'a dropped stream leaves only its reconnect timer');
    delays.push(retry.ms);
    w.advance(retry.ms);
  }
  const ceilings = [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000];
  assert.deepEqual(delays, ceilings.map((c, i) => c * fractions[i]));
  w.lastSource().emit('open');
  w.lastSource().emit('error');
  assert.ok(w.pending()[0].ms <= 500, 'a success resets the backoff');
});

test('a draining server names the next reconnect delay, used once', () => {
  const w = load({ random: () => 1 });
  w.subscribe('demo/post-1');
  w.lastSource().emit('open');
  w.lastSource().emit('message', { lastEventId: 'e1-1', data: 'one' });
  w.lastSource().emit('drain', { data: '7321' });
  w.lastSource().emit('error');
  assert.deepEqual(w.pending().map((t) => t.ms), [7321]);
  assert.equal(w.messages.length, 1, 'the hint is not a message');
  w.advance(7321);
  assert.equal(w.sources.length, 2);
  assert.deepEqual(query(w.lastSource().url), { transport: 'sse', last_event_id: 'e1-1' });
  // The new server is not there yet: back to the ordinary backoff.
  w.lastSource().emit('error');
  assert.deepEqual(w.pending().map((t) => t.ms), [500]);
});

test('when EventSource falls back to long-polling', async () => {
  const cases = [
    // [what happens to the stream, falls back]
    ['never opens within the timeout', (w) => w.advance(4000), true],
    ['is refused twice before ever opening', (w) => {
      w.lastSource().emit('error');
      w.advance(500);
      w.lastSource().emit('error');
    }, true],
    ['is refused once', (w) => { w.lastSource().emit('error'); w.advance(500); }, false],
    ['worked once and is refused later', (w) => {
      w.lastSource().emit('open');
      w.lastSource().emit('error');
      w.advance(500);
      w.lastSource().emit('error');
      w.advance(1000);
      w.lastSource().emit('error');
    }, false],
    ['receives an event named "error" from a publisher', (w) => {
      w.lastSource().emit('open');
      w.lastSource().onerror(new w.MessageEvent());
    }, false],
  ];
  for (const [what, act, fallsBack] of cases) {
    const w = load();
    w.subscribe('demo/post-1', { since: 'earliest' });
    act(w);
    await settle();
    assert.equal(w.fetches.length > 0, fallsBack, `a stream that ${what}`);
    if (fallsBack) {
      assert.deepEqual(query(w.lastFetch().url), { transport: 'longpoll', since: 'earliest' });
      w.advance(1000);
      assert.equal(w.states.at(-1), 'fallback/longpoll', what);
    }
  }
});

test('an open stream that delivers nothing while the channel has news falls back', async () => {
  const cases = [
    // [cursor before, channel record, falls back]
    [null, { messages: 2, last_id: 'e1-2' }, true],
    [null, { messages: 0, last_id: null }, false],
    ['e1-2', { messages: 2, last_id: 'e1-2' }, false],
    ['e1-1', { messages: 2, last_id: 'e1-2' }, true],
  ];
  for (const [cursor, record, fallsBack] of cases) {
    const w = load();
    w.subscribe('demo/post-1', { since: 'earliest' });
    if (cursor) {
      w.lastSource().emit('open');
      w.lastSource().emit('message', { lastEventId: cursor, data: 'x' });
      w.lastSource().emit('error');
      w.advance(500);
    }
    w.lastSource().emit('open');
    w.advance(5000);
    const probe = w.lastFetch();
    assert.equal(probe.url, `${BASE}pub/demo/post-1`);
    probe.resolve(response(200, { body: { channel: 'demo/post-1', subscribers: 1, ...record } }));
    await settle();
    assert.equal(w.fetches.length > 1, fallsBack, `cursor ${cursor}, record ${JSON.stringify(record)}`);
    assert.equal(w.lastSource().closed, fallsBack);
  }
});

test('long-polling chains cursors and handles every answer', async () => {
  const w = load({ withEventSource: false });
  w.subscribe('demo/post-1', { since: 'earliest' });
  assert.deepEqual(query(w.lastFetch().url), { transport: 'longpoll', since: 'earliest' });
  const steps = [
    // [answer, query of the next request, messages delivered so far, last state]
    [response(200, { body: { messages: [{ id: 'e1-1', channel: 'demo/post-1', data: 'a' }], next: 'e1-1' } }),
      { transport: 'longpoll', last_event_id: 'e1-1' }, ['a'], 'fallback/longpoll'],
    [response(204, { headers: { 'Halley-Cursor': 'e1-1' } }),
      { transport: 'longpoll', last_event_id: 'e1-1' }, ['a'], 'fallback/longpoll'],
    [response(200, { body: { messages: [
      { id: 'e1-2', channel: 'demo/post-1', data: 'b', event: 'note' },
      { id: 'e1-3', channel: 'demo/post-1', data: 'c' }], next: 'e1-3' } }),
    { transport: 'longpoll', last_event_id: 'e1-3' }, ['a', 'b', 'c'], 'fallback/longpoll'],
    [response(503), null, ['a', 'b', 'c'], 'reconnecting/longpoll'],
  ];
  for (const [answer, nextQuery, delivered, state] of steps) {
    const before = w.fetches.length;
    w.lastFetch().resolve(answer);
    await settle();
    assert.deepEqual(w.messages.map((m) => m.data), delivered);
    assert.equal(w.states.at(-1), state);
    if (nextQuery) {
      assert.equal(w.fetches.length, before + 1, 'polls again at once');
      assert.deepEqual(query(w.lastFetch().url), nextQuery);
    } else {
      assert.equal(w.fetches.length, before, 'waits before retrying');
    }
  }
  assert.equal(w.messages[1].event, 'note');
  w.advance(500);
  assert.deepEqual(query(w.lastFetch().url), { transport: 'longpoll', last_event_id: 'e1-3' });
  // A network failure while reading the body is retried, not fatal.
  w.lastFetch().resolve({ ...response(200), json: async () => { throw new TypeError('network'); } });
  await settle();
  assert.equal(w.states.at(-1), 'reconnecting/longpoll');
  w.advance(1000);
  w.lastFetch().resolve(response(410));
  await settle();
  assert.equal(w.states.at(-1), 'closed/longpoll');
  w.advance(60000);
  assert.equal(w.errors.length, 0);
});

test('a refusal that retrying cannot fix ends the subscription with onError', async () => {
  const w = load({ withEventSource: false });
  w.subscribe('demo/post-1');
  w.lastFetch().resolve(response(400, { body: { error: 'bad cursor' } }));
  await settle();
  assert.equal(w.errors.length, 1);
  assert.equal(w.errors[0].message, 'bad cursor');
  assert.equal(w.errors[0].status, 400);
  assert.equal(w.states.at(-1), 'closed/longpoll');
});

test('a gap forgets the stale cursor so it is reported once', async () => {
  // Over EventSource: a gap without an id of its own.
  const w = load();
  w.subscribe('demo/post-1', { since: 'earliest' });
  w.lastSource().emit('open');
  w.lastSource().emit('message', { lastEventId: 'e1-5', data: 'x' });
  w.lastSource().emit('error');
  w.advance(500);
  assert.deepEqual(query(w.lastSource().url), { transport: 'sse', last_event_id: 'e1-5' });
  w.lastSource().emit('open');
  w.lastSource().emit('gap', { data: '{"missed":5}' });
  assert.deepEqual(w.gaps, [{ missed: 5 }]);
  w.lastSource().emit('error');
  w.advance(500);
  assert.deepEqual(query(w.lastSource().url), { transport: 'sse', since: 'earliest' });

  // Over long-poll: a gap whose `next` is the cursor that was sent.
  const l = load({ withEventSource: false });
  l.subscribe('demo/post-1', { since: 'e1-5' });
  l.lastFetch().resolve(response(200, { body: { messages: [], next: 'e1-5', gap: { missed: 5 } } }));
  await settle();
  assert.deepEqual(l.gaps, [{ missed: 5 }]);
  assert.deepEqual(query(l.lastFetch().url), { transport: 'longpoll', since: 'earliest' });
  l.lastFetch().resolve(response(200, { body: {
    messages: [{ id: 'e2-1', channel: 'demo/post-1', data: 'new' }], next: 'e2-1' } }));
  await settle();
  assert.deepEqual(query(l.lastFetch().url), { transport: 'longpoll', last_event_id: 'e2-1' });
});

test('close stops everything', async () => {
  const w = load();
  const sub = w.subscribe('demo/post-1');
  w.lastSource().emit('open');
  w.lastSource().emit('error');
  sub.close();
  w.advance(60000);
  assert.equal(w.sources.length, 1);
  assert.equal(w.states.at(-1), 'closed/sse');

  const l = load({ withEventSource: false });
  l.subscribe('demo/post-1').close();
  await settle();
  assert.equal(l.fetches[0].aborted, true);
  assert.equal(l.fetches.length, 1);
});

test('channels are checked before any request', () => {
  const w = load();
  for (const bad of ['', 'a b', 'x?y', 'é', 'a'.repeat(129)]) {
    assert.throws(() => w.halley.subscribe(bad, {}), /channel/, JSON.stringify(bad));
    assert.throws(() => w.halley.publish(bad, 'x'), /channel/, JSON.stringify(bad));
  }
  assert.equal(w.sources.length + w.fetches.length, 0);
});

test('publish posts text and turns refusals into errors', async () => {
  const cases = [
    // [answer, resolves with, or rejects with {status, retryAfter, message}]
    [response(201, { body: { id: 'e1-1', channel: 'demo/post-1', subscribers: 2 } }),
      { id: 'e1-1', channel: 'demo/post-1', subscribers: 2 }, null],
    [response(429, { body: { error: 'rate limited' }, headers: { 'Retry-After': '3' } }),
      null, { status: 429, retryAfter: 3, message: 'rate limited' }],
    [response(413, { body: { error: 'too large' } }), null, { status: 413, message: 'too large' }],
    [response(502, { body: 'Bad Gateway' }), null, { status: 502, message: 'HTTP 502' }],
  ];
  for (const [answer, value, failure] of cases) {
    const w = load();
    const result = w.halley.publish('demo/post-1', 'hi <b>', { event: 'comment' }).then(
      (v) => ({ value: v }), (err) => ({ err }));
    const call = w.lastFetch();
    assert.equal(call.url, `${BASE}pub/demo/post-1?event=comment`);
    assert.equal(call.opts.method, 'POST');
    assert.equal(call.opts.body, 'hi <b>');
    assert.equal(call.opts.headers['Content-Type'], 'text/plain;charset=UTF-8');
    call.resolve(answer);
    const outcome = await result;
    if (value) assert.deepEqual(outcome.value, value);
    else {
      for (const [key, want] of Object.entries(failure)) assert.equal(outcome.err[key], want, key);
    }
  }
});

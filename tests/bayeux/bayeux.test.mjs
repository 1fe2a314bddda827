// End-to-end: halley's /bayeux endpoint driven by the real CometD and Faye
// clients, with the server started from target/release/halley on port 0.
// Channels are unique per test, so tests share one server without crosstalk.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';

import { startServer } from './lib/server.mjs';
import {
  cometd, handshake, subscribe, unsubscribe, publish, disconnect,
  fayeClient, closeAll, inbox, rawBayeux, withTimeout,
} from './lib/clients.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await closeAll();
  await server?.stop();
});

async function cometdReady(opts) {
  const c = cometd(server.bayeux, opts);
  await handshake(c);
  return c;
}

/** An extension that records every non-meta message the server sends, before any listener filtering. */
function tap() {
  const seen = inbox();
  return {
    seen,
    incoming(m) {
      if (!m.channel.startsWith('/meta/')) seen.push(m);
      return m;
    },
  };
}

async function pub(channel, body, headers = {}) {
  const res = await fetch(`${server.base}/pub${channel}`, { method: 'POST', body, headers });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

test('CometD and Faye exchange messages through halley, both ways', async () => {
  const c = await cometdReady();
  const f = fayeClient(server.bayeux);
  const atFaye = inbox();
  const atCometd = inbox();
  await f.subscribe('/e2e/c2f', (data) => atFaye.push(data));
  await subscribe(c, '/e2e/f2c', (m) => atCometd.push(m.data));
  await publish(c, '/e2e/c2f', { from: 'cometd', n: 1 });
  await f.publish('/e2e/f2c', { from: 'faye', n: 2 });
  assert.deepEqual(await atFaye.count(1), [{ from: 'cometd', n: 1 }]);
  assert.deepEqual(await atCometd.count(1), [{ from: 'faye', n: 2 }]);
});

test('/* gets one level, /** every level below', async () => {
  const c = await cometdReady();
  const f = fayeClient(server.bayeux);
  const oneLevel = inbox();
  const anyDepth = inbox();
  await subscribe(c, '/wild/*', (m) => oneLevel.push(m.channel));
  await f.subscribe('/wild/**', (data) => anyDepth.push(data));
  const publisher = await cometdReady();
  for (const ch of ['/wild/a', '/wild/a/b', '/wild/a/b/c', '/other/a', '/wild/end']) {
    await publish(publisher, ch, ch);
  }
  const done = (xs) => xs.includes('/wild/end');
  assert.deepEqual(await anyDepth.until(done), ['/wild/a', '/wild/a/b', '/wild/a/b/c', '/wild/end']);
  assert.deepEqual(await oneLevel.until(done), ['/wild/a', '/wild/end']);
});

test('after unsubscribe the server stops sending', async () => {
  const t = tap();
  const c = cometd(server.bayeux, { extensions: [['tap', t]] });
  await handshake(c);
  const handle = await subscribe(c, '/unsub/a', () => {});
  await subscribe(c, '/unsub/marker', () => {});
  const publisher = await cometdReady();
  await publish(publisher, '/unsub/a', 'before');
  await t.seen.count(1);
  await unsubscribe(c, handle);
  await publish(publisher, '/unsub/a', 'after');
  await publish(publisher, '/unsub/marker', 'marker');
  const seen = await t.seen.until((xs) => xs.some((m) => m.data === 'marker'));
  assert.deepEqual(seen.map((m) => m.data), ['before', 'marker']);
});

test('disconnect ends the session; its clientId then gets 402 inside HTTP 200', async () => {
  const c = await cometdReady();
  const cid = c.getClientId();
  const reply = await disconnect(c);
  assert.equal(reply.successful, true);
  const { status, body } = await rawBayeux(server.bayeux, [
    { channel: '/meta/connect', clientId: cid, connectionType: 'long-polling', id: '9' },
  ]);
  assert.equal(status, 200);
  assert.equal(body[0].id, '9');
  assert.equal(body[0].successful, false);
  assert.equal(body[0].error, '402::session_unknown');
  assert.equal(body[0].advice.reconnect, 'handshake');

  const f = fayeClient(server.bayeux);
  await f.subscribe('/disc/x', () => {});
  const fid = f._dispatcher.clientId;
  await f.disconnect();
  const after = await rawBayeux(server.bayeux, [{ channel: '/disc/x', clientId: fid, data: 1 }]);
  assert.equal(after.body[0].error, '402::session_unknown');
});

test('CometD re-handshakes by itself after a forged clientId gets 402', async () => {
  let connects = 0;
  const forger = {
    outgoing(m) {
      // The second connect of the first session is the first one the server would hold.
      if (m.channel === '/meta/connect' && ++connects === 2) m.clientId = 'forged0123456789';
      return m;
    },
  };
  const c = cometd(server.bayeux, { extensions: [['forger', forger]] });
  const handshakes = inbox();
  const failures = inbox();
  c.addListener('/meta/handshake', (m) => handshakes.push(m));
  c.addListener('/meta/unsuccessful', (m) => failures.push(m));
  c.handshake();
  const [first, second] = await handshakes.count(2);
  assert.equal(first.successful, true);
  assert.equal(second.successful, true);
  assert.notEqual(first.clientId, second.clientId);
  assert.equal(failures.items[0].error, '402::session_unknown');
  // The new session works: a message published now arrives.
  const got = inbox();
  await subscribe(c, '/forged/cometd', (m) => got.push(m.data));
  await publish(c, '/forged/cometd', 'alive');
  assert.deepEqual(await got.count(1), ['alive']);
});

test('Faye re-handshakes and resubscribes by itself after a forged clientId gets 402', async () => {
  const f = fayeClient(server.bayeux);
  let connects = 0;
  const handshakes = inbox();
  f.addExtension({
    outgoing(m, callback) {
      if (m.channel === '/meta/connect' && ++connects === 2) m.clientId = 'forged0123456789';
      callback(m);
    },
    incoming(m, callback) {
      if (m.channel === '/meta/handshake' && m.successful) handshakes.push(m.clientId);
      callback(m);
    },
  });
  const got = inbox();
  await f.subscribe('/forged/faye', (data) => got.push(data));
  const ids = await handshakes.count(2);
  assert.notEqual(ids[0], ids[1]);
  // Faye resubscribes on its new session; give the resubscribe a round trip
  // by publishing until one message arrives.
  const c = await cometdReady();
  await withTimeout(
    (async () => {
      while (got.items.length === 0) {
        await publish(c, '/forged/faye', 'alive');
        await new Promise((r) => setTimeout(r, 100));
      }
    })(),
    10_000,
    'Faye receiving on its new session',
  );
  assert.equal(got.items[0], 'alive');
});

test('500 messages in one burst arrive complete and in order', async () => {
  const N = 500;
  const f = fayeClient(server.bayeux);
  const c = await cometdReady();
  const atFaye = inbox();
  const atCometd = inbox();
  await f.subscribe('/burst/x', (data) => atFaye.push(data.i));
  await subscribe(c, '/burst/x', (m) => atCometd.push(m.data.i));
  const publisher = await cometdReady();
  publisher.batch(() => {
    for (let i = 0; i < N; i++) publisher.publish('/burst/x', { i });
  });
  const want = Array.from({ length: N }, (_, i) => i);
  assert.deepEqual(await atFaye.count(N, 20_000), want);
  assert.deepEqual(await atCometd.count(N, 20_000), want);
});

test('HTTP POST /pub reaches Bayeux subscribers, text as a string and JSON as a value', async () => {
  const c = await cometdReady();
  const got = inbox();
  await subscribe(c, '/chat/room1', (m) => got.push(m));
  const text = await pub('/chat/room1', 'hello');
  const json = await pub('/chat/room1', '{"a":[1,2]}', { 'content-type': 'application/json' });
  const [m1, m2] = await got.count(2);
  assert.equal(m1.data, 'hello');
  assert.equal(m1.id, text.id);
  assert.deepEqual(m2.data, { a: [1, 2] });
  assert.equal(m2.id, json.id);
});

test('a Bayeux publish reaches SSE subscribers as JSON text, with the same id', async () => {
  const c = await cometdReady();
  const viaBayeux = inbox();
  await subscribe(c, '/chat/sse1', (m) => viaBayeux.push(m));
  const es = new EventSource(`${server.base}/sub/chat/sse1`); // Sends Accept: text/event-stream.
  try {
    await withTimeout(new Promise((resolve) => es.addEventListener('open', resolve, { once: true })), 5_000, 'SSE open');
    const viaSse = inbox();
    es.addEventListener('message', (e) => viaSse.push(e));
    const f = fayeClient(server.bayeux);
    await f.publish('/chat/sse1', { x: 1, s: 'é' });
    const [event] = await viaSse.count(1);
    assert.deepEqual(JSON.parse(event.data), { x: 1, s: 'é' });
    const [m] = await viaBayeux.count(1);
    assert.equal(event.lastEventId, m.id);
  } finally {
    es.close();
  }
});

test('resume with ext.halley.since: history after the id first, then live messages', async () => {
  const ids = [];
  for (const body of ['r1', 'r2', 'r3']) ids.push((await pub('/resume/a', body)).id);
  const c = await cometdReady();
  const got = inbox();
  await subscribe(c, '/resume/a', (m) => got.push(m.data), { ext: { halley: { since: ids[0] } } });
  await pub('/resume/a', 'r4');
  assert.deepEqual(await got.count(3), ['r2', 'r3', 'r4']);

  const all = inbox();
  const c2 = await cometdReady();
  await subscribe(c2, '/resume/a', (m) => all.push(m.data), { ext: { halley: { since: 'earliest' } } });
  assert.deepEqual(await all.count(4), ['r1', 'r2', 'r3', 'r4']);
});

test('the ack extension redelivers messages whose connect reply was lost', async () => {
  // Hides the first connect reply that carries messages, and its batch number,
  // as if the connection had dropped after the server wrote it: the
  // AckExtension then acknowledges only the previous batch on its next connect.
  const lossy = {
    state: 'armed',
    dropped: [],
    incoming(m) {
      if (this.state !== 'done' && m.channel === '/ack/x') {
        this.state = 'dropping';
        this.dropped.push(m.data);
        return null;
      }
      if (this.state === 'dropping' && m.channel === '/meta/connect') {
        this.state = 'done';
        if (m.ext) delete m.ext.ack;
      }
      return m;
    },
  };
  const c = cometd(server.bayeux, { ack: true, extensions: [['lossy', lossy]] });
  const hs = await handshake(c);
  assert.equal(hs.ext?.ack, true, 'the server announces ack support');
  const got = inbox();
  await subscribe(c, '/ack/x', (m) => got.push(m.data));
  const publisher = await cometdReady();
  publisher.batch(() => {
    for (const d of ['a1', 'a2', 'a3']) publisher.publish('/ack/x', d);
  });
  assert.deepEqual(await got.count(3), ['a1', 'a2', 'a3']);
  assert.ok(lossy.dropped.length > 0, 'a reply was dropped');
  assert.deepEqual(lossy.dropped, ['a1', 'a2', 'a3'].slice(0, lossy.dropped.length));
});

// At its defaults CometD now takes the WebSocket halley offers (websocket.test.mjs, which also
// blocks the upgrade to see it fall back); on long-polling it posts under /bayeux/handshake,
// /bayeux/connect, ..., which are all the one endpoint.
test('a CometD client on long-polling posts under /bayeux/', async () => {
  const c = cometd(server.bayeux);
  const reply = await withTimeout(handshake(c), 15_000, 'handshake on long-polling');
  assert.equal(reply.successful, true);
  assert.equal(c.getTransport().type, 'long-polling');
  const got = inbox();
  await subscribe(c, '/defaults/x', (m) => got.push(m.data));
  await publish(c, '/defaults/x', 'ok');
  assert.deepEqual(await got.count(1), ['ok']);
});

test('JSONP callback-polling and form-encoded message= are served', async () => {
  const hs = JSON.stringify([
    { channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['callback-polling'], id: '1' },
  ]);
  const res = await fetch(`${server.bayeux}?jsonp=_cometd_jsonp_0&message=${encodeURIComponent(hs)}`);
  assert.equal(res.status, 200);
  const text = await res.text();
  const m = /^_cometd_jsonp_0\((.*)\);?\s*$/s.exec(text);
  assert.ok(m, text);
  const [reply] = JSON.parse(m[1]);
  assert.equal(reply.successful, true);
  assert.ok(reply.supportedConnectionTypes.includes('callback-polling'));

  const form = await fetch(server.bayeux, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `message=${encodeURIComponent(hs)}`,
  });
  assert.equal(form.status, 200);
  const [formReply] = await form.json();
  assert.equal(formReply.successful, true);
  assert.match(formReply.clientId, /^[0-9a-f]{32}$/);
});

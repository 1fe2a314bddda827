// End-to-end tests that need server flags: a short --longpoll-timeout, to see
// a connect really held and released, and --publish-token, presented by a
// Bayeux client as ext.halley.token in its handshake.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer } from './lib/server.mjs';
import { cometd, handshake, subscribe, publish, closeAll, inbox, rawBayeux } from './lib/clients.mjs';

const TOKEN = 'e2e-token';
let server;
before(async () => {
  server = await startServer({ args: ['--longpoll-timeout', '2', '--publish-token', TOKEN] });
});
after(async () => {
  await closeAll();
  await server?.stop();
});

/** A raw long-polling session: handshake, subscribe, and the first (immediate) connect. */
async function rawSession(channel) {
  const hs = await rawBayeux(server.bayeux, [
    { channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'], id: '1' },
  ]);
  assert.equal(hs.body[0].advice.timeout, 2000, 'advice.timeout follows --longpoll-timeout');
  const clientId = hs.body[0].clientId;
  const sub = await rawBayeux(server.bayeux, [{ channel: '/meta/subscribe', clientId, subscription: channel, id: '2' }]);
  assert.equal(sub.body[0].successful, true);
  const connect = (id) =>
    rawBayeux(`${server.bayeux}/connect`, [{ channel: '/meta/connect', clientId, connectionType: 'long-polling', id }]);
  const first = Date.now();
  const r = await connect('3');
  assert.ok(Date.now() - first < 1000, 'the first connect is answered at once');
  assert.equal(r.body.at(-1).successful, true);
  return { clientId, connect };
}

test('a connect with nothing pending is held until the advised timeout', async () => {
  const { connect } = await rawSession('/held/a');
  const start = Date.now();
  const r = await connect('4');
  const held = Date.now() - start;
  assert.ok(held >= 1800 && held < 4000, `held ${held} ms`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.map((m) => m.channel), ['/meta/connect']);
  assert.equal(r.body[0].successful, true);
});

test('a publish releases a held connect at once', async () => {
  const { connect } = await rawSession('/held/b');
  const start = Date.now();
  const pending = connect('4');
  setTimeout(() => {
    fetch(`${server.base}/pub/held/b`, { method: 'POST', body: 'wake', headers: { authorization: `Bearer ${TOKEN}` } });
  }, 300);
  const r = await pending;
  const took = Date.now() - start;
  assert.ok(took >= 250 && took < 1500, `answered after ${took} ms`);
  assert.deepEqual(r.body.map((m) => m.channel), ['/held/b', '/meta/connect']);
  assert.equal(r.body[0].data, 'wake');
});

test('an idle CometD client does not spin: about one connect per timeout', async () => {
  const c = cometd(server.bayeux);
  const connects = inbox();
  c.addListener('/meta/connect', (m) => connects.push(m));
  await handshake(c);
  await new Promise((r) => setTimeout(r, 3000));
  // The immediate first connect, then one held for 2 s: never a busy loop.
  assert.ok(connects.items.length >= 2 && connects.items.length <= 3, `${connects.items.length} connects`);
  assert.ok(connects.items.every((m) => m.successful));
});

test('publishing needs the token in the handshake ext; subscribing does not', async () => {
  const reader = cometd(server.bayeux);
  await handshake(reader);
  const got = inbox();
  await subscribe(reader, '/token/a', (m) => got.push(m.data));
  await assert.rejects(publish(reader, '/token/a', 'no'), /403:\/token\/a:publish_forbidden/);

  const writer = cometd(server.bayeux);
  await handshake(writer, { ext: { halley: { token: TOKEN } } });
  await publish(writer, '/token/a', 'yes');
  assert.deepEqual(await got.count(1), ['yes']);

  const wrong = cometd(server.bayeux);
  await assert.rejects(handshake(wrong, { ext: { halley: { token: 'nope' } } }), /403::handshake_denied/);
});

// End-to-end: Bayeux over WebSocket at /bayeux with the real CometD and Faye
// clients left at their defaults, which negotiate `websocket` from the
// handshake and use it; the behaviours of the long-polling tests hold on it
// (delivery both ways, resume with ext.halley.since, the ack extension); and
// where the upgrade is refused by something in between, both clients fall
// back to long-polling by themselves.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import faye from 'faye';

import { startServer } from './lib/server.mjs';
import {
  cometd, handshake, subscribe, publish, closeAll, inbox, withTimeout,
} from './lib/clients.mjs';

/** Faye clients at their defaults (WebSocket first), disconnected before the server stops. */
const fayeClients = new Set();
function fayeDefault(url) {
  const f = new faye.Client(url, { timeout: 60, retry: 1 });
  fayeClients.add(f);
  return f;
}

let server;
before(async () => {
  server = await startServer();
});
// Clients first, while the server can still answer their disconnects: a client whose server is
// gone keeps retrying, and the test process never exits.
after(async () => {
  await Promise.all([...fayeClients].map((f) => withTimeout(Promise.resolve(f.disconnect()), 2_000, 'faye').catch(() => {})));
  await closeAll();
  await server?.stop();
});

/**
 * The connection type Faye settled on. Faye handshakes over HTTP and then tries each transport the
 * server offers, in its own order, asynchronously; by the time a subscribe has been answered and a
 * message has come back, it has chosen.
 */
const fayeTransport = (f) => f._dispatcher.connectionType;

async function pub(channel, body, headers = {}) {
  const res = await fetch(`${server.base}/pub${channel}`, { method: 'POST', body, headers });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

async function wsStats() {
  const res = await fetch(`${server.base}/stats`);
  return (await res.json()).connections.websocket;
}

test('CometD and Faye at their defaults negotiate WebSocket and exchange messages', async () => {
  const c = cometd(server.bayeux, { websocket: true });
  const reply = await withTimeout(handshake(c), 10_000, 'handshake');
  assert.deepEqual(reply.supportedConnectionTypes, ['websocket', 'long-polling', 'callback-polling']);
  assert.equal(c.getTransport().type, 'websocket');
  const f = fayeDefault(server.bayeux);

  const atFaye = inbox();
  const atCometd = inbox();
  await f.subscribe('/wse2e/c2f', (data) => atFaye.push(data));
  await subscribe(c, '/wse2e/f2c', (m) => atCometd.push(m.data));
  await publish(c, '/wse2e/c2f', { from: 'cometd', n: 1 });
  await f.publish('/wse2e/f2c', { from: 'faye', n: 2 });
  await pub('/wse2e/f2c', 'from http');
  assert.deepEqual(await atFaye.count(1), [{ from: 'cometd', n: 1 }]);
  assert.deepEqual(await atCometd.count(2), [{ from: 'faye', n: 2 }, 'from http']);
  assert.equal(fayeTransport(f), 'websocket');
  assert.equal(c.getTransport().type, 'websocket');
  assert.ok((await wsStats()) >= 2, 'both hold a WebSocket');
});

test('500 messages in one burst arrive over WebSocket complete and in order', async () => {
  const c = cometd(server.bayeux, { websocket: true });
  await handshake(c);
  assert.equal(c.getTransport().type, 'websocket');
  const got = inbox();
  await subscribe(c, '/wsburst/x', (m) => got.push(m.data));
  const publisher = cometd(server.bayeux, { websocket: true });
  await handshake(publisher);
  publisher.batch(() => {
    for (let i = 0; i < 500; i++) publisher.publish('/wsburst/x', i);
  });
  const all = await got.count(500, 20_000);
  assert.deepEqual(all, [...Array(500).keys()]);
});

test('resume with ext.halley.since over WebSocket: history first, then live messages', async () => {
  const ids = [];
  for (const body of ['r1', 'r2', 'r3']) ids.push((await pub('/wsresume/a', body)).id);
  const c = cometd(server.bayeux, { websocket: true });
  await handshake(c);
  assert.equal(c.getTransport().type, 'websocket');
  const got = inbox();
  await subscribe(c, '/wsresume/a', (m) => got.push(m.data), { ext: { halley: { since: ids[0] } } });
  await pub('/wsresume/a', 'r4');
  assert.deepEqual(await got.count(3), ['r2', 'r3', 'r4']);
});

test('the ack extension redelivers over WebSocket what a lost connect reply carried', async () => {
  const lossy = {
    state: 'armed',
    dropped: [],
    incoming(m) {
      if (this.state !== 'done' && m.channel === '/wsack/x') {
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
  const c = cometd(server.bayeux, { websocket: true, ack: true, extensions: [['lossy', lossy]] });
  const hs = await handshake(c);
  assert.equal(hs.ext?.ack, true);
  assert.equal(c.getTransport().type, 'websocket');
  const got = inbox();
  await subscribe(c, '/wsack/x', (m) => got.push(m.data));
  const publisher = cometd(server.bayeux);
  await handshake(publisher);
  publisher.batch(() => {
    for (const d of ['a1', 'a2', 'a3']) publisher.publish('/wsack/x', d);
  });
  assert.deepEqual(await got.count(3), ['a1', 'a2', 'a3']);
  assert.ok(lossy.dropped.length > 0, 'a reply was dropped');
});

/** A TCP proxy to the server that answers every WebSocket upgrade with 403, as some proxies do. */
async function upgradeBlockingProxy(port) {
  const sockets = new Set();
  const proxy = net.createServer((client) => {
    sockets.add(client);
    let upstream = null;
    client.on('data', (chunk) => {
      if (!upstream && /\r\nupgrade: *websocket/i.test(chunk.toString('latin1'))) {
        client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      if (!upstream) {
        upstream = net.connect(port, '127.0.0.1');
        sockets.add(upstream);
        upstream.on('data', (d) => client.write(d));
        upstream.on('close', () => client.destroy());
        upstream.on('error', () => client.destroy());
      }
      upstream.write(chunk);
    });
    client.on('close', () => upstream?.destroy());
    client.on('error', () => upstream?.destroy());
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${proxy.address().port}/bayeux`,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => proxy.close(resolve));
    },
  };
}

test('where WebSocket is blocked, CometD and Faye fall back to long-polling by themselves', async () => {
  const proxy = await upgradeBlockingProxy(server.port);
  let f = null;
  try {
    const c = cometd(proxy.url, { websocket: true });
    const reply = await withTimeout(handshake(c), 15_000, 'handshake through the proxy');
    assert.equal(reply.successful, true);
    assert.equal(c.getTransport().type, 'long-polling');
    f = fayeDefault(proxy.url);

    const atFaye = inbox();
    const atCometd = inbox();
    await f.subscribe('/wsblocked/c2f', (data) => atFaye.push(data));
    await subscribe(c, '/wsblocked/f2c', (m) => atCometd.push(m.data));
    await publish(c, '/wsblocked/c2f', 'to faye');
    await f.publish('/wsblocked/f2c', 'to cometd');
    assert.deepEqual(await atFaye.count(1), ['to faye']);
    assert.deepEqual(await atCometd.count(1), ['to cometd']);
    assert.equal(fayeTransport(f), 'long-polling');
    assert.equal(c.getTransport().type, 'long-polling');
  } finally {
    // Through the proxy while it is up: a Faye client whose server vanished retries forever.
    if (f) {
      fayeClients.delete(f);
      await withTimeout(Promise.resolve(f.disconnect()), 2_000, 'faye').catch(() => {});
    }
    await closeAll();
    await proxy.close();
  }
});

test('with WebSocket disabled in the clients, they use long-polling', async () => {
  const c = cometd(server.bayeux);
  await handshake(c);
  assert.equal(c.getTransport().type, 'long-polling');
  const f = fayeDefault(server.bayeux);
  f.disable('websocket');
  const got = inbox();
  await f.subscribe('/wsoff/x', (data) => got.push(data));
  await publish(c, '/wsoff/x', 'ok');
  assert.deepEqual(await got.count(1), ['ok']);
  assert.equal(fayeTransport(f), 'long-polling');
});

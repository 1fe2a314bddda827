// End-to-end with the npm `ws` client, a WebSocket implementation other than
// ours: `/ws` carrying several channels (subscribe, replay, live messages,
// publish, errors, resume on a new socket) and `/sub/{channel}` upgraded to a
// WebSocket, each message one text frame holding the stream's JSON object.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

import { startServer } from './lib/server.mjs';
import { inbox, withTimeout } from './lib/clients.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** Opens a WebSocket to `path`; every JSON frame but heartbeats goes into its inbox. */
async function open(path) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}${path}`);
  const frames = inbox();
  ws.on('message', (data, isBinary) => {
    assert.equal(isBinary, false, 'the server sends text frames');
    const m = JSON.parse(data.toString());
    if (!m.heartbeat) frames.push(m);
  });
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }), 5_000, `open ${path}`);
  return { ws, frames, send: (command) => ws.send(JSON.stringify(command)) };
}

async function pub(channel, body) {
  const res = await fetch(`${server.base}/pub/${channel}`, { method: 'POST', body });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()).id;
}

const closed = (ws) => new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));

test('/ws carries several channels: replay, live messages, publish and errors', async () => {
  const old = await pub('wsc/a', 'a0');
  const c = await open('/ws');
  c.send({ subscribe: 'wsc/a', since: 'earliest' });
  c.send({ subscribe: 'wsc/b' });
  c.send({ subscribe: 'not a channel' });
  const first = await c.frames.count(4);
  assert.deepEqual(first[0], { subscribed: 'wsc/a', cursor: old.replace(/-\d+$/, '-0') });
  assert.deepEqual(first[1], { id: old, channel: 'wsc/a', data: 'a0' });
  assert.equal(first[2].subscribed, 'wsc/b');
  assert.equal(first[3].channel, 'not a channel');
  assert.match(first[3].error, /channel names/);

  const b1 = await pub('wsc/b', 'b1');
  c.send({ publish: 'demo/wsc', data: 'open channels take anonymous publishes' });
  const more = await c.frames.count(6);
  assert.deepEqual(more[4], { id: b1, channel: 'wsc/b', data: 'b1' });
  assert.equal(more[5].published.channel, 'demo/wsc');
  c.ws.close(1000);
  assert.equal((await closed(c.ws)).code, 1000);
});

test('a new socket resumes each channel from its last id', async () => {
  const c = await open('/ws');
  c.send({ subscribe: 'wsc/r1' });
  c.send({ subscribe: 'wsc/r2' });
  const [s1, s2] = await c.frames.count(2);
  c.ws.terminate();
  const r1 = await pub('wsc/r1', 'while away 1');
  const r2 = await pub('wsc/r2', 'while away 2');
  const d = await open('/ws');
  d.send({ subscribe: 'wsc/r1', since: s1.cursor });
  d.send({ subscribe: 'wsc/r2', since: s2.cursor });
  const got = await d.frames.count(4);
  assert.deepEqual(got.filter((m) => m.id).map((m) => [m.channel, m.id]), [['wsc/r1', r1], ['wsc/r2', r2]]);
  d.ws.close();
});

test('/sub/{channel} upgraded: the stream objects, one per text frame, from the cursor asked for', async () => {
  const id1 = await pub('wsc/sub', 's1');
  const s = await open('/sub/wsc/sub?since=earliest');
  const id2 = await pub('wsc/sub', 's2');
  assert.deepEqual(await s.frames.count(2), [
    { id: id1, channel: 'wsc/sub', data: 's1' },
    { id: id2, channel: 'wsc/sub', data: 's2' },
  ]);
  const ended = closed(s.ws);
  const res = await fetch(`${server.base}/pub/wsc/sub`, { method: 'DELETE' });
  assert.equal(res.status, 204);
  assert.equal((await ended).code, 1000);
  assert.deepEqual(s.frames.items.at(-1), { deleted: true, channel: 'wsc/sub' });
});

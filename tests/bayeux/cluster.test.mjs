// End-to-end on a cluster: the real CometD and Faye clients on two halley
// nodes that share one redis-server (started here on a free port, no
// persistence, killed after). What one client publishes on one node reaches
// the other's subscription on the other node with the same id, and a CometD
// subscription resumed with ext.halley.since on the other node gets the
// history first, then live messages, each once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startServer } from './lib/server.mjs';
import { cometd, handshake, subscribe, publish, fayeClient, closeAll, inbox, withTimeout } from './lib/clients.mjs';

let redis;
let a;
let b;

/** A port the kernel says is free now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on `port`, within `ms`. */
async function waitListening(port, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'halley-bayeux-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  await waitListening(port, 5_000);
  return {
    url: `redis://127.0.0.1:${port}`,
    stop() {
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

before(async () => {
  redis = await startRedis();
  a = await startServer({ args: ['--redis', redis.url] });
  b = await startServer({ args: ['--redis', redis.url] });
  for (const node of [a, b]) {
    await withTimeout(
      (async () => {
        while ((await fetch(`${node.base}/healthz`)).status !== 200) await new Promise((r) => setTimeout(r, 20));
      })(),
      5_000,
      'node connected to Redis',
    );
  }
});

after(async () => {
  await closeAll();
  await a?.stop();
  await b?.stop();
  redis?.stop();
});

test('CometD on one node and Faye on another exchange messages through Redis, with the same ids', async () => {
  const c = cometd(a.bayeux);
  await handshake(c);
  const atA = inbox();
  await subscribe(c, '/cluster/room', (m) => atA.push(m));

  const f = fayeClient(b.bayeux);
  const atB = inbox();
  await withTimeout(f.subscribe('/cluster/room', (data) => atB.push(data)), 5_000, 'faye subscribe');

  // Faye publishes on B: CometD hears it on A.
  await withTimeout(f.publish('/cluster/room', { from: 'faye' }), 5_000, 'faye publish');
  const [first] = await atA.count(1);
  assert.deepEqual(first.data, { from: 'faye' });
  assert.match(first.id, /^[0-9a-f]{12}-1$/);
  assert.deepEqual(await atB.count(1), [{ from: 'faye' }]);

  // CometD publishes on A, and an HTTP publish on A too: Faye hears both on B.
  await publish(c, '/cluster/room', { from: 'cometd' });
  const res = await fetch(`${a.base}/pub/cluster/room`, { method: 'POST', body: 'plain', headers: { 'Content-Type': 'text/plain' } });
  assert.equal(res.status, 201);
  const { id } = await res.json();
  assert.deepEqual(await atB.count(3), [{ from: 'faye' }, { from: 'cometd' }, 'plain']);
  const atAll = await atA.count(3);
  assert.deepEqual(atAll.map((m) => m.data), [{ from: 'faye' }, { from: 'cometd' }, 'plain']);
  assert.equal(atAll[2].id, id, 'every node gives a message the id its publisher heard');
});

test('a CometD subscription resumed on another node gets the history, then live messages, once each', async () => {
  const ids = [];
  for (const n of [1, 2, 3, 4]) {
    const res = await fetch(`${a.base}/pub/cluster/resume`, { method: 'POST', body: `m${n}` });
    ids.push((await res.json()).id);
  }
  const c = cometd(b.bayeux);
  await handshake(c);
  const got = inbox();
  await subscribe(c, '/cluster/resume', (m) => got.push(m.data), { ext: { halley: { since: ids[1] } } });
  await fetch(`${a.base}/pub/cluster/resume`, { method: 'POST', body: 'm5' });
  assert.deepEqual(await got.count(3), ['m3', 'm4', 'm5']);
  // Nothing more: no message twice.
  await fetch(`${a.base}/pub/cluster/resume`, { method: 'POST', body: 'm6' });
  assert.deepEqual(await got.count(4), ['m3', 'm4', 'm5', 'm6']);
});

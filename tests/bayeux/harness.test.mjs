// Tests of the harness itself, runnable before the server speaks Bayeux: the
// clients install and load under this Node, and startServer finds the port
// line, reports a bad start with the server's stderr, and stops the process.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startServer } from './lib/server.mjs';
import { cometd, fayeClient, closeAll, inbox } from './lib/clients.mjs';

const fake = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/fake-halley.mjs');

test('the harness reads the port line, reaches the server and stops it', async () => {
  const server = await startServer({ command: [process.execPath, fake] });
  assert.ok(server.port > 0);
  assert.equal(server.bayeux, `http://127.0.0.1:${server.port}/bayeux`);
  const res = await fetch(`${server.base}/healthz`);
  assert.equal(await res.text(), 'ok');
  assert.deepEqual(await server.stop(), { code: 0, signal: null });
});

test('a wrong first line, an early exit and a missing binary are reported', async () => {
  const cases = [
    [[process.execPath, fake, '--first-line', 'hello'], /unexpected first line on stdout: "hello"/],
    [[process.execPath, fake, '--exit-early'], /exited \(3\) before listening[\s\S]*refusing to start/],
    [['/nonexistent/halley'], /ENOENT/],
  ];
  for (const [command, want] of cases) {
    await assert.rejects(startServer({ command }), want);
  }
});

test('a server that never prints its line times out', async () => {
  const silent = [process.execPath, '-e', 'setTimeout(() => {}, 60000)'];
  await assert.rejects(startServer({ command: silent, timeoutMs: 300 }), /no "listening on" line within 300 ms/);
});

test('the CometD and Faye clients load under this Node', async () => {
  const c = cometd('http://127.0.0.1:9/bayeux', { ack: true });
  assert.equal(typeof c.handshake, 'function');
  assert.deepEqual(c.getTransportTypes(), ['long-polling']);
  const f = fayeClient('http://127.0.0.1:9/bayeux');
  assert.equal(typeof f.subscribe, 'function');
  await closeAll();
});

test('inbox waits for messages and says what it got on timeout', async () => {
  const box = inbox();
  setTimeout(() => box.push(1), 10);
  setTimeout(() => box.push(2), 20);
  assert.deepEqual(await box.count(2, 1000), [1, 2]);
  await assert.rejects(box.count(3, 50), /got \[1,2\]/);
});

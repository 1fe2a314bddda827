// The demo page on halley.connect(): one WebSocket to /ws in headless Chromium. A cut connection
// (the test proxy) catches up with no loss and no duplicate; one page follows more channels than the
// browser's six connections per server would allow over EventSource; and a proxy that refuses
// WebSocket upgrades makes the page fall back to EventSource by itself.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('./harness');

let browser;

before(async () => {
  browser = await h.launchBrowser();
});

after(async () => {
  await browser?.close();
});

async function connections(baseUrl) {
  const res = await fetch(`${baseUrl}/stats`);
  return (await res.json()).connections;
}

test('the demo runs on one WebSocket, and a cut one catches up with no loss and no duplicate', async () => {
  const server = await h.startServer();
  const proxy = await h.startProxy(server.port);
  try {
    const page = await h.openDemo(browser, proxy.url);
    await h.waitForState(page, ['live']);
    assert.equal(await page.$eval('#conn-state', (e) => e.dataset.transport), 'websocket');
    const conns = await connections(server.url);
    assert.equal(conns.websocket, 1, JSON.stringify(conns));
    assert.equal(conns.sse, 0, JSON.stringify(conns));

    const expected = [];
    for (let i = 1; i <= 2; i++) {
      const text = `before the cut ${i}`;
      await h.postComment(page, 'Ada', text);
      await h.waitForComment(page, text);
      expected.push(text);
    }
    proxy.cut();
    await h.waitForState(page, ['reconnecting']);
    for (let i = 1; i <= 5; i++) {
      const text = `while cut off ${i}`;
      await h.publish(server.url, h.comment('Grace', text));
      expected.push(text);
    }
    proxy.restore();
    await h.waitForState(page, ['live'], 20000);
    expected.push(await h.flush(server.url, [page]));
    assert.deepEqual(await h.commentTexts(page), expected);
    assert.equal(await page.locator('#comments li.gap').count(), 0, 'a resumed cursor is no gap');
    assert.deepEqual(page.errors, []);
    await page.close();
  } finally {
    await proxy.close();
    await server.stop();
  }
});

test('one page follows ten channels on one connection', async () => {
  const server = await h.startServer();
  try {
    const page = await h.openDemo(browser, server.url);
    const channels = Array.from({ length: 10 }, (_, i) => `demo/many-${i}`);
    await page.evaluate((chs) => {
      window.got = [];
      window.conn = halley.connect();
      for (const ch of chs) {
        window.conn.subscribe(ch, { onMessage: (m) => window.got.push(m.channel + ' ' + m.data) });
      }
    }, channels);
    // The demo's own socket and this one; every channel subscribed before anything is published.
    await page.waitForFunction(async (n) => {
      const res = await fetch('/stats');
      return (await res.json()).connections.websocket === n;
    }, 2);
    for (const ch of channels) {
      await page.waitForFunction(async (c) => {
        const res = await fetch(`/pub/${c}`);
        return res.ok && (await res.json()).subscribers === 1;
      }, ch);
    }
    for (const ch of channels) await h.publish(server.url, 'hello', ch);
    await page.waitForFunction((n) => window.got.length >= n, channels.length);
    assert.deepEqual((await page.evaluate(() => window.got)).sort(), channels.map((c) => `${c} hello`).sort());
    const conns = await connections(server.url);
    assert.equal(conns.sse + conns.longpoll, 0, JSON.stringify(conns));
    await page.close();
  } finally {
    await server.stop();
  }
});

/** A TCP proxy that answers WebSocket upgrades with 403 and passes everything else. */
async function refusingUpgrades(targetPort) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    sockets.add(client);
    let upstream = null;
    client.on('data', (chunk) => {
      if (!upstream && /\r\nupgrade: *websocket/i.test(chunk.toString('latin1'))) {
        client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      if (!upstream) {
        upstream = net.connect(targetPort, '127.0.0.1');
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
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

test('where WebSocket upgrades are refused, the page falls back to EventSource', async () => {
  const server = await h.startServer();
  const proxy = await refusingUpgrades(server.port);
  try {
    const earlier = 'published before the page opened';
    await h.publish(server.url, h.comment('Ada', earlier));
    const page = await browser.newPage();
    await page.goto(proxy.url);
    await page.waitForFunction(() => document.getElementById('conn-state').dataset.transport === 'sse', null, { timeout: 20000 });
    await h.waitForState(page, ['live']);
    await h.waitForComment(page, earlier);
    const text = 'after the fallback';
    await h.publish(server.url, h.comment('Ada', text));
    await h.waitForComment(page, text);
    assert.deepEqual(await h.commentTexts(page), [earlier, text]);
    await page.close();
  } finally {
    await proxy.close();
    await server.stop();
  }
});

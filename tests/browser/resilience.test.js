// Delivery survives the network: a cut connection catches up with no loss and no duplicate on both
// transports, a proxy that buffers the event stream makes the client fall back to long-polling, and
// after a server restart the page shows the gap instead of silently missing comments.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

let browser;

before(async () => {
  browser = await h.launchBrowser();
});

after(async () => {
  await browser?.close();
});

for (const [query, connected] of [['', 'live'], ['?transport=longpoll', 'fallback']]) {
  test(`a page cut off catches up with no loss and no duplicate (${connected})`, async () => {
    const server = await h.startServer();
    const proxy = await h.startProxy(server.port);
    try {
      const page = await h.openDemo(browser, proxy.url, query);
      await h.waitForState(page, [connected]);
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

      await h.waitForState(page, [connected], 20000);
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
}

// EventSource opens on the response headers, so a proxy that holds everything is caught by the open
// timeout and one that passes the headers by the client's check of the channel's record. The page is
// asked for EventSource: by default it would use one WebSocket, which this proxy does not buffer.
for (const mode of ['all', 'body']) {
  test(`a proxy that buffers the event stream (${mode}) makes the client fall back to long-polling`, async () => {
    const server = await h.startServer();
    const proxy = await h.startProxy(server.port, { bufferSse: mode });
    try {
      const earlier = `published before the page opened ${mode}`;
      await h.publish(server.url, h.comment('Ada', earlier));
      const page = await browser.newPage();
      await page.goto(`${proxy.url}/?transport=sse`);
      await h.waitForState(page, ['fallback'], 20000);
      await h.waitForComment(page, earlier, 5000);
      const text = `through a buffering proxy ${mode}`;
      await h.publish(server.url, h.comment('Ada', text));
      await h.waitForComment(page, text, 5000);
      assert.deepEqual(await h.commentTexts(page), [earlier, text]);
      await page.close();
    } finally {
      await proxy.close();
      await server.stop();
    }
  });
}

for (const [query, connected] of [['', 'live'], ['?transport=longpoll', 'fallback']]) {
  test(`after a server restart the page shows the gap once, then goes on (${connected})`, async () => {
    let server = await h.startServer();
    const port = server.port;
    try {
      const page = await h.openDemo(browser, server.url, query);
      await h.postComment(page, 'Ada', 'before the restart');
      await h.waitForComment(page, 'before the restart');
      await server.stop();
      await h.waitForState(page, ['reconnecting']);
      server = await h.startServer({ port });

      await page.locator('#comments li.gap').waitFor({ timeout: 20000 });
      await h.waitForState(page, [connected]);
      const text = 'after the restart';
      await h.postComment(page, 'Grace', text);
      await h.waitForComment(page, text, 5000);
      const items = await page.$$eval('#comments > li', (els) => els.map((e) => e.className));
      assert.deepEqual(items, ['comment', 'gap', 'comment'], 'the gap sits between the two comments');
      await page.close();
    } finally {
      await server.stop();
    }
  });
}

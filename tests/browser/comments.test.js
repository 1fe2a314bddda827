// The comment thread works: live delivery between pages, history on reload, and the same over
// long-polling, whether the page forces it or the browser has no EventSource.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

let server;
let browser;

h.shareServerAndBrowser((s, b) => {
  server = s;
  browser = b;
});

// Each case gets its own channel-wide marker texts, so cases can share one server.
async function liveBetweenTwoPages(query, wantState) {
  const a = await h.openDemo(browser, server.url, query);
  const b = await h.openDemo(browser, server.url, query);
  assert.equal(await a.$eval('#conn-state', (e) => e.dataset.state), wantState);
  const text = `Hello from page A ${query} ${Date.now()}`;
  // Both clocks are the browser's: from the form's submit in A to the comment's insertion in B, so
  // the time the test driver takes to click does not count.
  await a.evaluate(() => {
    document.getElementById('comment-form').addEventListener('submit', () => {
      window.submittedAt = Date.now();
    }, { capture: true });
  });
  await b.evaluate((t) => {
    new MutationObserver(() => {
      const texts = [...document.querySelectorAll('#comments .comment-text')];
      if (!window.arrivedAt && texts.some((e) => e.textContent === t)) window.arrivedAt = Date.now();
    }).observe(document.getElementById('comments'), { childList: true, subtree: true });
  }, text);
  await h.postComment(a, 'Ada', text);
  await h.waitForComment(b, text, 5000);
  const elapsed = (await b.evaluate(() => window.arrivedAt)) - (await a.evaluate(() => window.submittedAt));
  assert.ok(elapsed < 1000, `the comment took ${elapsed} ms to reach the other page`);
  await h.flush(server.url, [a, b]);
  for (const page of [a, b]) {
    const texts = await h.commentTexts(page);
    assert.equal(texts.filter((t) => t === text).length, 1, 'the comment appears exactly once');
    assert.deepEqual(page.errors, []);
  }
  await a.close();
  await b.close();
}

test('a comment posted in one page appears in another within a second, once', async () => {
  await liveBetweenTwoPages('', 'live');
});

test('the same over long-polling when the page forces it', async () => {
  await liveBetweenTwoPages('?transport=longpoll', 'fallback');
});

test('a reloaded page shows the earlier comments in order, once each', async () => {
  const page = await h.openDemo(browser, server.url);
  const texts = ['first of three', 'second of three', 'third of three'];
  for (const text of texts) {
    await h.postComment(page, 'Grace', text);
    await h.waitForComment(page, text);
  }
  const before = await h.commentTexts(page);
  for (const query of ['', '?transport=longpoll']) {
    await page.goto(`${server.url}/${query}`);
    await h.waitForState(page, ['live', 'fallback']);
    const marker = await h.flush(server.url, [page]);
    const after = await h.commentTexts(page);
    assert.deepEqual(after, [...before, marker], `history after reload ${query}`);
    before.push(marker);
  }
  await page.close();
});

test('a browser without WebSocket or EventSource falls back to long-polling', async () => {
  const page = await browser.newPage();
  await page.addInitScript(() => {
    delete window.WebSocket;
    delete window.EventSource;
  });
  await page.goto(server.url);
  await h.waitForState(page, ['fallback']);
  const text = `no EventSource here ${Date.now()}`;
  await h.publish(server.url, h.comment('Linus', text));
  await h.waitForComment(page, text, 5000);
  await page.close();
});

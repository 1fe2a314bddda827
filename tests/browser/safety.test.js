// Open publishing is safe to show and safe to offer: markup in a comment is text and runs nothing, and
// a page that posts too fast is refused with 429 and tells its reader so.

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

test('markup in a comment is shown as text and runs nothing', async () => {
  const page = await h.openDemo(browser, server.url);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const attacks = [
    '<script>window.pwned = "script"; alert(1)</script>',
    '<img src=x onerror="window.pwned = \'img\'; alert(2)">',
    '<svg onload="window.pwned = \'svg\'"></svg><a href="javascript:alert(3)">click</a>',
  ];
  for (const text of attacks) await h.postComment(page, '<b onmouseover="alert(4)">Mallory</b>', text);
  // The same markup published with curl rather than the form, as bare text instead of comment JSON.
  await h.publish(server.url, '<img src=y onerror="window.pwned = \'raw\'">');
  await h.flush(server.url, [page]);

  const texts = await h.commentTexts(page);
  for (const text of attacks) assert.equal(texts.filter((t) => t === text).length, 1, text);
  assert.ok(texts.includes('<img src=y onerror="window.pwned = \'raw\'">'));
  const names = await page.$$eval('#comments .comment-name', (els) => els.map((e) => e.textContent));
  assert.ok(names.includes('<b onmouseover="alert(4)">Mallory</b>'));
  const injected = await page.$$eval('#comments script, #comments img, #comments svg, #comments a, #comments b',
    (els) => els.length);
  assert.equal(injected, 0, 'no element came from a comment');
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  assert.deepEqual(dialogs, []);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a burst of comments from one page gets 429 and the page says so', async () => {
  const page = await h.openDemo(browser, server.url);
  const statuses = [];
  page.on('response', (res) => {
    if (res.request().method() === 'POST') statuses.push(res.status());
  });
  // Post as fast as the form allows until refused; the limit allows a burst of a handful.
  for (let i = 1; i <= 40 && !statuses.includes(429); i++) {
    const answered = page.waitForResponse((res) => res.request().method() === 'POST');
    await h.postComment(page, 'Eager', `burst ${i}`);
    await answered;
  }
  assert.ok(statuses.includes(429), `no 429 among ${statuses.join(' ')}`);
  assert.ok(statuses.indexOf(429) > 0, 'the first comments of the burst are accepted');
  // The button stays disabled for Retry-After (a second or more), and is disabled in the same task
  // that shows the message, so both are seen together.
  await page.waitForFunction(() => document.getElementById('form-status').dataset.kind === 'limited'
    && document.querySelector('#comment-form button').disabled);
  const status = await page.textContent('#form-status');
  assert.match(status, /too fast/i);
  assert.match(status, /429/);
  await page.close();
});

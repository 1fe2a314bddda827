// Writes target/demo-screenshot.png (desktop) and target/demo-screenshot-phone.png so a reviewer can
// see the page with a few comments without running anything.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./harness');

let server;
let browser;

h.shareServerAndBrowser((s, b) => {
  server = s;
  browser = b;
});

test('screenshots of the page with a few comments', async () => {
  const comments = [
    ['Ada', 'This is the first comment page I have seen update without a reload and without hammering the server. Lovely.'],
    ['Grace', 'Opened it in two windows: the comment showed up in the other one before I could switch tabs.'],
    ['Linus', 'Pulled the network cable for a minute; it reconnected and caught up with nothing missing.\nNice touch.'],
  ];
  for (const [name, text] of comments) await h.publish(server.url, h.comment(name, text));
  const target = path.join(h.REPO, 'target');
  fs.mkdirSync(target, { recursive: true });
  for (const [file, viewport] of [
    ['demo-screenshot.png', { width: 1000, height: 900 }],
    ['demo-screenshot-phone.png', { width: 390, height: 844 }],
  ]) {
    const page = await h.openDemo(browser, server.url);
    await page.setViewportSize(viewport);
    await h.waitForComment(page, comments[2][1]);
    await page.fill('#name', 'Margaret');
    await page.fill('#text', 'Does it work on a phone too?');
    await page.evaluate(() => document.querySelector('.comments').scrollIntoView());
    const out = path.join(target, file);
    await page.screenshot({ path: out, fullPage: true, animations: 'disabled' });
    assert.ok(fs.statSync(out).size > 10000, `${file} is written`);
    await page.close();
  }
});

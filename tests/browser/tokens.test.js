// halley.js with signed tokens (--token-secret), in Chromium against the real server: EventSource
// carries the token as the halley_token cookie on the page's own origin and as ?token= elsewhere,
// long-polling as Authorization: Bearer; when a token ends, a `token` function is asked for a fresh
// one and the subscription goes on without losing a message; a plain string token that ends is a
// failure reported through onError.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { createHmac } = require('node:crypto');
const h = require('./harness');

const SECRET = 'a-browser-secret-of-at-least-32-bytes';
// The server's leeway on exp (token::LEEWAY_SECS).
const LEEWAY = 5;

const b64url = (text) => Buffer.from(text).toString('base64url');

/** An HS256 token for `channel` that ends `secs` seconds from now (taken now, within the leeway). */
function mint(channel, secs) {
  const claims = { exp: Math.floor(Date.now() / 1000) + secs - LEEWAY, halley: { subscribe: [channel] } };
  const signed = `${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url(JSON.stringify(claims))}`;
  return `${signed}.${createHmac('sha256', SECRET).update(signed).digest('base64url')}`;
}

let browser;
let server;
before(async () => {
  browser = await h.launchBrowser();
  server = await h.startServer({ flags: ['--token-secret', SECRET] });
});
after(async () => {
  await server?.stop();
  await browser?.close();
});

/**
 * A page at `pageOrigin` that loaded halley.js from the server and subscribed to `channel` with
 * `how` ('function': a token function minting 3-second tokens; 'string': one such token), over
 * `transport` ('sse', 'longpoll', or 'connect' for halley.connect()'s WebSocket).
 */
async function subscribed(pageOrigin, channel, transport, how) {
  const page = await browser.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  const requests = [];
  page.on('request', (r) => { if (r.url().includes('/sub/')) requests.push({ url: r.url(), headers: r.headers() }); });
  // halley.connect()'s socket: a WebSocket cannot carry headers, so only its URL tells how.
  page.on('websocket', (ws) => requests.push({ url: ws.url(), headers: {} }));
  page.requests = requests;
  await page.exposeFunction('mintToken', () => mint(channel, 3));
  // Any page of the origin will do; a 404 keeps the demo's own subscription out of the way.
  await page.goto(`${pageOrigin}/no-such-page`);
  await page.addScriptTag({ url: `${server.url}/halley.js` });
  await page.evaluate(async ({ channel, transport, how, url }) => {
    window.got = [];
    window.errors = [];
    window.asked = 0;
    const fresh = () => { window.asked += 1; return window.mintToken(); };
    const token = how === 'function' ? fresh : await fresh();
    const onError = (e) => window.errors.push({ message: e.message, status: e.status });
    const opts = {
      // From the start of the channel, so a publish before the first connect is not missed.
      since: 'earliest',
      onMessage: (m) => window.got.push(m.data),
      onError,
    };
    window.sub = transport === 'connect'
      ? window.halley.connect({ url, token, onError }).subscribe(channel, opts)
      : window.halley.subscribe(channel, { url, transport, token, ...opts });
  }, { channel, transport, how, url: `${server.url}/` });
  return page;
}

/** Publishes `data` and waits until the page has it. */
async function deliver(page, channel, data) {
  await h.publish(server.url, data, channel);
  await page.waitForFunction((d) => window.got.includes(d), data);
}

const sameOrigin = () => server.url;
// Another origin for the same server: a page there cannot set the server's cookies.
const otherOrigin = () => server.url.replace('127.0.0.1', 'localhost');

for (const [transport, origin, carries] of [
  ['sse', sameOrigin, 'cookie'],
  ['sse', otherOrigin, 'query'],
  ['longpoll', sameOrigin, 'authorization'],
  // halley.connect(): one WebSocket to /ws, the token as a cookie or ?token= like EventSource.
  ['connect', sameOrigin, 'cookie'],
  ['connect', otherOrigin, 'query'],
]) {
  test(`a token function keeps a subscription going across token ends (${transport}, ${carries})`, async () => {
    const channel = `tok/${transport}-${carries}`;
    const page = await subscribed(origin(), channel, transport, 'function');
    await deliver(page, channel, 'first');
    // The 3-second token ends; the client is told, asks for a fresh one and reconnects.
    const ended = async () => (await (await fetch(`${server.url}/stats`)).json()).token_expired;
    const before = await ended();
    await page.waitForFunction(() => window.asked >= 2, null, { timeout: 10000 });
    assert.equal(await ended(), before + 1, 'the server ended the subscription for its token');
    await deliver(page, channel, 'after a fresh token');
    assert.deepEqual(await page.evaluate(() => window.got), ['first', 'after a fresh token']);
    assert.deepEqual(await page.evaluate(() => window.errors), []);
    const first = page.requests[0];
    const how = {
      cookie: () => !first.url.includes('token=') && !first.headers.authorization,
      query: () => first.url.includes('token=') && !first.headers.authorization,
      authorization: () => first.headers.authorization?.startsWith('Bearer ') && !first.url.includes('token='),
    };
    assert.ok(how[carries](), `${carries}: ${JSON.stringify(first)}`);
    assert.deepEqual(page.errors, []);
    await page.evaluate(() => window.sub.close());
    await page.close();
  });
}

test('a string token that ends is reported through onError', async () => {
  const channel = 'tok/string';
  const page = await subscribed(sameOrigin(), channel, 'longpoll', 'string');
  await deliver(page, channel, 'while valid');
  await page.waitForFunction(() => window.errors.length > 0, null, { timeout: 10000 });
  assert.deepEqual(await page.evaluate(() => window.errors), [{ message: 'token expired', status: 401 }]);
  await page.close();
});

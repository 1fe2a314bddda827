// Shared pieces of the browser tests: start the real halley binary on a free port, launch Debian's
// Chromium through playwright-core, publish from Node, and a TCP proxy the tests can cut.
//
// Tests never sleep to synchronise: they wait for a condition on the page, and to prove that nothing
// arrives twice they publish a marker message after the ones under test and wait for it, because the
// channel delivers in order.

'use strict';

const { spawn } = require('node:child_process');
const { before, after } = require('node:test');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const HALLEY_BIN = process.env.HALLEY_BIN || path.join(REPO, 'target', 'release', 'halley');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHANNEL = 'demo/post-1';
// Publishes from Node use the token, so only the page's own posts count against the open-publish rate
// limit.
const TOKEN = 'browser-test-token';
const STARTUP_TIMEOUT_MS = 10000;

/** Starts `halley --listen 127.0.0.1:PORT --publish-token TOKEN ...flags`; resolves once it listens. */
function startServer({ port = 0, flags = [] } = {}) {
  const args = ['--listen', `127.0.0.1:${port}`, '--publish-token', TOKEN, ...flags];
  const proc = spawn(HALLEY_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // A test file that dies half-way must not leave a server holding a port.
  const reap = () => proc.kill('SIGKILL');
  process.once('exit', reap);
  proc.once('exit', () => process.off('exit', reap));
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`halley did not report listening within ${STARTUP_TIMEOUT_MS} ms\n${stderr}`));
    }, STARTUP_TIMEOUT_MS);
    proc.on('error', (err) => { clearTimeout(timer); reject(err); });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`halley exited with ${code} before listening\n${stderr}`));
    });
    proc.stdout.on('data', (d) => {
      stdout += d;
      const m = stdout.match(/^listening on 127\.0\.0\.1:(\d+)$/m);
      if (!m) return;
      clearTimeout(timer);
      proc.stdout.removeAllListeners('data');
      proc.stdout.resume();
      const server = {
        port: Number(m[1]),
        url: `http://127.0.0.1:${m[1]}`,
        stderr: () => stderr,
        stop: () => stopProcess(proc),
      };
      resolve(server);
    });
  });
}

/** SIGTERM, and SIGKILL if the process is still there after a few seconds; resolves on exit. */
function stopProcess(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    proc.once('exit', () => { clearTimeout(timer); resolve(); });
    proc.kill('SIGTERM');
  });
}

/** A fresh headless Chromium with its own profile directory; `close()` removes both. */
async function launchBrowser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'halley-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 900, height: 900 },
  });
  context.setDefaultTimeout(15000);
  return {
    context,
    newPage: () => context.newPage(),
    close: async () => {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** The JSON text the demo page publishes for a comment. */
function comment(name, text) {
  return JSON.stringify({ name, text, at: new Date().toISOString() });
}

/** Publishes from Node with the token (not rate limited); resolves with the server's JSON answer. */
async function publish(baseUrl, data, channel = CHANNEL) {
  const res = await fetch(`${baseUrl}/pub/${channel}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'text/plain' },
    body: data,
  });
  if (res.status !== 201) throw new Error(`publish answered ${res.status}: ${await res.text()}`);
  return res.json();
}

/** Opens the demo page and waits until it is connected (live over SSE, or fallback over long-poll). */
async function openDemo(browser, baseUrl, query = '') {
  const page = await browser.newPage();
  page.on('pageerror', (err) => { page.errors.push(err); });
  page.errors = [];
  await page.goto(`${baseUrl}/${query}`);
  await waitForState(page, ['live', 'fallback']);
  return page;
}

async function waitForState(page, states, timeout) {
  await page.waitForFunction(
    (want) => want.includes(document.getElementById('conn-state').dataset.state),
    states,
    { timeout },
  );
}

/** The text of every comment on the page, in order. */
function commentTexts(page) {
  return page.$$eval('#comments li.comment .comment-text', (els) => els.map((e) => e.textContent));
}

/** Waits until the comment with this exact text is on the page. */
async function waitForComment(page, text, timeout) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#comments .comment-text')].some((e) => e.textContent === t),
    text,
    { timeout },
  );
}

/** Publishes a marker and waits for it: everything published before it has then been delivered. */
async function flush(baseUrl, pages) {
  const marker = `marker ${Math.random().toString(36).slice(2)}`;
  await publish(baseUrl, comment('marker', marker));
  for (const page of pages) await waitForComment(page, marker);
  return marker;
}

/** Fills in and submits the page's comment form. */
async function postComment(page, name, text) {
  await page.fill('#name', name);
  await page.fill('#text', text);
  await page.click('#comment-form button');
}

/**
 * A TCP proxy in front of `target`. `cut()` destroys every connection and refuses new ones until
 * `restore()`. `bufferSse` imitates a proxy that buffers responses: for requests with
 * `GET /sub/...transport=sse` it holds back the whole answer ('all') or everything after the headers ('body').
 */
async function startProxy(targetPort, { bufferSse = null } = {}) {
  const sockets = new Set();
  let down = false;
  const server = net.createServer((client) => {
    if (down) return client.destroy();
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    // A kept-alive connection may carry other requests first; an event stream is always its last.
    let holding = false;
    client.on('data', (chunk) => {
      // A subscription, not a page whose own URL asks for EventSource (`/?transport=sse`).
      holding ||= bufferSse && /GET \/sub\/\S*transport=sse/.test(chunk.toString('latin1'));
      upstream.write(chunk);
    });
    let headersToPass = bufferSse === 'body';
    upstream.on('data', (d) => {
      if (!holding) return client.write(d);
      if (!headersToPass) return;
      const end = d.indexOf('\r\n\r\n');
      client.write(end < 0 ? d : d.subarray(0, end + 4));
      headersToPass = end < 0;
    });
    const close = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    url: `http://127.0.0.1:${port}`,
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() { down = false; },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** One server and one browser shared by every case of a test file: started before the first case,
 *  stopped after the last; `use(server, browser)` hands them to the file. */
function shareServerAndBrowser(use) {
  let server;
  let browser;
  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    use(server, browser);
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });
}

module.exports = {
  shareServerAndBrowser, REPO, CHANNEL, TOKEN, startServer, launchBrowser, comment, publish, openDemo, waitForState,
  commentTexts, waitForComment, flush, postComment, startProxy,
};

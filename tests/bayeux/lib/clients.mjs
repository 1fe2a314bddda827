// The real clients, wrapped in promises: CometD's JavaScript client (npm
// `cometd`, run in Node through `cometd-nodejs-client`) and Faye's Node client.
// Every client made here is remembered so `closeAll` can disconnect it: a
// client left connected keeps retrying and the test process never exits.

import { adapt } from 'cometd-nodejs-client';
import { CometD, AckExtension } from 'cometd';
import faye from 'faye';

// Installs XMLHttpRequest (and WebSocket, from `ws`) on a global `window`;
// must run before the first `new CometD()`, which looks for window.WebSocket.
adapt();

const open = new Set();

/**
 * A CometD client for `url`. By default it speaks long-polling only, as a
 * browser does after its WebSocket attempt fails; `websocket: true` leaves the
 * client at its defaults, so it first tries a WebSocket upgrade and must fall
 * back by itself. `callback-polling` needs a DOM, so it is always removed.
 */
export function cometd(url, { websocket = false, ack = false, extensions = [] } = {}) {
  const c = new CometD();
  if (!websocket) c.unregisterTransport('websocket');
  c.unregisterTransport('callback-polling');
  // Extensions see incoming messages in registration order: one registered
  // here runs before the AckExtension, so it can hide a reply from it.
  for (const [name, ext] of extensions) c.registerExtension(name, ext);
  if (ack) c.registerExtension('ack', new AckExtension());
  c.configure({ url, logLevel: process.env.COMETD_LOG ?? 'warn' });
  open.add({ kind: 'cometd', c });
  return c;
}

const settle = (resolve, reject, what) => (reply) =>
  reply.successful ? resolve(reply) : reject(new Error(`${what} failed: ${JSON.stringify(reply)}`));

export const handshake = (c, props = {}) =>
  new Promise((resolve, reject) => c.handshake(props, settle(resolve, reject, 'handshake')));

/** Subscribes `listener` and resolves with the server's subscribe reply. */
export const subscribe = (c, channel, listener, props = {}) =>
  new Promise((resolve, reject) => {
    const handle = c.subscribe(channel, listener, props, (reply) =>
      reply.successful ? resolve(handle) : reject(new Error(`subscribe failed: ${JSON.stringify(reply)}`)),
    );
  });

export const unsubscribe = (c, handle) =>
  new Promise((resolve, reject) => c.unsubscribe(handle, {}, settle(resolve, reject, 'unsubscribe')));

export const publish = (c, channel, data, props = {}) =>
  new Promise((resolve, reject) => c.publish(channel, data, props, settle(resolve, reject, 'publish')));

export const disconnect = (c) =>
  new Promise((resolve, reject) => c.disconnect({}, settle(resolve, reject, 'disconnect')));

/** A Faye client for `url`, on long-polling (websocket.test.mjs leaves Faye at its defaults). */
export function fayeClient(url) {
  const f = new faye.Client(url, { timeout: 60, retry: 1 });
  f.disable('websocket');
  open.add({ kind: 'faye', c: f });
  return f;
}

/** Disconnects every client made by this module; errors are ignored, the server may be gone. */
export async function closeAll() {
  const all = [...open];
  open.clear();
  await Promise.all(
    all.map(async ({ kind, c }) => {
      try {
        if (kind === 'faye') await withTimeout(Promise.resolve(c.disconnect()), 2_000, 'faye disconnect');
        else if (!c.isDisconnected()) await withTimeout(disconnect(c), 2_000, 'cometd disconnect');
      } catch {
        if (kind === 'cometd') c.disconnect(); // Drops local state so no retry timer stays armed.
      }
    }),
  );
}

/** Rejects with `what` if `promise` has not settled after `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Collects messages passed to `push` and lets a test wait until `n` have
 * arrived (or a predicate holds), failing after `ms` with what did arrive.
 */
export function inbox() {
  const items = [];
  let waiters = [];
  const check = () => {
    waiters = waiters.filter((w) => {
      if (!w.ok(items)) return true;
      w.resolve(items.slice());
      return false;
    });
  };
  return {
    items,
    push: (m) => {
      items.push(m);
      check();
    },
    until(ok, ms = 10_000, what = 'messages') {
      return withTimeout(
        new Promise((resolve) => {
          waiters.push({ ok, resolve });
          check();
        }),
        ms,
        `${what}; got ${JSON.stringify(items).slice(0, 500)}`,
      );
    },
    count(n, ms) {
      return this.until((xs) => xs.length >= n, ms, `${n} messages`);
    },
  };
}

/** POSTs a Bayeux message array the way the clients do and returns the HTTP status and parsed body. */
export async function rawBayeux(url, messages, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(messages),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, text };
}

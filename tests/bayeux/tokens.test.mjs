// Signed tokens (--token-secret) with the real CometD and Faye clients: a
// subscribe is refused without a token covering its channel, in the
// 403:<channel>:<reason> form both clients hand to the caller, and accepted
// with one, whether the token came in the handshake's ext.halley.token or in
// the subscribe's own; a session whose token ends is told 403::token_expired
// and to handshake again, which CometD does, with a fresh token if the page
// has one. Tokens are minted with node:crypto, as an issuer would.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

import { startServer } from './lib/server.mjs';
import { cometd, handshake, subscribe, publish, closeAll, inbox, fayeClient, withTimeout } from './lib/clients.mjs';

const SECRET = 'an-e2e-secret-of-at-least-32-bytes!!';
const PUBLISH_TOKEN = 'e2e-backend';
// The server's leeway on exp (token::LEEWAY_SECS).
const LEEWAY = 5;

const b64url = (text) => Buffer.from(text).toString('base64url');

/** An HS256 token with `claims`, signed with `secret`. */
function mint(claims, secret = SECRET) {
  const signed = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  return `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`;
}

const now = () => Math.floor(Date.now() / 1000);
const token = (subscribe, publish = [], secs = 3600) =>
  mint({ exp: now() + secs, halley: { subscribe, publish } });

let server;
before(async () => {
  server = await startServer({ args: ['--token-secret', SECRET, '--publish-token', PUBLISH_TOKEN] });
});
after(async () => {
  await closeAll();
  await server?.stop();
});

/** Publishes over HTTP as a back end with the static token. */
async function publishHttp(channel, data) {
  const r = await fetch(`${server.base}/pub/${channel}`, {
    method: 'POST',
    body: data,
    headers: { authorization: `Bearer ${PUBLISH_TOKEN}` },
  });
  assert.equal(r.status, 201);
}

/** A Faye extension that puts `token()` in ext.halley.token of the messages on `channels`. */
const fayeToken = (token, channels) => ({
  outgoing(message, callback) {
    if (channels.includes(message.channel)) {
      message.ext = { ...message.ext, halley: { token: token() } };
    }
    callback(message);
  },
});

test('CometD: the handshake token covers some channels and not others', async () => {
  const c = cometd(server.bayeux);
  await handshake(c, { ext: { halley: { token: token(['cometd/*']) } } });
  const got = inbox();
  await subscribe(c, '/cometd/a', (m) => got.push(m.data));
  await assert.rejects(subscribe(c, '/cometd/a/b', () => {}), /403:\/cometd\/a\/b:channel_not_covered/);
  await assert.rejects(subscribe(c, '/other', () => {}), /403:\/other:channel_not_covered/);
  await publishHttp('cometd/a', 'hello');
  assert.deepEqual(await got.count(1), ['hello']);
});

test('CometD: without a token a subscribe is refused; its own token is accepted', async () => {
  const c = cometd(server.bayeux);
  await handshake(c);
  await assert.rejects(subscribe(c, '/own/a', () => {}), /403:\/own\/a:token_missing/);
  const forged = mint({ halley: { subscribe: ['**'] } }, 'not-the-secret-not-the-secret-!!!!');
  await assert.rejects(
    subscribe(c, '/own/a', () => {}, { ext: { halley: { token: forged } } }),
    /403:\/own\/a:token_signature/,
  );
  const got = inbox();
  await subscribe(c, '/own/a', (m) => got.push(m.data), { ext: { halley: { token: token(['own/a']) } } });
  await publishHttp('own/a', 'mine');
  assert.deepEqual(await got.count(1), ['mine']);
});

test('CometD: a handshake with a bad token is refused, saying why', async () => {
  const c = cometd(server.bayeux);
  const expired = mint({ exp: now() - 3600, halley: { subscribe: ['**'] } });
  await assert.rejects(handshake(c, { ext: { halley: { token: expired } } }), /403::token_expired/);
  const none = `${b64url('{"alg":"none"}')}.${b64url('{"halley":{"subscribe":["**"]}}')}.`;
  const d = cometd(server.bayeux);
  await assert.rejects(handshake(d, { ext: { halley: { token: none } } }), /403::token_algorithm/);
});

test('CometD: a publish claim lets a session publish there only', async () => {
  const c = cometd(server.bayeux);
  await handshake(c, { ext: { halley: { token: token(['pub/**'], ['pub/**']) } } });
  const got = inbox();
  await subscribe(c, '/pub/x', (m) => got.push(m.data));
  await publish(c, '/pub/x', 'by claim');
  await assert.rejects(publish(c, '/elsewhere', 'no'), /403:\/elsewhere:channel_not_covered/);
  assert.deepEqual(await got.count(1), ['by claim']);
});

test('Faye: refused without a covering token, accepted with one', async () => {
  const bare = fayeClient(server.bayeux);
  await assert.rejects(
    withTimeout(Promise.resolve(bare.subscribe('/faye/a', () => {})), 5_000, 'faye subscribe'),
    (err) => err.code === 403 && err.message === 'token_missing',
  );

  const narrow = fayeClient(server.bayeux);
  narrow.addExtension(fayeToken(() => token(['faye/b']), ['/meta/handshake']));
  await assert.rejects(
    withTimeout(Promise.resolve(narrow.subscribe('/faye/a', () => {})), 5_000, 'faye subscribe'),
    (err) => err.code === 403 && err.message === 'channel_not_covered',
  );

  const f = fayeClient(server.bayeux);
  f.addExtension(fayeToken(() => token(['faye/*']), ['/meta/handshake']));
  const got = inbox();
  await withTimeout(Promise.resolve(f.subscribe('/faye/a', (data) => got.push(data))), 5_000, 'faye subscribe');
  await publishHttp('faye/a', '"to faye"');
  assert.deepEqual(await got.count(1), ['"to faye"']);
});

test('CometD: when its token ends the session is told so and handshakes again with a fresh one', async () => {
  // Taken now, inside the leeway, and ending within 3 s.
  let current = mint({ exp: now() + 3 - LEEWAY, halley: { subscribe: ['ending/a'] } });
  const c = cometd(server.bayeux, {
    extensions: [
      [
        'token',
        {
          outgoing(message) {
            if (message.channel === '/meta/handshake') {
              message.ext = { ...message.ext, halley: { token: current } };
            }
            return message;
          },
        },
      ],
    ],
  });
  const connects = inbox();
  const handshakes = inbox();
  c.addListener('/meta/connect', (m) => connects.push(m));
  c.addListener('/meta/handshake', (m) => handshakes.push(m));
  await handshake(c);
  await subscribe(c, '/ending/a', () => {});
  const [refused] = await connects.until(
    (items) => items.some((m) => !m.successful),
    10_000,
    'a failed connect',
  ).then((items) => items.filter((m) => !m.successful));
  assert.equal(refused.error, '403::token_expired');
  assert.equal(refused.advice.reconnect, 'handshake');
  // The page refreshes its token; CometD's re-handshake carries it.
  current = token(['ending/a']);
  const again = await handshakes.until((items) => items.filter((m) => m.successful).length >= 2, 10_000, 'a second handshake');
  assert.ok(again.at(-1).successful);
});

/*
 * halley.js: the browser client for halley, a COMET server. No dependencies; load it with a script tag.
 *
 *   <script src="http://127.0.0.1:8080/halley.js"></script>
 *   <script>
 *     const sub = halley.subscribe('demo/post-1', {
 *       since: 'earliest',                       // omit to get only messages published from now on
 *       onMessage: (msg) => console.log(msg.id, msg.data),   // { id, channel, data, event? }
 *       onGap: (gap) => console.warn('missed messages', gap),
 *       onState: (state, transport) => console.log(state, transport),
 *     });
 *     halley.publish('demo/post-1', 'hello').catch((err) => console.log(err.status, err.retryAfter));
 *     // later: sub.close();
 *   </script>
 *
 * A page that follows several channels should share one connection among them: halley.connect() opens
 * one WebSocket to /ws and carries every subscribe(...) made through it, with the same options and
 * callbacks (the transport it reports is 'websocket'). EventSource costs one of the browser's six
 * connections per server for every channel; the WebSocket costs one in all.
 *
 *     const conn = halley.connect({ onState: (state) => console.log(state) });
 *     conn.subscribe('demo/post-1', { since: 'earliest', onMessage: (msg) => console.log(msg.data) });
 *     conn.subscribe('demo/post-2', { onMessage: (msg) => console.log(msg.data) });
 *     // later: conn.close();
 *
 * When a WebSocket never opens (a proxy that refuses upgrades), connect() falls back to subscribe()
 * per channel, EventSource or long-polling, and keeps to what worked for the rest of the page's life.
 *
 * With --token-secret, pass `token`: a string, or a function returning one (or a promise of one) that is
 * called for the first connect and again whenever the server says the token ended, so a page can fetch
 * a fresh one:
 *
 *     halley.subscribe('chat/room1', { token: () => fetch('/my-token').then((r) => r.text()), ... });
 *
 * States: 'connecting', then 'live' (EventSource) or 'fallback' (long-polling), 'reconnecting' while it
 * waits to try again, 'closed' after close() or when the channel is deleted.
 *
 * How it keeps delivery exact: it remembers the id of the last message (or the cursor the server gave
 * it) and every reconnect, on either transport, resumes from there, so a message is delivered once
 * across drops. When the server can no longer resume (it restarted, or the messages expired) it says
 * so, and onGap is called instead of missing messages silently.
 */
(function (global) {
  'use strict';

  // An EventSource that has not opened by then is assumed blocked or buffered by something in between.
  var SSE_OPEN_TIMEOUT_MS = 4000;
  // An open EventSource that has delivered nothing by then is checked for a proxy buffering it.
  var SSE_STALL_CHECK_MS = 5000;
  // EventSource failures before it ever worked, after which this subscription switches to long-polling.
  var SSE_FAILURES_BEFORE_FALLBACK = 2;
  // A long-poll request still pending after this long has reached the server, which is holding it.
  var LONGPOLL_SETTLED_MS = 1000;
  // Reconnect delays grow from BASE to MAX, each drawn at random from the whole of its range ("full
  // jitter") so that many pages cut off at once do not come back at once. A draining server names
  // the delay itself, already spread over its drain window, and that is used instead, once.
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 15000;

  // A WebSocket that has not opened by then is given up as a failed attempt.
  var WS_OPEN_TIMEOUT_MS = 4000;
  // WebSocket attempts that never opened, before connect() falls back to per-channel subscriptions.
  var WS_FAILURES_BEFORE_FALLBACK = 2;
  // A socket that has said nothing for this long is taken for dead and replaced. The server sends a
  // heartbeat every --heartbeat (15 s by default) that a page can see, since it cannot see pings, so
  // a quiet channel is never silent this long; a cut one that the browser has not noticed is.
  var WS_SILENCE_MS = 40000;

  var CHANNEL = /^[A-Za-z0-9_.:\/-]{1,128}$/;

  // URLs are relative to where this script was loaded from, so a page on another origin, or behind a
  // proxy that mounts halley under a path, talks to the right server without configuration.
  var scriptBase = (function () {
    var script = global.document && global.document.currentScript;
    return script && script.src ? new URL('.', script.src).href : null;
  })();

  function baseUrl(url) {
    return url || scriptBase || global.location.origin + '/';
  }

  function checkChannel(channel) {
    if (!CHANNEL.test(channel)) {
      throw new Error('halley: a channel is 1 to 128 characters of [A-Za-z0-9_.:/-], not ' + channel);
    }
  }

  function call(callback) {
    if (typeof callback !== 'function') return;
    try {
      callback.apply(null, Array.prototype.slice.call(arguments, 1));
    } catch (err) {
      // A bug in the page's callback must not break delivery to it.
      setTimeout(function () { throw err; });
    }
  }

  function backoff(attempt) {
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
    return Math.random() * ceiling;
  }

  // Signed tokens (--token-secret). `token` is a string, or a function that gives one (or a promise of
  // one), asked again after a token has ended so that a page can refresh it.
  function resolveToken(token) {
    if (typeof token !== 'function') return Promise.resolve(token || null);
    return Promise.resolve().then(token);
  }

  // EventSource and WebSocket cannot send headers. A server on the page's own origin gets the token
  // as the halley_token cookie, scoped to the path `scope` (sub/ or ws); a server elsewhere gets
  // ?token=, the weakest form (URLs end up in logs and Referer headers), since a page cannot set
  // another origin's cookies.
  function presentToken(url, token, base, scope) {
    var target = new URL(url);
    if (global.document && global.location && target.origin === global.location.origin) {
      global.document.cookie = 'halley_token=' + encodeURIComponent(token) +
        '; path=' + new URL(scope, base).pathname + '; SameSite=Strict' +
        (target.protocol === 'https:' ? '; Secure' : '');
      return url;
    }
    target.searchParams.set('token', token);
    return target.href;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return { raw: text };
    }
  }

  /**
   * Subscribes to a channel. Options: onMessage(msg), onGap(gap), onState(state, transport),
   * onError(err) for failures retrying cannot fix, since ('earliest' or a message id), transport
   * ('sse' or 'longpoll'; default: EventSource when the browser has it), events (names of custom
   * event types to receive over EventSource), url (the server's base URL), token (a signed token, or a
   * function giving one before each connect; see the top of this file). Returns { close() }.
   */
  function subscribe(channel, opts) {
    opts = opts || {};
    checkChannel(channel);
    var base = baseUrl(opts.url);
    var wantsSse = opts.transport !== 'longpoll' && typeof global.EventSource === 'function';
    var transport = wantsSse ? 'sse' : 'longpoll';

    // Where to resume: the last message id or server cursor seen. Until there is one, `since`.
    var cursor = null;
    var since = opts.since;
    var state = null;
    var closed = false;
    var attempt = 0; // failed attempts in a row, for the backoff
    var sseWorked = false; // an EventSource of this subscription has opened at least once
    var sseFailures = 0;
    var source = null; // the open EventSource, if any
    var poll = null; // the AbortController of the pending long-poll, if any
    var timer = null; // the pending reconnect or watchdog
    var hinted = null; // the reconnect delay a draining server named, for the next retry only
    var token = null; // the signed token of the current connection, if any
    var refreshing = false; // the token ended and a fresh one is being tried

    function setState(next) {
      if (next === state) return;
      state = next;
      call(opts.onState, next, transport);
    }

    function subUrl() {
      var url = new URL('sub/' + channel, base);
      url.searchParams.set('transport', transport);
      if (cursor !== null) url.searchParams.set('last_event_id', cursor);
      else if (since != null) url.searchParams.set('since', since);
      return url.href;
    }

    function deliver(msg) {
      // Resuming from a cursor never repeats a message; this only guards against a server that
      // replays the cursor's own message.
      if (msg.id && msg.id === cursor) return;
      if (msg.id) cursor = msg.id;
      call(opts.onMessage, msg);
    }

    // After a gap the old cursor is worthless: sending it again would report the same gap again. The
    // server goes on from the oldest message it holds, so until a new cursor arrives, "everything
    // held" is exactly what comes after the gap.
    function gap(info, resumeFrom) {
      cursor = resumeFrom || null;
      since = 'earliest';
      call(opts.onGap, info);
    }

    function connect() {
      timer = null;
      if (closed) return;
      if (opts.token) return withToken();
      if (transport === 'sse') connectSse();
      else connectLongPoll();
    }

    // Connects with the token, asking for it first if there is none yet or the last one ended.
    function withToken() {
      var ask = token !== null ? Promise.resolve(token) : resolveToken(opts.token);
      ask.then(function (t) {
        if (closed) return;
        token = t;
        if (transport === 'sse') connectSse();
        else connectLongPoll();
      }, fail);
    }

    // The server ended the subscription because its token ended. With a token function, reconnect
    // at once with a fresh token (once: a fresh token refused again is a failure); else give up.
    function tokenEnded() {
      if (typeof opts.token === 'function' && !refreshing) {
        refreshing = true;
        token = null;
        hinted = 0;
        return 'retry';
      }
      var err = new Error('token expired');
      err.status = 401;
      return err;
    }

    function retry() {
      setState('reconnecting');
      var delay = hinted !== null ? hinted : backoff(attempt++);
      hinted = null;
      timer = setTimeout(connect, delay);
    }

    function stop(finalState) {
      closed = true;
      clearTimeout(timer);
      if (source) source.close();
      if (poll) poll.abort();
      source = poll = null;
      setState(finalState);
    }

    function fail(err) {
      stop('closed');
      call(opts.onError, err);
    }

    function connectSse() {
      var es = new global.EventSource(token ? presentToken(subUrl(), token, base, 'sub/') : subUrl());
      var opened = false;
      var delivered = false;
      source = es;
      if (state === null) setState('connecting');
      timer = setTimeout(function () { dropSse(es, 'blocked'); }, SSE_OPEN_TIMEOUT_MS);

      es.onopen = function () {
        opened = sseWorked = true;
        sseFailures = attempt = 0;
        refreshing = false;
        clearTimeout(timer);
        timer = setTimeout(function () { if (!delivered) checkStalled(es); }, SSE_STALL_CHECK_MS);
        setState('live');
      };
      var onMessage = function (e) {
        delivered = true;
        var msg = { id: e.lastEventId, channel: channel, data: e.data };
        if (e.type !== 'message') msg.event = e.type;
        deliver(msg);
      };
      es.onmessage = onMessage;
      (opts.events || []).forEach(function (name) { es.addEventListener(name, onMessage); });
      es.addEventListener('gap', function (e) {
        delivered = true;
        // The event's own id, if the server gave it one, is where to resume; lastEventId otherwise
        // still holds the stale cursor.
        gap(parseJson(e.data), e.lastEventId !== cursor ? e.lastEventId : null);
      });
      es.addEventListener('deleted', function () { stop('closed'); });
      // A server shutting down says when to come back (its `retry:` field, which scripts cannot
      // read, repeated as this event's data) just before the stream ends.
      es.addEventListener('drain', function (e) {
        var ms = parseInt(e.data, 10);
        if (ms >= 0) hinted = ms;
      });
      es.onerror = function (e) {
        // The server's last word before it ends a stream whose token ended is an `error` event; it
        // arrives here as a MessageEvent, and the end of the stream follows.
        if (typeof MessageEvent === 'function' && e instanceof MessageEvent) {
          if (parseJson(e.data).error !== 'token expired') return;
          var next = tokenEnded();
          if (next instanceof Error) fail(next);
          return;
        }
        dropSse(es, opened ? 'dropped' : 'refused');
      };
    }

    // EventSource opens on the response headers and never shows the comment the server sends first,
    // so a proxy that passes the headers and buffers the body looks like a quiet channel. The
    // channel's own record tells the two apart: if it holds a message this stream should have
    // delivered by now, the stream is being held.
    function checkStalled(es) {
      fetch(new URL('pub/' + channel, base).href, { cache: 'no-store' })
        .then(function (res) { return res.ok ? res.json() : null; })
        .then(function (info) {
          if (es !== source || !info || !info.last_id || !info.messages) return;
          var behind = cursor !== null ? info.last_id !== cursor : since === 'earliest';
          if (behind) dropSse(es, 'blocked');
        }, function () { /* the probe is a hint; its failure proves nothing */ });
    }

    // Every EventSource failure is handled here, with our own backoff and cursor, instead of letting
    // the browser reconnect on its own: the browser retries at a fixed pace and cannot fall back.
    // 'blocked' (never opened, or opened and held) is the work of something in between, which
    // retrying will not change, so that falls back at once; 'refused' may be a server restarting, so
    // that falls back only if EventSource never worked; 'dropped' reconnects.
    function dropSse(es, why) {
      if (es !== source) return;
      es.close();
      source = null;
      clearTimeout(timer);
      if (closed) return;
      var refusedForGood = why === 'refused' && !sseWorked &&
        ++sseFailures >= SSE_FAILURES_BEFORE_FALLBACK;
      if (why === 'blocked' || refusedForGood) {
        transport = 'longpoll';
        attempt = 0;
        connect();
        return;
      }
      retry();
    }

    function connectLongPoll() {
      var controller = new AbortController();
      poll = controller;
      if (state === null) setState('connecting');
      var settled = setTimeout(function () { setState('fallback'); }, LONGPOLL_SETTLED_MS);

      var sent = cursor !== null ? cursor : since;
      var headers = token ? { Authorization: 'Bearer ' + token } : {};
      fetch(subUrl(), { signal: controller.signal, cache: 'no-store', headers: headers })
        .then(function (res) { return readAnswer(res, sent); })
        .catch(function (err) {
          // The request or the reading of its body failed: that is the network, so try again.
          return err.name === 'AbortError' ? 'aborted' : 'retry';
        })
        .then(function (outcome) {
          clearTimeout(settled);
          if (closed || controller !== poll || outcome === 'aborted') return;
          poll = null;
          if (outcome instanceof Error) return fail(outcome);
          if (outcome === 'deleted') return stop('closed');
          if (outcome === 'retry') return retry();
          attempt = 0;
          setState('fallback');
          connect();
        });
    }

    // Handles one long-poll answer and says what to do next: poll 'again', 'retry' after a backoff,
    // stop because the channel was 'deleted', or give up with an Error that retrying cannot fix.
    function readAnswer(res, sent) {
      if (res.status === 200 || res.status === 204) refreshing = false;
      if (res.status === 401 && opts.token) return tokenEnded();
      if (res.status === 200) {
        return res.json().then(function (body) {
          if (body.gap) gap(body.gap, null);
          (body.messages || []).forEach(deliver);
          // A `next` equal to the cursor that was sent is the stale one the gap is about.
          if (body.next && !(body.gap && body.next === sent)) cursor = body.next;
          return 'again';
        });
      }
      if (res.status === 204) {
        // Reading this header from another origin needs the server to expose it through CORS.
        cursor = res.headers.get('Halley-Cursor') || cursor;
        return 'again';
      }
      if (res.status === 410) return 'deleted';
      if (res.status === 408 || res.status === 429 || res.status >= 500) return 'retry';
      return res.text().then(function (text) {
        var err = new Error(parseJson(text).error || 'HTTP ' + res.status);
        err.status = res.status;
        return err;
      });
    }

    connect();
    return {
      close: function () { if (!closed) stop('closed'); },
    };
  }

  /**
   * Publishes text on a channel; resolves with { id, channel, subscribers }. A refusal rejects with an
   * Error carrying status (429 when publishing too fast, with retryAfter in seconds; 413 too large;
   * 401 not an open channel) and the server's message. Options: event, token, url.
   */
  function publish(channel, text, opts) {
    opts = opts || {};
    checkChannel(channel);
    var url = new URL('pub/' + channel, baseUrl(opts.url));
    if (opts.event) url.searchParams.set('event', opts.event);
    // text/plain keeps the request "simple", so a cross-origin page needs no CORS preflight.
    var headers = { 'Content-Type': 'text/plain;charset=UTF-8' };
    if (opts.token) headers.Authorization = 'Bearer ' + opts.token;
    return fetch(url.href, { method: 'POST', body: String(text), headers: headers }).then(function (res) {
      return res.text().then(function (body) {
        var json = parseJson(body);
        if (res.ok) return json;
        var err = new Error(json.error || 'HTTP ' + res.status);
        err.status = res.status;
        var retryAfter = parseInt(res.headers.get('Retry-After'), 10);
        if (retryAfter >= 0) err.retryAfter = retryAfter;
        throw err;
      });
    });
  }

  // Ids are EPOCH-SEQ. A message is new after `cursor` unless it is the cursor's own or comes before it
  // in the same epoch; one from another epoch (a restarted server) is new. This is what keeps delivery
  // exactly-once when a resumed subscription's replay overlaps what arrived before the drop.
  function isNew(id, cursor) {
    if (!cursor) return true;
    if (id === cursor) return false;
    var a = id.lastIndexOf('-');
    var b = cursor.lastIndexOf('-');
    if (a < 0 || b < 0 || id.slice(0, a) !== cursor.slice(0, b)) return true;
    return Number(id.slice(a + 1)) > Number(cursor.slice(b + 1));
  }

  // The /ws URL, carrying `token` (if any) as presentToken does: a socket to the page's own origin
  // sends its cookies, as EventSource does, so the origin is compared in its http(s) form.
  function wsUrl(base, token) {
    var http = new URL('ws', base).href;
    var url = new URL(token ? presentToken(http, token, base, 'ws') : http);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.href;
  }

  /**
   * Opens one connection for many channels. Options: url (the server's base URL), onState(state,
   * transport) for the connection as a whole, onError(err) for errors that name no channel, silenceMs
   * (how long a silent socket is trusted: 40 s; raise it for a server whose --heartbeat is over 20 s),
   * token (with --token-secret: a signed token covering every channel of the connection, or a function
   * giving one, asked before the first socket and again after the server ended one for its token).
   * Returns { subscribe(channel, opts), publish(channel, text, opts), close() }; subscribe takes the
   * options of halley.subscribe (since, onMessage, onGap, onState, onError) and returns { close() }.
   */
  function connect(opts) {
    opts = opts || {};
    var base = baseUrl(opts.url);
    var subs = {}; // channel -> its subscription's record, below
    var fallback = typeof global.WebSocket !== 'function';
    var socket = null; // the WebSocket, open or opening, if any
    var state = null;
    var closed = false;
    var attempt = 0; // failed attempts in a row, for the backoff
    var worked = false; // a WebSocket of this connection has opened at least once
    var failures = 0; // attempts that never opened, while none ever has
    var timer = null; // the pending reconnect or open timeout
    var watchdog = null; // ends a socket silent for longer than WS_SILENCE_MS
    var silenceMs = opts.silenceMs || WS_SILENCE_MS;
    var token = null; // the signed token the next socket presents, once asked for
    var asking = false; // a token function's answer is awaited; the socket opens once it comes
    var tokenEnded = false; // the server said the socket's token ended; its close follows

    function setState(next) {
      if (next === state) return;
      state = next;
      call(opts.onState, next, 'websocket');
      Object.keys(subs).forEach(function (channel) { subs[channel].setState(next, 'websocket'); });
    }

    function send(command) {
      if (socket && socket.readyState === 1) socket.send(JSON.stringify(command));
    }

    // Where a subscription resumes: after the last message it delivered, else from its `since`.
    function subscribeCommand(sub) {
      var command = { subscribe: sub.channel };
      var since = sub.cursor !== null ? sub.cursor : sub.since;
      if (since != null) command.since = since;
      return command;
    }

    // Opens a socket, asking for the token first when there is one to ask for.
    function open() {
      timer = null;
      if (closed || fallback || asking) return;
      if (!opts.token || token !== null) return openSocket();
      asking = true;
      resolveToken(opts.token).then(function (t) {
        asking = false;
        token = t;
        if (!closed && socket === null && timer === null) openSocket();
      }, function (err) {
        asking = false;
        call(opts.onError, err);
        if (!closed) timer = setTimeout(open, backoff(attempt++));
      });
    }

    function openSocket() {
      var ws;
      try {
        ws = new global.WebSocket(wsUrl(base, token));
      } catch (err) {
        // A page whose Content-Security-Policy forbids the URL throws here; that will not change.
        return fallBack();
      }
      socket = ws;
      if (state === null) setState('connecting');
      timer = setTimeout(function () { drop(ws); }, WS_OPEN_TIMEOUT_MS);
      ws.onopen = function () {
        if (ws !== socket) return;
        worked = true;
        attempt = failures = 0;
        clearTimeout(timer);
        timer = null;
        setState('live');
        heard(ws);
        Object.keys(subs).forEach(function (channel) { send(subscribeCommand(subs[channel])); });
      };
      ws.onmessage = function (e) {
        if (ws !== socket) return;
        heard(ws);
        onFrame(e.data);
      };
      ws.onclose = ws.onerror = function () { drop(ws); };
    }

    function heard(ws) {
      clearTimeout(watchdog);
      watchdog = setTimeout(function () { drop(ws); }, silenceMs);
    }

    // Every way a socket ends comes here once: reconnect with backoff and resume every channel, or,
    // when WebSocket has never worked on this page, fall back after a few attempts.
    function drop(ws) {
      if (ws !== socket) return;
      socket = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (err) { /* it was not open */ }
      clearTimeout(timer);
      clearTimeout(watchdog);
      timer = watchdog = null;
      if (closed) return;
      if (tokenEnded) {
        // A fixed token cannot be renewed: every channel ends, saying why. A token function is
        // asked again before the next socket, which resumes every channel.
        tokenEnded = false;
        token = null;
        if (typeof opts.token !== 'function') return endForToken();
      } else if (!worked && ++failures >= WS_FAILURES_BEFORE_FALLBACK) {
        return fallBack();
      }
      setState('reconnecting');
      timer = setTimeout(open, backoff(attempt++));
    }

    function endForToken() {
      var err = new Error('token expired');
      err.status = 401;
      Object.keys(subs).forEach(function (channel) { subs[channel].fail(err); });
      call(opts.onError, err);
      closed = true;
      setState('closed');
    }

    // The connection as a whole then reports 'fallback'; each channel reports its own transport.
    function fallBack() {
      fallback = true;
      state = 'fallback';
      call(opts.onState, 'fallback', null);
      Object.keys(subs).forEach(function (channel) { subs[channel].fallBack(); });
    }

    function onFrame(text) {
      var m = parseJson(text);
      if (!m || typeof m !== 'object') return;
      if (typeof m.subscribed === 'string') {
        // The position the server starts this channel from: the cursor to resume from if the socket
        // drops before the channel's first message.
        if (subs[m.subscribed] && m.cursor) subs[m.subscribed].cursor = m.cursor;
        return;
      }
      var sub = typeof m.channel === 'string' ? subs[m.channel] : null;
      if (m.error !== undefined) {
        if (sub) return sub.fail(new Error(m.error));
        // The socket's token ended; the server closes it next (1008), and `drop` renews the token.
        if (m.error === 'token expired' && opts.token) return void (tokenEnded = true);
        return call(opts.onError, new Error(m.error));
      }
      if (!sub) return;
      if (m.gap) return sub.gap(m.gap);
      if (m.deleted) return sub.stop('closed');
      if (typeof m.id === 'string') sub.deliver(m);
    }

    function subscribeOn(channel, subOpts) {
      subOpts = subOpts || {};
      checkChannel(channel);
      if (closed) throw new Error('halley: this connection is closed');
      if (subs[channel]) throw new Error('halley: already subscribed to ' + channel);
      var sub = {
        channel: channel,
        cursor: null,
        since: subOpts.since,
        state: null,
        inner: null, // the per-channel subscription after a fallback
        setState: function (next, transport) {
          if (next === sub.state) return;
          sub.state = next;
          call(subOpts.onState, next, transport);
        },
        deliver: function (msg) {
          if (msg.id && !isNew(msg.id, sub.cursor)) return;
          if (msg.id) sub.cursor = msg.id;
          call(subOpts.onMessage, msg);
        },
        // After a gap the server goes on from its `next`; the old cursor would only report it again.
        gap: function (info) {
          sub.cursor = info.next || null;
          sub.since = 'earliest';
          call(subOpts.onGap, info);
        },
        stop: function (finalState) {
          if (subs[channel] === sub) delete subs[channel];
          if (sub.inner) sub.inner.close();
          sub.setState(finalState, fallback ? sub.transport : 'websocket');
        },
        fail: function (err) {
          sub.stop('closed');
          call(subOpts.onError, err);
        },
        fallBack: function () {
          sub.inner = subscribe(channel, {
            url: opts.url,
            token: opts.token,
            since: sub.cursor !== null ? sub.cursor : sub.since,
            events: subOpts.events,
            onMessage: sub.deliver,
            onGap: function (info) { call(subOpts.onGap, info); },
            onState: function (next, transport) {
              sub.transport = transport;
              sub.setState(next, transport);
              if (next === 'closed' && subs[channel] === sub) delete subs[channel];
            },
            onError: function (err) { call(subOpts.onError, err); },
          });
        },
      };
      subs[channel] = sub;
      if (fallback) {
        sub.fallBack();
      } else {
        if (state !== null) sub.setState(state, 'websocket');
        send(subscribeCommand(sub));
        if (socket === null && timer === null && !asking) open();
      }
      return {
        close: function () {
          if (subs[channel] !== sub) return;
          send({ unsubscribe: channel });
          sub.stop('closed');
        },
      };
    }

    open();
    return {
      subscribe: subscribeOn,
      // Publishing stays on HTTP: its answer (a status, Retry-After) belongs to that one publish, which
      // a reply on the shared socket could only be matched to by guessing.
      publish: function (channel, text, pubOpts) {
        var o = { url: opts.url };
        Object.keys(pubOpts || {}).forEach(function (k) { o[k] = pubOpts[k]; });
        return publish(channel, text, o);
      },
      close: function () {
        if (closed) return;
        closed = true;
        clearTimeout(timer);
        clearTimeout(watchdog);
        if (socket) {
          var ws = socket;
          socket = null;
          ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
          try { ws.close(1000); } catch (err) { /* it was not open */ }
        }
        Object.keys(subs).forEach(function (channel) { subs[channel].stop('closed'); });
        setState('closed');
      },
    };
  }

  global.halley = { subscribe: subscribe, publish: publish, connect: connect };
})(typeof window !== 'undefined' ? window : this);

/*
 * The demo page's comment thread, built on halley.js: it loads the channel's history, shows every new
 * comment the moment it is published, and posts the form as a message on the same channel.
 *
 * A comment travels as the JSON text {"name", "text", "at"}. Everything from the channel is shown with
 * textContent, never as markup: anyone may publish on an open channel.
 */
(function () {
  'use strict';

  var article = document.querySelector('[data-channel]');
  var channel = article.getAttribute('data-channel');
  // The open-publish limit on a message body, in bytes.
  var MAX_MESSAGE_BYTES = 4096;
  var MAX_NAME_CHARS = 60;

  var list = document.getElementById('comments');
  var empty = document.getElementById('no-comments');
  var count = document.getElementById('comment-count');
  var conn = document.getElementById('conn-state');
  var form = document.getElementById('comment-form');
  var nameInput = form.elements.name;
  var textInput = form.elements.text;
  var button = form.querySelector('button');
  var formStatus = document.getElementById('form-status');
  var nComments = 0;

  var STATE_LABELS = {
    connecting: 'Connecting…',
    live: 'Live',
    fallback: 'Live · fallback (long-poll)',
    reconnecting: 'Reconnecting…',
    closed: 'Offline',
  };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  // A stable hue per name, so a reader can follow a conversation at a glance. Steps of the golden
  // angle spread similar names around the colour wheel.
  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return Math.round((h * 137.508) % 360);
  }

  function parseComment(data) {
    try {
      var c = JSON.parse(data);
      if (c && typeof c.text === 'string') {
        return { name: String(c.name || 'Anonymous'), text: c.text, at: c.at };
      }
    } catch (err) {
      // Not a comment from this page (e.g. published with curl): show it as it is.
    }
    return { name: 'Anonymous', text: String(data), at: null };
  }

  function showComment(msg) {
    var c = parseComment(msg.data);
    var item = el('li', 'comment');
    item.setAttribute('data-id', msg.id || '');
    var avatar = el('span', 'avatar', c.name.trim().charAt(0).toUpperCase() || '?');
    avatar.style.setProperty('--hue', hue(c.name));
    avatar.setAttribute('aria-hidden', 'true');
    var head = el('div', 'comment-head');
    head.appendChild(el('span', 'comment-name', c.name));
    var when = c.at ? new Date(c.at) : null;
    if (when && !isNaN(when)) {
      var time = el('time', 'comment-time', when.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' }));
      time.dateTime = when.toISOString();
      head.appendChild(time);
    }
    var body = el('div', 'comment-body');
    body.appendChild(head);
    body.appendChild(el('p', 'comment-text', c.text));
    item.appendChild(avatar);
    item.appendChild(body);
    list.appendChild(item);
    nComments++;
    count.textContent = String(nComments);
    empty.hidden = true;
  }

  function showGap(gap) {
    var text = 'Some comments could not be delivered';
    if (gap && typeof gap.missed === 'number') text = gap.missed + ' comment(s) could not be delivered';
    var item = el('li', 'gap');
    item.setAttribute('role', 'note');
    item.appendChild(el('strong', null, text + '.'));
    item.appendChild(document.createTextNode(
      ' The server restarted or they expired while this page was disconnected.'));
    list.appendChild(item);
  }

  function showState(state, transport) {
    conn.setAttribute('data-state', state);
    conn.setAttribute('data-transport', transport);
    conn.querySelector('.label').textContent = STATE_LABELS[state] || state;
  }

  function say(text, kind) {
    formStatus.textContent = text;
    formStatus.setAttribute('data-kind', kind || '');
  }

  // Cooling down after a 429: the button stays disabled until the server said it may be tried again.
  var coolUntil = 0;
  function coolDown(seconds) {
    coolUntil = Date.now() + seconds * 1000;
    button.disabled = true;
    setTimeout(function () {
      if (Date.now() >= coolUntil) {
        button.disabled = false;
        if (formStatus.getAttribute('data-kind') === 'limited') say('');
      }
    }, seconds * 1000 + 50);
  }

  function post(event) {
    event.preventDefault();
    var name = nameInput.value.trim().slice(0, MAX_NAME_CHARS);
    var text = textInput.value.trim();
    if (!name || !text) {
      say('Please give your name and a comment.', 'error');
      return;
    }
    var message = JSON.stringify({ name: name, text: text, at: new Date().toISOString() });
    if (new TextEncoder().encode(message).length > MAX_MESSAGE_BYTES) {
      say('That comment is too long; please shorten it.', 'error');
      return;
    }
    try { localStorage.setItem('halley-demo-name', name); } catch (err) { /* private mode */ }
    say('Posting…', 'pending');
    halley.publish(channel, message).then(function () {
      // The comment appears when it comes back on the channel, like everyone else's.
      if (textInput.value.trim() === text) textInput.value = '';
      say('Posted.', 'ok');
    }, function (err) {
      if (err.status === 429) {
        var wait = err.retryAfter || 1;
        say('You are commenting too fast (429). Please wait ' + wait + ' s and try again.', 'limited');
        coolDown(wait);
      } else if (err.status) {
        say('Could not post your comment: ' + err.message + ' (' + err.status + ').', 'error');
      } else {
        say('Could not reach the server; your comment was not posted.', 'error');
      }
    });
  }

  try { nameInput.value = localStorage.getItem('halley-demo-name') || ''; } catch (err) { /* private mode */ }
  form.addEventListener('submit', post);
  // Ctrl/Cmd+Enter posts, as in most comment boxes.
  textInput.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });

  // One WebSocket for the page (halley.connect), which falls back on its own to EventSource or
  // long-polling where WebSocket never opens; ?transport=sse or ?transport=longpoll forces one of those.
  var forced = new URLSearchParams(location.search).get('transport');
  var options = {
    since: 'earliest',
    onMessage: showComment,
    onGap: showGap,
    onState: showState,
    onError: function (err) { say('The live thread stopped: ' + err.message, 'error'); },
  };
  if (forced === 'longpoll' || forced === 'sse') {
    options.transport = forced;
    window.demoSubscription = halley.subscribe(channel, options);
  } else {
    window.demoConnection = halley.connect();
    window.demoSubscription = window.demoConnection.subscribe(channel, options);
  }
})();

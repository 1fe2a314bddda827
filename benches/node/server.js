// The SSE server a Node.js user would write for halley's job: plain `http` plus the `sse-channel`
// package, one channel object per name. It is a benchmark peer, so it keeps the package's defaults
// except where they would measure something else (no history replay, no CORS).
//
// Usage: node server.js [--listen 127.0.0.1:PORT]; prints `listening on 127.0.0.1:PORT` once ready.
'use strict';

const http = require('http');
const SseChannel = require('sse-channel');

const listenArg = process.argv.indexOf('--listen');
const [host, port] = (listenArg > 0 ? process.argv[listenArg + 1] : '127.0.0.1:0').split(':');

const channels = new Map();

function channel(name) {
  let ch = channels.get(name);
  if (!ch) {
    ch = new SseChannel({ jsonEncode: false });
    channels.set(name, ch);
  }
  return ch;
}

const server = http.createServer((req, res) => {
  const m = /^\/(sub|pub)\/([^/?]+)/.exec(req.url);
  if (m && m[1] === 'sub' && req.method === 'GET') {
    channel(m[2]).addClient(req, res);
    return;
  }
  if (m && m[1] === 'pub' && req.method === 'POST') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const ch = channel(m[2]);
      ch.send(body);
      res.writeHead(201, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ channel: m[2], subscribers: ch.getConnectionCount() }));
    });
    return;
  }
  res.writeHead(404);
  res.end();
});

// The default backlog (511) drops SYNs when thousands of subscribers connect at once.
server.listen(Number(port), host, 4096, () => {
  const addr = server.address();
  console.log(`listening on ${addr.address}:${addr.port}`);
});

process.on('SIGTERM', () => process.exit(0));

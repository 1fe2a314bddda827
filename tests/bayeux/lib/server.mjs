// Starts and stops one server process for a test file: by default the real
// binary, target/release/halley, on 127.0.0.1:0. The server prints exactly one
// line, `listening on 127.0.0.1:PORT`, once it is bound; that line is the only
// synchronisation, so no test guesses a port or sleeps waiting for a server.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../../..');
export const halleyBin = process.env.HALLEY_BIN ?? path.join(repoRoot, 'target/release/halley');

const LISTENING = /^listening on 127\.0\.0\.1:(\d+)$/;
// Kept so a failing start can say what the server printed, but bounded.
const MAX_STDERR = 64 * 1024;

/**
 * Spawns `command` (default: halley --listen 127.0.0.1:0 ...args) and resolves
 * once its first stdout line names the port. Rejects, with the process's
 * stderr, if the line is wrong, the process exits or fails to spawn, or
 * `timeoutMs` passes first.
 */
export function startServer({ args = [], command, timeoutMs = 10_000 } = {}) {
  const argv = command ?? [halleyBin, '--listen', '127.0.0.1:0', ...args];
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-MAX_STDERR);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  return new Promise((resolve, reject) => {
    let buf = '';
    let settled = false;
    const settle = (err, port) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        child.kill('SIGKILL');
        err.message += `\n--- server stderr ---\n${stderr}`;
        reject(err);
        return;
      }
      const base = `http://127.0.0.1:${port}`;
      resolve({
        port,
        base,
        bayeux: `${base}/bayeux`,
        child,
        get stderr() {
          return stderr;
        },
        stop: (opts) => stop(child, exited, opts),
      });
    };
    const timer = setTimeout(() => settle(new Error(`no "listening on" line within ${timeoutMs} ms`)), timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      if (settled) return; // Later output is drained and ignored so the pipe never fills.
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl).trim();
      const m = LISTENING.exec(line);
      if (!m) settle(new Error(`unexpected first line on stdout: ${JSON.stringify(line)}`));
      else settle(null, Number(m[1]));
    });
    child.once('error', (err) => settle(err));
    exited.then(({ code, signal }) => settle(new Error(`server exited (${signal ?? code}) before listening`)));
  });
}

/** SIGTERM, then SIGKILL if the process has not exited after `graceMs`. */
async function stop(child, exited, { graceMs = 5_000 } = {}) {
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  child.kill('SIGTERM');
  let timer;
  const killed = new Promise((resolve) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, graceMs);
  });
  await Promise.race([exited, killed]);
  clearTimeout(timer);
  return exited;
}

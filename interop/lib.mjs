// Shared by the interop test and the call benchmark: the signaling server, tokens,
// hearth-cli processes, the test page over HTTP, Chromium, and process CPU time.

import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Harness {
  constructor({ profile = 'debug', work }) {
    const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
    this.bin = (name) => join(target, profile, name);
    this.work = work;
    this.children = [];
    this.closing = false;
    this.onFail = (m) => { throw new Error(m); };
  }

  startSignaling() {
    return new Promise((resolve) => {
      const p = spawn(this.bin('hearth-signaling'), ['--dev', '--data-dir', this.work, 'serve', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
      this.children.push(p);
      let buf = '';
      p.stderr.on('data', (d) => {
        buf += d;
        const m = buf.match(/WebSocket at (ws:\/\/\S+)/);
        if (m) resolve(m[1]);
      });
      p.on('exit', (code) => { if (!this.closing) this.onFail(`signaling server exited (${code})`); });
    });
  }

  mint(name, role = 'family', room = 'interop') {
    return execFileSync(this.bin('hearth-signaling'), ['--dev', '--data-dir', this.work, 'mint', '--room', room, '--role', role, '--name', name], { encoding: 'utf8' }).trim();
  }

  startCli(args) {
    const p = spawn(this.bin('hearth-cli'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(p);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const exited = new Promise((resolve) => p.on('exit', (code) => resolve(code)));
    return { proc: p, exited, output: () => out };
  }

  cleanup() {
    this.closing = true;
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

export async function waitFor(what, fn, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

export function servePage() {
  const files = { '/': ['page.html', 'text/html'], '/peer.js': ['peer.js', 'text/javascript'] };
  const server = createServer((req, res) => {
    const f = files[req.url.split('?')[0]];
    if (!f) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': f[1] }).end(readFileSync(join(here, f[0])));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}/` })));
}

const CHROMIUM_OPTIONS = {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // 30 fps, like the Hearth side (the fake camera's default is 20).
    '--use-fake-device-for-media-stream=fps=30', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
  ],
};

export function launchChromium() {
  return chromium.launch(CHROMIUM_OPTIONS);
}

/** A Chromium whose process id is known, for measuring its CPU time. */
export async function launchChromiumServer() {
  const server = await chromium.launchServer(CHROMIUM_OPTIONS);
  const browser = await chromium.connect(server.wsEndpoint());
  return { browser, pid: server.process().pid, close: async () => { await browser.close(); await server.close(); } };
}

const TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) used so far by `pid` and all its descendants. */
export function treeCpuSeconds(pid) {
  const stats = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const s = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
      stats.set(Number(entry), { ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / TICKS });
    } catch { /* the process ended */ }
  }
  let total = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop();
    const s = stats.get(p);
    if (s) total += s.cpu;
    for (const [child, c] of stats) if (c.ppid === p) todo.push(child);
  }
  return total;
}

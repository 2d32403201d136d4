// Interop: hearth-cli and Debian's Chromium call each other through a real signaling server.
// Both directions must decode video (framesDecoded in getStats(), stamp-checked frames on the
// Hearth side) and audio; once with H.264 preferred, once with VP8, the browser's default.
//
// Run it inside a network namespace that has only loopback (scripts/interop does), so that
// nothing leaves this machine. Needs the debug binaries built: cargo build -p signaling -p hearth-cli.

import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
const bin = (name) => join(target, 'debug', name);
const work = mkdtempSync(join(tmpdir(), 'hearth-interop-'));
const children = [];
let closing = false;

function fail(message) {
  console.error(`interop: FAIL: ${message}`);
  cleanup();
  process.exit(1);
}

function cleanup() {
  closing = true;
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}

function check(cond, message) {
  if (!cond) fail(message);
  console.log(`interop: ok: ${message}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) fail(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

function startSignaling() {
  return new Promise((resolve) => {
    const p = spawn(bin('hearth-signaling'), ['--dev', '--data-dir', work, 'serve', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(p);
    let buf = '';
    p.stderr.on('data', (d) => {
      buf += d;
      const m = buf.match(/WebSocket at (ws:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    p.on('exit', (code) => { if (!closing) fail(`signaling server exited (${code})`); });
  });
}

function mint(name, role = 'family') {
  return execFileSync(bin('hearth-signaling'), ['--dev', '--data-dir', work, 'mint', '--room', 'interop', '--role', role, '--name', name], { encoding: 'utf8' }).trim();
}

function startCli(args) {
  const p = spawn(bin('hearth-cli'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(p);
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => p.on('exit', (code) => resolve(code)));
  return { proc: p, exited, output: () => out };
}

function servePage() {
  const files = { '/': ['page.html', 'text/html'], '/peer.js': ['peer.js', 'text/javascript'] };
  const server = createServer((req, res) => {
    const f = files[req.url.split('?')[0]];
    if (!f) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': f[1] }).end(readFileSync(join(here, f[0])));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}/` })));
}

const wsUrl = await startSignaling();
const page = await servePage();
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
  ],
});

async function scenario({ title, browserCalls, prefer, cliCodecs, expectCodec }) {
  console.log(`interop: --- ${title}`);
  const ctx = await browser.newContext();
  const tab = await ctx.newPage();
  tab.on('pageerror', (e) => console.error(`page error: ${e}`));
  await tab.goto(page.url);
  const statsFile = join(work, `stats-${Date.now()}.json`);
  const common = ['--server', wsUrl, '--bind', '127.0.0.1:0', '--size', '640x480', '--codecs', cliCodecs,
    '--duration', '8', '--expect-media', '--stats-json', statsFile];
  let cli;
  let remote;
  if (browserCalls) {
    cli = startCli([...common, '--token', mint('Kim', 'resident'), 'answer']);
    await waitFor('hearth-cli joining', () => /joined room/.test(cli.output()));
    const joined = await tab.evaluate(([u, t, p]) => window.hearth.connect(u, t, { prefer: p }), [wsUrl, mint('Browser'), prefer]);
    remote = joined.peers.find((p) => p.name === 'Kim')?.peer;
    check(!!remote, 'the browser sees hearth-cli in the room');
    await tab.evaluate((p) => window.hearth.call(p), remote);
  } else {
    await tab.evaluate(([u, t, p]) => window.hearth.connect(u, t, { prefer: p, autoAnswer: true }), [wsUrl, mint('Browser'), prefer]);
    cli = startCli([...common, '--token', mint('Kim', 'resident'), 'call', 'Browser']);
    remote = await waitFor('the call to reach the browser', () => tab.evaluate(() => window.hearth.events.find((e) => e.incoming)?.peer));
  }
  const stats = await waitFor('the browser to decode video and audio from hearth-cli', async () => {
    const s = await tab.evaluate((p) => window.hearth.stats(p), remote);
    return s && s.video && s.video.framesDecoded >= 60 && s.audio && s.audio.packetsReceived >= 50 ? s : null;
  });
  check(stats.video.codec === `video/${expectCodec}`, `the browser decoded ${stats.video.framesDecoded} ${stats.video.codec} frames (${stats.video.width}x${stats.video.height}) from hearth-cli`);
  check(stats.audio.codec === 'audio/opus' && stats.audio.samples > 0, `the browser decoded ${stats.audio.packetsReceived} Opus packets into ${stats.audio.samples} samples (${stats.audio.concealed} concealed)`);
  check(stats.outVideo && stats.outVideo.codec === `video/${expectCodec}`, `the browser sent ${stats.outVideo?.codec}`);
  const code = await Promise.race([cli.exited, sleep(30000).then(() => 'timeout')]);
  if (code !== 0) console.error(cli.output());
  check(code === 0, `hearth-cli finished the call with exit code 0 (got ${code})`);
  const report = JSON.parse(readFileSync(statsFile, 'utf8'));
  const fromBrowser = Object.values(report.peers)[0];
  check(fromBrowser && fromBrowser.frames_decoded >= 60, `hearth-cli decoded ${fromBrowser?.frames_decoded} frames from the browser`);
  check(fromBrowser.codec === expectCodec, `hearth-cli received ${fromBrowser.codec}`);
  check(fromBrowser.audio_intervals > 0 && fromBrowser.audio_max_level > 0, `hearth-cli heard the browser (max level ${fromBrowser.audio_max_level.toFixed(3)})`);
  await ctx.close();
}

try {
  await scenario({ title: 'the browser calls hearth-cli, H.264 preferred', browserCalls: true, prefer: 'H264', cliCodecs: 'h264,vp8', expectCodec: 'H264' });
  await scenario({ title: 'hearth-cli calls the browser, VP8 (the browser default)', browserCalls: false, prefer: null, cliCodecs: 'vp8,h264', expectCodec: 'VP8' });
} catch (e) {
  fail(e.stack || String(e));
}
await browser.close();
page.server.close();
cleanup();
console.log('interop: all passed');

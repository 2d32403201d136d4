// Interop: hearth-cli and Debian's Chromium call each other through a real signaling server.
// Both directions must decode video (framesDecoded in getStats(), stamp-checked frames on the
// Hearth side) and audio; once with H.264 preferred, once with VP8, the browser's default.
//
// Run it inside a network namespace that has only loopback (scripts/interop does), so that
// nothing leaves this machine. Needs the debug binaries built: cargo build -p signaling -p hearth-cli.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Harness, launchChromium, servePage, sleep, waitFor as wait } from './lib.mjs';

const work = mkdtempSync(join(tmpdir(), 'hearth-interop-'));
const h = new Harness({ work });
h.onFail = fail;

let current = null; // the hearth-cli of the running scenario, whose output a failure shows

function fail(message) {
  console.error(`interop: FAIL: ${message}`);
  if (current) console.error(`hearth-cli output:\n${current.output()}`);
  cleanup();
  process.exit(1);
}

function cleanup() {
  h.cleanup();
  rmSync(work, { recursive: true, force: true });
}

function check(cond, message) {
  if (!cond) fail(message);
  console.log(`interop: ok: ${message}`);
}

async function waitFor(what, fn, timeoutMs = 20000) {
  try {
    return await wait(what, fn, timeoutMs);
  } catch (e) {
    return fail(e.message);
  }
}

const mint = (name, role) => h.mint(name, role);
const startCli = (args) => h.startCli(args);
const wsUrl = await h.startSignaling();
const page = await servePage();
const browser = await launchChromium();

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
    cli = current = startCli([...common, '--token', mint('Kim', 'resident'), 'answer']);
    await waitFor('hearth-cli joining', () => /joined room/.test(cli.output()));
    const joined = await tab.evaluate(([u, t, p]) => window.hearth.connect(u, t, { prefer: p }), [wsUrl, mint('Browser'), prefer]);
    remote = joined.peers.find((p) => p.name === 'Kim')?.peer;
    check(!!remote, 'the browser sees hearth-cli in the room');
    await tab.evaluate((p) => window.hearth.call(p), remote);
  } else {
    await tab.evaluate(([u, t, p]) => window.hearth.connect(u, t, { prefer: p, autoAnswer: true }), [wsUrl, mint('Browser'), prefer]);
    cli = current = startCli([...common, '--token', mint('Kim', 'resident'), 'call', 'Browser']);
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
  await tab.evaluate(() => window.hearth.leave());
  await ctx.close();
  current = null;
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

// The call benchmark: the same 1:1 call made twice in one run, once between two hearth-cli
// peers (release build, synthetic camera and microphone) and once between two headless
// Chromium instances (fake camera and microphone), both H.264, at 640x480 and 1280x720.
// Reports, per endpoint: CPU seconds per call-minute, time from answer to the first decoded
// remote frame, and (Hearth only: the test pattern carries capture times) capture-to-decoded
// latency p50/p95. Run inside a loopback-only namespace (scripts/bench does).
//
// node interop/bench.mjs [seconds per call, default 30]

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Harness, launchChromiumServer, servePage, sleep, treeCpuSeconds, waitFor } from './lib.mjs';

const seconds = Number(process.argv[2] || 30);
const work = mkdtempSync(join(tmpdir(), 'hearth-bench-'));
const h = new Harness({ profile: 'release', work });
const wsUrl = await h.startSignaling();
const page = await servePage();

async function hearthCall(width, height) {
  const size = `${width}x${height}`;
  const common = ['--server', wsUrl, '--bind', '127.0.0.1:0', '--size', size, '--codecs', 'h264'];
  const room = `hearth-${size}`;
  const a = h.startCli([...common, '--token', h.mint('A', 'resident', room), '--stats-json', join(work, `a-${size}.json`), 'answer']);
  await waitFor('A joining', () => /joined room/.test(a.output()));
  const b = h.startCli([...common, '--token', h.mint('B', 'family', room), '--duration', String(seconds + 3), '--stats-json', join(work, `b-${size}.json`), 'call', 'A']);
  await waitFor('the call connecting', () => /in a call/.test(a.output()) && /in a call/.test(b.output()), 30000);
  await sleep(2000);
  const cpu0 = treeCpuSeconds(a.proc.pid) + treeCpuSeconds(b.proc.pid);
  await sleep(seconds * 1000);
  const cpu1 = treeCpuSeconds(a.proc.pid) + treeCpuSeconds(b.proc.pid);
  await Promise.all([a.exited, b.exited]);
  const ra = Object.values(JSON.parse(readFileSync(join(work, `a-${size}.json`), 'utf8')).peers)[0];
  const rb = Object.values(JSON.parse(readFileSync(join(work, `b-${size}.json`), 'utf8')).peers)[0];
  return {
    cpuPerMinute: ((cpu1 - cpu0) / 2) * (60 / seconds),
    firstFrameMs: ra.first_frame_ms,
    latency: [ra.latency_ms, rb.latency_ms],
    decodedFps: [ra.frames_decoded, rb.frames_decoded].map((f) => f / (seconds + 3)),
    missing: ra.missing_frames + rb.missing_frames,
  };
}

async function chromiumCall(width, height) {
  const [ca, cb] = [await launchChromiumServer(), await launchChromiumServer()];
  const [ta, tb] = [await ca.browser.newPage(), await cb.browser.newPage()];
  await ta.goto(page.url);
  await tb.goto(page.url);
  const room = `chromium-${width}x${height}`;
  const opts = { prefer: 'H264', width, height, keepSize: true };
  await ta.evaluate(([u, t, o]) => window.hearth.connect(u, t, { ...o, autoAnswer: true }), [wsUrl, h.mint('A', 'resident', room), opts]);
  const joined = await tb.evaluate(([u, t, o]) => window.hearth.connect(u, t, o), [wsUrl, h.mint('B', 'family', room), opts]);
  const peerA = joined.peers.find((p) => p.name === 'A').peer;
  await tb.evaluate((p) => window.hearth.call(p), peerA);
  const peerB = await waitFor('the call reaching A', () => ta.evaluate(() => window.hearth.events.find((e) => e.incoming)?.peer));
  const both = async () => {
    const [sa, sb] = await Promise.all([ta.evaluate((p) => window.hearth.stats(p), peerB), tb.evaluate((p) => window.hearth.stats(p), peerA)]);
    return sa?.video?.framesDecoded > 0 && sb?.video?.framesDecoded > 0 ? [sa, sb] : null;
  };
  await waitFor('both browsers decoding', both, 30000);
  await sleep(2000);
  const pids = [ca.pid, cb.pid];
  const cpu0 = pids.reduce((s, p) => s + treeCpuSeconds(p), 0);
  const [s0a, s0b] = await both();
  await sleep(seconds * 1000);
  const cpu1 = pids.reduce((s, p) => s + treeCpuSeconds(p), 0);
  const [s1a, s1b] = await both();
  const timing = await ta.evaluate(() => window.hearth.timing);
  const codec = s1a.video.codec;
  await ca.close();
  await cb.close();
  return {
    cpuPerMinute: ((cpu1 - cpu0) / 2) * (60 / seconds),
    firstFrameMs: timing.firstFrameAt - timing.answeredAt,
    decodedFps: [(s1a.video.framesDecoded - s0a.video.framesDecoded) / seconds, (s1b.video.framesDecoded - s0b.video.framesDecoded) / seconds],
    size: `${s1a.video.width}x${s1a.video.height}`,
    codec,
  };
}

const f = (x, d = 1) => (x === undefined || x === null ? '-' : Number(x).toFixed(d));
try {
  for (const [w, hgt] of [[640, 480], [1280, 720]]) {
    const hr = await hearthCall(w, hgt);
    const cr = await chromiumCall(w, hgt);
    console.log(`\n${w}x${hgt}, ${seconds} s call, per endpoint:`);
    console.log(`  hearth-cli: CPU ${f(hr.cpuPerMinute, 2)} s per call-minute | answer to first frame ${f(hr.firstFrameMs, 0)} ms | latency p50 ${f(hr.latency[0]?.p50)} / ${f(hr.latency[1]?.p50)} ms, p95 ${f(hr.latency[0]?.p95)} / ${f(hr.latency[1]?.p95)} ms | ${f(hr.decodedFps[0])} / ${f(hr.decodedFps[1])} fps decoded | ${hr.missing} frames missing`);
    console.log(`  Chromium:   CPU ${f(cr.cpuPerMinute, 2)} s per call-minute | answer to first frame ${f(cr.firstFrameMs, 0)} ms | ${f(cr.decodedFps[0])} / ${f(cr.decodedFps[1])} fps decoded (${cr.codec}, ${cr.size})`);
    console.log(`  ratio hearth/Chromium: CPU ${f(hr.cpuPerMinute / cr.cpuPerMinute, 2)}, first frame ${f(hr.firstFrameMs / cr.firstFrameMs, 2)}`);
  }
} finally {
  h.cleanup();
  page.server.close();
  rmSync(work, { recursive: true, force: true });
}

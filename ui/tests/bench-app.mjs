// The desktop app's benchmark (docs/BENCHMARKS.md): start-up to the first painted screen, idle
// memory of the app with its WebKit processes, and CPU and memory during 1:1 calls at 640x480
// and 1280x720, with Debian's Chromium answering the same calls in the same run as the peer
// to compare with. Release builds; run under Xvfb inside a loopback-only namespace
// (scripts/bench-app does both).
//
//   node ui/tests/bench-app.mjs [seconds per call, default 20] [--gpu-compositing]
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { remote } from "webdriverio";
import { Harness, launchChromiumServer, servePage, sleep, treeCpuSeconds, waitFor } from "../../interop/lib.mjs";

const seconds = Number(process.argv.find((a) => /^\d+$/.test(a)) || 20);
// The app's opt-in GPU compositing (and WebGL drawing), to compare with its default.
const gpu = process.argv.includes("--gpu-compositing") ? ["--gpu-compositing"] : [];
const work = mkdtempSync(join(tmpdir(), "hearth-bench-app-"));
const h = new Harness({ profile: "release", work });
const app = h.bin("hearth");
const children = [];
const TICKS = 100;

function start(cmd, args, env = {}) {
  const p = spawn(cmd, args, { stdio: "ignore", env: { ...process.env, ...env } });
  children.push(p);
  return p;
}

/** Every descendant of `pid`, and `pid`. */
function tree(pid) {
  const parents = new Map();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const s = readFileSync(`/proc/${e}/stat`, "utf8");
      parents.set(Number(e), Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {}
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) for (const [c, p] of parents) if (p === out[i]) out.push(c);
  return out;
}

/** PSS and RSS in MB summed over `pid` and its descendants, and how many processes. */
function memory(pid) {
  let pss = 0;
  let rss = 0;
  const pids = tree(pid);
  for (const p of pids) {
    try {
      const s = readFileSync(`/proc/${p}/smaps_rollup`, "utf8");
      pss += Number(s.match(/^Pss:\s+(\d+)/m)?.[1] ?? 0);
      rss += Number(s.match(/^Rss:\s+(\d+)/m)?.[1] ?? 0);
    } catch {}
  }
  return { pssMb: Math.round(pss / 1024), rssMb: Math.round(rss / 1024), processes: pids.length };
}

function startedAtMs(pid) {
  const btime = Number(readFileSync("/proc/stat", "utf8").match(/^btime (\d+)/m)[1]);
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const start = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[19]);
  return btime * 1000 + (start * 1000) / TICKS;
}

function hearthPid(dataDir) {
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
      if (cmd[0] === app && cmd.includes(dataDir)) return Number(e);
    } catch {}
  }
  return null;
}

async function launchApp(driverPort, dataDir, size, extra = []) {
  const t0 = Date.now();
  const browser = await remote({
    hostname: "127.0.0.1",
    port: driverPort,
    logLevel: "error",
    capabilities: { "tauri:options": { application: app, args: ["--data-dir", dataDir, "--bind", "127.0.0.1:0", "--camera-size", size, ...gpu, ...extra] } },
  });
  await (await browser.$(".resident-home")).waitForExist({ timeout: 30_000 });
  const painted = await waitFor("the first paint mark", () => browser.execute(() => window.hearthFirstPaint));
  const pid = hearthPid(dataDir);
  return { browser, pid, startupMs: Math.round(painted - startedAtMs(pid)), sessionMs: Date.now() - t0 };
}

function residentDir(name, wsUrl, room) {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "settings.json"),
    JSON.stringify({
      invitation: { server: wsUrl, token: h.mint("Tablet", "resident", room) },
      devices: { camera: "synthetic", microphone: "synthetic", speaker: "none" },
      resident: { auto_answer: true, auto_answer_seconds: 0, contacts: [{ name: "Caller", trusted: true }] },
    }),
  );
  return dir;
}

async function cliCalls(wsUrl, room, size, callee) {
  const stats = join(work, `caller-${room}.json`);
  const c = h.startCli(["--server", wsUrl, "--bind", "127.0.0.1:0", "--size", size, "--codecs", "vp8", "--token", h.mint("Caller", "family", room), "--duration", String(seconds + 16), "--stats-json", stats, "call", callee]);
  await waitFor("the call connecting", () => /in a call/.test(c.output()), 30_000);
  return { c, stats };
}

/** CPU seconds so far of each process in `pid`'s tree, by its name. */
function cpuByProcess(pid) {
  const out = {};
  for (const p of tree(pid)) {
    try {
      const s = readFileSync(`/proc/${p}/stat`, "utf8");
      const name = s.slice(s.indexOf("(") + 1, s.lastIndexOf(")"));
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / TICKS;
    } catch {}
  }
  return out;
}

async function measureCall(pid, run, page, thenWithoutDrawing) {
  await sleep(3000);
  const cpu0 = treeCpuSeconds(pid);
  const by0 = cpuByProcess(pid);
  await sleep(seconds * 1000);
  const cpu1 = treeCpuSeconds(pid);
  const by1 = cpuByProcess(pid);
  const byProcess = Object.fromEntries(Object.entries(by1).map(([k, v]) => [k, Math.round(((v - (by0[k] ?? 0)) / seconds) * 100) / 100]));
  const extra = page ? await page() : {};
  const mem = memory(pid);
  if (thenWithoutDrawing) {
    // The same call for 8 s more with the page receiving pictures but not drawing them: what
    // the channel costs apart from the drawing.
    await thenWithoutDrawing(false);
    const a = cpuByProcess(pid);
    await sleep(8000);
    const z = cpuByProcess(pid);
    await thenWithoutDrawing(true);
    extra.notDrawingByProcess = Object.fromEntries(Object.entries(z).map(([k, v]) => [k, Math.round(((v - (a[k] ?? 0)) / 8) * 100) / 100]));
  }
  await run.c.exited;
  const got = Object.values(JSON.parse(readFileSync(run.stats, "utf8")).peers)[0];
  return { cores: (cpu1 - cpu0) / seconds, byProcess, ...mem, ...extra, framesFromEndpoint: got?.frames_decoded ?? 0 };
}

async function main() {
  const display = `:${80 + Math.floor(Math.random() * 9)}`;
  start("Xvfb", [display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"]);
  process.env.DISPLAY = display;
  const wsUrl = await h.startSignaling();
  const driverPort = 4444 + Math.floor(Math.random() * 1000);
  start("tauri-driver", ["--port", String(driverPort), "--native-driver", "/usr/bin/WebKitWebDriver"]);
  await sleep(1500);
  const results = { startup: [], idle: null, calls: {} };

  for (let i = 0; i < 3; i++) {
    const dir = residentDir(`startup-${i}`, wsUrl, `startup-${i}`);
    const a = await launchApp(driverPort, dir, "640x480");
    results.startup.push(a.startupMs);
    if (i === 2) {
      await sleep(10_000);
      results.idle = memory(a.pid);
    }
    await a.browser.deleteSession();
    await sleep(500);
  }

  const page = await servePage();
  // The app's call at one size: the page decodes (WebCodecs, the default) or, with
  // --decode-video-here, the app decodes and sends pictures (the fallback).
  const appCall = async (size, extra) => {
    const tag = extra.length ? "app-decodes" : "page-decodes";
    const room = `app-${size}-${tag}`;
    const dir = residentDir(`call-${size}-${tag}`, wsUrl, room);
    const a = await launchApp(driverPort, dir, size, extra);
    const run = await cliCalls(wsUrl, room, size, "Tablet");
    const result = await measureCall(a.pid, run, async () => {
      const [painted, channelDelayMs, path] = await a.browser.execute(() => {
        const c = document.querySelector("canvas.video[data-peer]");
        return [c ? window.hearthVideo.painted(c.dataset.peer) : 0, window.hearthVideo.delay(), c ? window.hearthVideo.path(c.dataset.peer) : null];
      });
      return { picturesPainted: painted, channelDelayMs, path };
    }, (on) => a.browser.execute((d) => window.hearthVideo.setDrawing(d), on));
    await a.browser.deleteSession();
    return result;
  };
  for (const [w, hgt] of [[640, 480], [1280, 720]]) {
    const size = `${w}x${hgt}`;
    const appResult = await appCall(size, []);
    const fallback = size === "640x480" ? await appCall(size, ["--decode-video-here"]) : undefined;

    // The same call answered by Chromium (peer.js, VP8 like the app, fake camera at the same size).
    const chrome = await launchChromiumServer();
    const tab = await chrome.browser.newPage();
    await tab.goto(page.url);
    const croom = `chromium-${size}`;
    await tab.evaluate(([u, t, o]) => window.hearth.connect(u, t, o), [wsUrl, h.mint("Tablet", "resident", croom), { prefer: "VP8", width: w, height: hgt, keepSize: true, autoAnswer: true }]);
    const crun = await cliCalls(wsUrl, croom, size, "Tablet");
    const chromeResult = await measureCall(chrome.pid, crun);
    await chrome.close();
    results.calls[size] = { app: appResult, appDecoding: fallback, chromium: chromeResult, cpuRatio: appResult.cores / chromeResult.cores };
  }
  page.close?.();

  const bundles = join(h.bin(""), "bundle");
  results.installers = {};
  for (const kind of ["deb", "rpm"]) {
    try {
      for (const f of readdirSync(join(bundles, kind))) {
        if (f.endsWith(`.${kind}`)) results.installers[f] = Math.round(statSync(join(bundles, kind, f)).size / 1024 / 102.4) / 10;
      }
    } catch {}
  }
  console.log(JSON.stringify(results, null, 2));
}

main()
  .then(() => {
    h.cleanup();
    for (const c of children) c.kill("SIGKILL");
    process.exit(0);
  })
  .catch((e) => {
    console.error("bench failed:", e);
    h.cleanup();
    for (const c of children) c.kill("SIGKILL");
    process.exit(1);
  });

// Shared by the end-to-end tests (the app under tauri-driver, the browser mode in Chromium):
// child processes with their output kept, waiting for a condition, and reading a canvas to tell
// whether it shows a moving picture.
import { execFileSync, spawn } from "node:child_process";
import { createServer } from "node:net";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Child processes started by a test: output kept for a failure's report, stopped at exit. */
export const children = [];

/** Starts `cmd`; `opts.name` labels its output, `opts.env` its environment. The child gets
 *  `log()` (everything it printed) and `exited` (its exit code, when it comes). */
export function start(cmd, args, opts = {}) {
  const { name, ...rest } = opts;
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...rest });
  const log = [];
  child.stdout.on("data", (d) => log.push(String(d)));
  child.stderr.on("data", (d) => log.push(String(d)));
  child.log = () => log.join("");
  child.label = name ?? cmd.split("/").pop();
  child.exited = new Promise((ok) => child.on("exit", ok));
  children.push(child);
  return child;
}

/** A TCP port free on 127.0.0.1 now. */
export function freePort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** `mint(room, role, name, sub?)`: an hour's token signed with `secret`, by `hearth-signaling
 *  mint` (the binary at `signaling`); its subject `sub`, or a random one. */
export const minter = (signaling, secret) => (room, role, name, sub) =>
  execFileSync(signaling, ["mint", "--room", room, "--role", role, "--name", name, "--ttl", "1h", ...(sub ? ["--sub", sub] : [])], {
    env: { ...process.env, HEARTH_SECRET: secret },
  })
    .toString()
    .trim();

/** Debian's Chromium, headless, set up for calls: fake camera and microphone (a moving
 *  pattern and a beep) given without asking, peer connections on loopback with plain
 *  addresses, and software WebGL. */
export async function launchCallBrowser() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--use-gl=swiftshader", "--enable-unsafe-swiftshader",
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
      "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
      "--disable-features=WebRtcHideLocalIpsWithMdns",
    ],
  });
}

/** Stops every child still running. */
export function stopAll() {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
}

/** The last lines of each child's output, for a failure's report. */
export function reportChildren() {
  for (const c of children) console.error(`--- ${c.label} ---\n${c.log().slice(-3000)}`);
}

/** Polls `fn` until it returns something truthy, which is returned. */
export async function until(what, fn, timeoutMs = 30_000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

/** Runs in the page: the canvas `sel` scaled to 64x48, its colours (3 bits a channel), mean
 *  brightness and pixels; null before it has any. */
function sampleCanvas(sel) {
  const c = document.querySelector(sel);
  if (!c || c.width === 0) return null;
  const copy = document.createElement("canvas");
  copy.width = 64;
  copy.height = 48;
  const ctx = copy.getContext("2d");
  ctx.drawImage(c, 0, 0, 64, 48);
  const d = ctx.getImageData(0, 0, 64, 48).data;
  const colours = new Set();
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) {
    colours.add(`${d[i] >> 5},${d[i + 1] >> 5},${d[i + 2] >> 5}`);
    sum += d[i] + d[i + 1] + d[i + 2];
  }
  return { colours: colours.size, mean: sum / (d.length * 0.75), pixels: Array.from(d) };
}

/** Whether the canvas `selector` shows a coloured picture (at least `minColours`, not dark)
 *  that moves within `moveWithinMs`. `run(fn, arg)` runs a function in the page
 *  (WebdriverIO's `execute`, Playwright's `evaluate`). */
export async function paintedPattern(run, selector, { minColours = 5, moveWithinMs = 8_000 } = {}) {
  const sample = () => run(sampleCanvas, selector);
  const a = await until(`pixels in ${selector}`, async () => {
    const s = await sample();
    return s && s.colours >= minColours && s.mean > 30 ? s : null;
  });
  await until(
    `${selector} to move`,
    async () => {
      await sleep(400);
      const b = await sample();
      return b && a.pixels.some((v, i) => Math.abs(v - b.pixels[i]) > 40);
    },
    moveWithinMs,
  ).catch(() => {
    throw new Error(`${selector} shows a still picture`);
  });
  return { colours: a.colours, mean: Math.round(a.mean) };
}

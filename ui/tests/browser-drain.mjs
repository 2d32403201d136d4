// The browser mode through a cluster: Debian's nats-server, three hearth-signaling nodes sharing
// rooms through it, and nginx balancing over them with no stickiness (the example files in
// packaging/server/, with this test's ports put in). The page is served through nginx, as a
// deployment serves it. Run inside a loopback-only network namespace (scripts/test does).
//
//   1. A relative's page waits on the family screen. The node it is on drains (SIGTERM): the
//      page leaves it at the time the node gave, closing the connection itself, and resumes
//      its session on another node; the screen never says it is reconnecting.
//   2. The relative calls a hearth-cli resident (connected straight to the third node). In the
//      call, the page's node drains again: the page moves and resumes, and the call goes on in
//      both directions (the page still paints the resident's moving picture; hearth-cli
//      decodes the page's video all through).
//
// Usage: node tests/browser-drain.mjs <target dir>   (needs hearth-signaling, hearth-cli; ui/dist)
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, launchCallBrowser, minter, paintedPattern as painted, reportChildren, start, stopAll, until } from "./harness.mjs";

const bin = resolve(process.argv[2] ?? "../target/debug");
const dist = fileURLToPath(new URL("../dist/", import.meta.url));
const packaging = fileURLToPath(new URL("../../packaging/server/", import.meta.url));
const secret = (await import("node:crypto")).randomBytes(32).toString("hex");
const work = mkdtempSync(join(tmpdir(), "hearth-drain-"));

const need = (program) => {
  const found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map((d) => join(d, program)).find(existsSync);
  if (!found) throw new Error(`${program} is not installed (./scripts/test installs it)`);
  return found;
};

/** An example file from packaging/server/ with this test's values put in; each must be there. */
function configure(name, replacements) {
  let text = readFileSync(join(packaging, name), "utf8");
  for (const [from, to] of replacements) {
    if (!text.includes(from)) throw new Error(`packaging/server/${name} has no "${from}" to replace`);
    text = text.split(from).join(to);
  }
  const path = join(work, name);
  writeFileSync(path, text);
  return path;
}

const mint = minter(join(bin, "hearth-signaling"), secret);

/** How many clients node `n` serves, from its metrics. */
async function connections(n) {
  const text = await (await fetch(`http://${n.addr}/metrics`)).text();
  const m = text.match(/^hearth_connections(?:\{[^}]*\})? (\d+)/m);
  if (!m) throw new Error(`no hearth_connections in ${n.name}'s metrics`);
  return Number(m[1]);
}

async function main() {
  const natsPort = await freePort();
  const natsConf = configure("nats-server.conf", [
    ["listen: 127.0.0.1:4222", `listen: 127.0.0.1:${natsPort}`],
    ["/var/lib/hearth-nats", join(work, "jetstream")],
  ]);
  start(need("nats-server"), ["-c", natsConf], { name: "nats-server" });
  const nodes = [];
  for (const i of [1, 2, 3]) {
    const child = start(
      join(bin, "hearth-signaling"),
      ["serve", "--listen", "127.0.0.1:0", "--store", "memory", "--node-id", `n${i}`, "--drain-timeout", "10s", "--nats-url", `nats://127.0.0.1:${natsPort}`, "--web-root", dist],
      { name: `node n${i}`, env: { ...process.env, HEARTH_SECRET: secret, RUST_LOG: "info,async_nats=warn" } },
    );
    const addr = await until(`node n${i}'s address`, () => child.log().match(/WebSocket at ws:\/\/(\S+)\/v1\/ws/)?.[1]);
    nodes.push({ name: `n${i}`, child, addr });
  }
  const lbPort = await freePort();
  const nginxConf = configure("nginx.conf", [
    ["listen 127.0.0.1:8080;", `listen 127.0.0.1:${lbPort};`],
    ...nodes.map((n, i) => [`127.0.0.1:780${i + 1}`, n.addr]),
  ]);
  mkdirSync(join(work, "logs"), { recursive: true });
  start(need("nginx"), ["-p", work, "-c", nginxConf, "-g", "daemon off; master_process off;"], { name: "nginx" });
  const base = `http://127.0.0.1:${lbPort}`;
  await until("nginx and every node ready", async () => (await fetch(`${base}/readyz`)).ok);

  const staff = mint("office", "staff", "Nurse Yoon");
  const r = await fetch(`${base}/v1/invitations`, {
    method: "POST",
    headers: { authorization: `Bearer ${staff}`, "content-type": "application/json" },
    body: JSON.stringify({ room: "kim", role: "family", name: "Ann" }),
  });
  if (r.status !== 201) throw new Error(`invitation: ${r.status} ${await r.text()}`);
  const { code } = await r.json();

  const browser = await launchCallBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("console", (m) => m.type() === "error" && console.error(`page: ${m.text()}`));
    // What the page and the servers say to each other, socket by socket (Playwright passes
    // each through), with when the page closed each.
    const sockets = [];
    await page.routeWebSocket(/\/v1\/ws$/, (ws) => {
      const server = ws.connectToServer();
      const c = { sent: [], got: [], closedByPage: null };
      sockets.push(c);
      ws.onMessage((m) => {
        c.sent.push(JSON.parse(String(m)));
        server.send(m);
      });
      server.onMessage((m) => {
        c.got.push({ at: Date.now(), msg: JSON.parse(String(m)) });
        ws.send(m);
      });
      ws.onClose((code, reason) => {
        c.closedByPage = { at: Date.now(), code };
        server.close({ code, reason });
      });
      server.onClose((code, reason) => ws.close({ code, reason }));
    });
    // Whether the screen said it was connecting again (the connecting screen's heading), from
    // when `hearthSaid` is emptied.
    await page.addInitScript(() => {
      window.hearthSaid = [];
      new MutationObserver(() => {
        for (const h of document.querySelectorAll("h1")) {
          if (/Connecting to Hearth|Cannot reach the Hearth server/.test(h.textContent ?? "")) window.hearthSaid.push(h.textContent);
        }
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });
    await page.goto(`${base}/join/${code}`);
    const home = page.getByRole("heading", { name: "Who would you like to call?" });
    await home.waitFor({ timeout: 20_000 });

    /** The node serving the page's connection, by its metrics; `others` clients elsewhere. */
    const pageNode = async (except = []) =>
      until("the page's node", async () => {
        const counts = await Promise.all(nodes.map((n) => (n.gone ? 0 : connections(n))));
        const here = nodes.filter((n, i) => !n.gone && !except.includes(n) && counts[i] > 0);
        return here.length === 1 ? here[0] : null;
      });

    /** Drains the page's node and checks the page moved as it should; returns where it went. */
    const drain = async (node, what) => {
      const before = sockets.length;
      const last = sockets[before - 1];
      const welcome = sockets[0].got.find((g) => g.msg.type === "welcome")?.msg;
      if (!welcome?.resume_secret) throw new Error(`no welcome with a resume secret: ${JSON.stringify(sockets[0].got)}`);
      await page.evaluate(() => (window.hearthSaid = []));
      node.child.kill("SIGTERM");
      node.gone = true;
      const shutdown = await until(`${what}: the node's shutdown notice`, () => last.got.find((g) => g.msg.type === "shutdown"), 10_000);
      const next = await until(`${what}: the page reconnects`, () => sockets[before], 10_000);
      const answer = await until(`${what}: the answer to the resume`, () => next.got.find((g) => ["resumed", "welcome", "error"].includes(g.msg.type)), 10_000);
      const hello = next.sent.find((m) => m.type === "hello");
      if (hello?.resume?.peer !== welcome.peer || answer.msg.type !== "resumed" || answer.msg.peer !== welcome.peer) {
        throw new Error(`${what}: the page did not resume its session: hello ${JSON.stringify(hello?.resume)}, answer ${JSON.stringify(answer.msg)}`);
      }
      // The page left at the time the node gave (within a second), not at the node's drain
      // deadline (10 s), and closed the connection itself.
      const given = shutdown.msg.retry_after_ms;
      const waited = last.closedByPage ? last.closedByPage.at - shutdown.at : null;
      if (waited === null || waited < given - 50 || waited > given + 1000) {
        throw new Error(`${what}: the node said move in ${given} ms; the page closed ${waited === null ? "nothing" : `after ${waited} ms`}`);
      }
      const code = await node.child.exited;
      const moved = await pageNode([node]);
      console.log(`browser-drain: ${what}: ${node.name} drained (exit ${code}); the page left ${waited} ms after being told ${given} ms, resumed session ${welcome.peer.slice(0, 8)} on ${moved.name} (last seq ${hello.resume.last_seq})`);
      return moved;
    };

    // 1. On the family screen.
    const first = await pageNode();
    const second = await drain(first, "waiting on the family screen");
    await home.waitFor({ timeout: 1_000 });
    const said = await page.evaluate(() => window.hearthSaid);
    if (said.length) throw new Error(`the screen said it was reconnecting during a move that worked: ${JSON.stringify(said)}`);
    console.log("browser-drain: the screen never said it was reconnecting");

    // 2. In a call with a hearth-cli resident on the third node.
    const third = nodes.find((n) => !n.gone && n !== second);
    const kimStats = join(work, "kim.json");
    const kim = start(
      join(bin, "hearth-cli"),
      ["--server", `ws://${third.addr}/v1/ws`, "--bind", "127.0.0.1:0", "--duration", "14", "--expect-media", "--stats-json", kimStats, "answer"],
      { name: "cli-kim", env: { ...process.env, HEARTH_TOKEN: mint("kim", "resident", "Mrs Kim") } },
    );
    const call = page.getByRole("button", { name: "Call Mrs Kim" });
    await until("Mrs Kim available", () => call.isEnabled());
    await call.click();
    const remote = page.locator("canvas.video[data-peer]");
    await remote.waitFor({ timeout: 20_000 });
    const peer = await remote.getAttribute("data-peer");
    const selector = `canvas.video[data-peer="${peer}"]`;
    await painted((fn, arg) => page.evaluate(fn, arg), selector, { moveWithinMs: 700 });
    console.log("browser-drain: in the call, Mrs Kim's moving picture is painted");
    await drain(second, "in a call");
    // The call goes on: the same picture still moves, and the page still shows the call.
    await painted((fn, arg) => page.evaluate(fn, arg), selector, { moveWithinMs: 700 });
    await page.getByRole("button", { name: /End/ }).first().waitFor({ timeout: 1_000 });
    const exit = await kim.exited;
    if (exit !== 0) throw new Error(`hearth-cli exited ${exit}:\n${kim.log()}`);
    const got = Object.values(JSON.parse(readFileSync(kimStats, "utf8")).peers ?? {})[0];
    // Chromium's fake camera gives about 18 a second here (257-259 in 14 s). The drain comes
    // 2-3 s into the call: a picture that stopped there would give about 50; 120 leaves room
    // for a busy machine.
    if (!got || got.frames_decoded < 120) throw new Error(`hearth-cli did not decode the page's video all through: ${JSON.stringify(got)}`);
    // Nor did the resident see Ann leave, or the call end, before hanging up at the end.
    if (/ left$|^call with .* ended/m.test(kim.log())) throw new Error(`hearth-cli saw the page leave:\n${kim.log()}`);
    console.log(`browser-drain: the call went on through the drain; hearth-cli decoded ${got.frames_decoded} frames from the page`);
  } finally {
    await browser.close();
  }
  console.log("browser-drain: all passed");
}

main().then(
  () => {
    stopAll();
    process.exit(0);
  },
  (e) => {
    console.error("browser-drain FAILED:", e);
    reportChildren();
    stopAll();
    process.exit(1);
  },
);

// The browser mode end to end in headless Chromium (fake camera and microphone), against a real
// signaling server that serves the page at invitation links, and hearth-cli peers. Run inside a
// loopback-only network namespace (scripts/test does).
//
//   1. A relative without the app opens their invitation link, sees the resident, calls a
//      hearth-cli resident: both directions decode video (the page's canvas shows the moving
//      pattern; hearth-cli decodes the browser's frames in order).
//   2. A patient opens a consult link: the waiting screen runs the check and the clinician's
//      lobby gets its result; a hearth-cli clinician admits and calls; both directions decode.
//   3. A withdrawn invitation keeps the browser out: the page says so.
// Every live screen on the way is checked with axe-core (zero violations).
//
// Usage: node tests/browser.mjs <target dir> [--screenshots]
//   (needs hearth-signaling, hearth-cli; ui/dist built; --screenshots writes docs/screenshots/)
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const bin = resolve(process.argv[2] ?? "../target/debug");
const dist = fileURLToPath(new URL("../dist/", import.meta.url));
const secret = (await import("node:crypto")).randomBytes(32).toString("hex");
const work = mkdtempSync(join(tmpdir(), "hearth-browser-"));
const { axeViolations } = await import("./serve.mjs");
const { launchCallBrowser, minter, paintedPattern: painted, reportChildren, start, stopAll, until } = await import("./harness.mjs");
const shotDir = process.argv.includes("--screenshots") ? fileURLToPath(new URL("../../docs/screenshots/", import.meta.url)) : null;

/** axe-core over the live screen, and a screenshot of it when asked. */
async function check(page, name) {
  const problems = await axeViolations(page);
  if (problems.length) throw new Error(`accessibility of ${name}:\n  ${problems.join("\n  ")}`);
  if (shotDir) {
    mkdirSync(shotDir, { recursive: true });
    await page.screenshot({ path: join(shotDir, `browser-${name}.png`) });
  }
  console.log(`browser: ${name} has no accessibility violations`);
}

/** Starts a process with `env` added to this one's. */
const run = (cmd, args, name, env = {}) => start(cmd, args, { name, env: { ...process.env, ...env } });

const mint = minter(join(bin, "hearth-signaling"), secret);

/** Whether the page's canvas `selector` shows a moving, coloured picture (within 700 ms). */
const paintedPattern = async (page, selector) =>
  (await painted((fn, arg) => page.evaluate(fn, arg), selector, { moveWithinMs: 700 })).colours;

async function main() {
  const server = run(
    join(bin, "hearth-signaling"),
    ["serve", "--listen", "127.0.0.1:0", "--store", join(work, "hearth.redb"), "--web-root", dist],
    "signaling",
    { HEARTH_SECRET: secret },
  );
  const base = await until("the server's address", async () => {
    const m = server.log().match(/WebSocket at ws:\/\/(\S+)\/v1\/ws/);
    return m ? `http://${m[1]}` : null;
  });
  const url = `${base.replace("http", "ws")}/v1/ws`;
  // The page is served with a content security policy, and everything below runs under it.
  const head = await fetch(`${base}/join/ABCD2345`);
  if (!/script-src 'self'/.test(head.headers.get("content-security-policy") ?? "")) throw new Error("the page has no content security policy");
  const staff = mint("office", "staff", "Nurse Yoon");
  const invite = async (room, role, name) => {
    const r = await fetch(`${base}/v1/invitations`, {
      method: "POST",
      headers: { authorization: `Bearer ${staff}`, "content-type": "application/json" },
      body: JSON.stringify({ room, role, name }),
    });
    if (r.status !== 201) throw new Error(`invitation: ${r.status} ${await r.text()}`);
    return r.json();
  };

  const browser = await launchCallBrowser();
  try {
    // The made-up screens (`?fixture=`, for the accessibility run) are not shown at an
    // invitation's link: the page is the browser mode, which redeems the code.
    const fake = await browser.newPage();
    const redeemed = fake.waitForRequest(/\/v1\/redeem$/, { timeout: 20_000 });
    await fake.goto(`${base}/join/ABCD2345?fixture=family-ringing`);
    await redeemed;
    if (await fake.getByText("Mrs Kim").count()) throw new Error("an invitation's link showed a made-up screen");
    await fake.close();
    console.log("browser: an invitation's link with ?fixture= is still the browser mode");

    // 1. A relative calls a resident from the invitation link.
    const kimStats = join(work, "kim.json");
    const kim = run(
      join(bin, "hearth-cli"),
      ["--server", url, "--bind", "127.0.0.1:0", "--duration", "8", "--expect-media", "--stats-json", kimStats, "answer"],
      "cli-kim",
      { HEARTH_TOKEN: mint("kim", "resident", "Mrs Kim") },
    );
    const ann = await invite("kim", "family", "Ann");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("console", (m) => m.type() === "error" && console.error(`page: ${m.text()}`));
    await page.goto(ann.link);
    const call = page.getByRole("button", { name: "Call Mrs Kim" });
    await call.waitFor({ timeout: 20_000 });
    await until("Mrs Kim available", () => call.isEnabled());
    console.log(`browser: ${ann.link} opens the family screen; Mrs Kim is there`);
    await check(page, "guest-home");
    await call.click();
    const remote = page.locator("canvas.video[data-peer]");
    await remote.waitFor({ timeout: 20_000 });
    const peer = await remote.getAttribute("data-peer");
    const colours = await paintedPattern(page, `canvas.video[data-peer="${peer}"]`);
    const path = await page.evaluate((p) => window.hearthVideo.path(p), peer);
    if (path !== "browser") throw new Error(`the browser's own WebRTC should draw this, not ${path}`);
    console.log(`browser: hearth-cli's moving pattern is painted (${colours} colours, the browser's WebRTC)`);
    await check(page, "guest-in-call");
    const code = await kim.exited;
    if (code !== 0) throw new Error(`hearth-cli exited ${code}:\n${kim.log()}`);
    const got = Object.values(JSON.parse(readFileSync(kimStats, "utf8")).peers ?? {})[0];
    if (!got || got.frames_decoded < 60) throw new Error(`hearth-cli did not decode the browser's video: ${JSON.stringify(got)}`);
    console.log(`browser: hearth-cli decoded ${got.frames_decoded} frames from the browser`);
    await page.getByRole("heading", { name: /ended the call/ }).waitFor({ timeout: 10_000 });
    // hearth-cli (Mrs Kim's tablet here) has left the room: she stays on the list, not available.
    await page.getByText("Not available").waitFor({ timeout: 20_000 });
    if (await call.isEnabled()) throw new Error("a resident who is away can be called");
    console.log("browser: Mrs Kim's tablet has gone; she stays on the list as not available");
    await page.close();

    // A room that has as many people present as it holds: the server answers `hello` with
    // room_full and closes (signaling/tests/protocol.rs has the real server do so). The page
    // keeps trying and says why, not that the server cannot be reached.
    const full = await browser.newPage();
    await full.routeWebSocket(/\/v1\/ws$/, (ws) => {
      ws.onMessage(() => {
        ws.send(JSON.stringify({ type: "error", code: "room_full", message: "There is no room for anyone else here right now." }));
        ws.close({ code: 1008, reason: "room_full" });
      });
    });
    await full.goto((await invite("kim", "family", "Bea")).link);
    await full.getByText("Too many people are connected to this room right now").waitFor({ timeout: 20_000 });
    if (await full.getByText("Check that this device is connected to the internet").count()) throw new Error("a full room was shown as no internet");
    await full.close();
    console.log("browser: a full room is said to be full while the page keeps trying");

    // 2. A patient waits, is checked, admitted and called by a hearth-cli clinician.
    const patientInv = await invite("consult", "patient", "Mr Park");
    const docStats = join(work, "doc.json");
    const patient = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    // The page's WebSockets pass through Playwright, which can cut one as a network would.
    const sockets = [];
    await patient.routeWebSocket(/\/v1\/ws$/, (ws) => {
      const server = ws.connectToServer();
      const c = { ws, server, sent: [], got: [] };
      sockets.push(c);
      ws.onMessage((m) => { c.sent.push(JSON.parse(String(m))); server.send(m); });
      server.onMessage((m) => { c.got.push(JSON.parse(String(m))); ws.send(m); });
    });
    await patient.goto(patientInv.link);
    await patient.getByRole("heading", { name: "The doctor will be with you soon" }).waitFor({ timeout: 20_000 });
    await patient.getByText("Camera: works").waitFor({ timeout: 20_000 });
    console.log("browser: the patient waits; the check ran (camera and microphone work)");
    await check(patient, "patient-waiting");
    // The connection drops while the patient waits: the page resumes its session (same id, its
    // place kept) and says nothing alarming; the clinician below finds it in the queue.
    const first = sockets[0];
    const waiting = first.got.find((m) => m.type === "waiting");
    if (!waiting?.resume_secret) throw new Error(`no waiting message with a resume secret: ${JSON.stringify(first.got)}`);
    first.server.close({ code: 1011, reason: "cut by the test" });
    first.ws.close({ code: 1011, reason: "cut by the test" });
    const second = await until("the page reconnects", () => sockets[1]);
    const resumed = await until("the server answers the resume", () => second.got.find((m) => m.type === "resumed" || m.type === "waiting"));
    const hello = second.sent.find((m) => m.type === "hello");
    if (hello?.resume?.peer !== waiting.peer || resumed.type !== "resumed" || resumed.peer !== waiting.peer) {
      throw new Error(`the page did not resume its session: hello ${JSON.stringify(hello?.resume)}, answer ${JSON.stringify(resumed)}`);
    }
    await patient.getByRole("heading", { name: "The doctor will be with you soon" }).waitFor({ timeout: 10_000 });
    console.log(`browser: the patient's connection was cut; the page resumed session ${waiting.peer.slice(0, 8)} (last seq ${hello.resume.last_seq}) and still waits`);
    // A reload keeps the place too: the page does not leave the queue as it goes, and the same
    // invitation coming back is given its place and id.
    // The page's `pagehide` handler runs first while its socket is still open (Chromium may
    // close the socket before a send made during a real unload goes out).
    await patient.evaluate(() => window.dispatchEvent(new PageTransitionEvent("pagehide", { persisted: false })));
    await patient.reload();
    const third = await until("the reloaded page connects", () => sockets[2]);
    const back = await until("the reloaded page waits", () => third.got.find((m) => m.type === "waiting"));
    if (second.sent.some((m) => m.type === "leave") || back.peer !== waiting.peer || back.position !== waiting.position) {
      throw new Error(`a reload lost the place: before ${JSON.stringify(waiting)}, after ${JSON.stringify(back)}`);
    }
    await patient.getByRole("heading", { name: "The doctor will be with you soon" }).waitFor({ timeout: 10_000 });
    console.log(`browser: reloaded while waiting; the same place (${back.position}) and id`);
    const doctor = run(
      join(bin, "hearth-cli"),
      ["--server", url, "--bind", "127.0.0.1:0", "--duration", "8", "--expect-media", "--stats-json", docStats, "consult"],
      "cli-doctor",
      { HEARTH_TOKEN: mint("consult", "clinician", "Dr Cho") },
    );
    const remote2 = patient.locator("canvas.video[data-peer]");
    await remote2.waitFor({ timeout: 20_000 });
    const peer2 = await remote2.getAttribute("data-peer");
    const c2 = await paintedPattern(patient, `canvas.video[data-peer="${peer2}"]`);
    console.log(`browser: admitted, the consult started by itself; the clinician's picture is painted (${c2} colours)`);
    const dcode = await doctor.exited;
    if (dcode !== 0) throw new Error(`hearth-cli clinician exited ${dcode}:\n${doctor.log()}`);
    // The clinician hung up: the consult is over, and the page leaves the room, so that it
    // keeps no place the clinician's next patients need.
    await patient.getByRole("heading", { name: "The consultation has ended" }).waitFor({ timeout: 15_000 });
    const last = sockets[sockets.length - 1];
    await until("the page to leave the room", () => last.sent.some((m) => m.type === "leave"));
    console.log("browser: the clinician hung up; the page says the consultation has ended and left the room");
    if (!/waiting room: Mr Park/.test(doctor.log())) throw new Error("the clinician did not see Mr Park waiting");
    const dgot = Object.values(JSON.parse(readFileSync(docStats, "utf8")).peers ?? {})[0];
    if (!dgot || dgot.frames_decoded < 60) throw new Error(`the clinician did not decode the patient's video: ${JSON.stringify(dgot)}`);
    console.log(`browser: the clinician decoded ${dgot.frames_decoded} frames from the patient`);
    const audit = await (await fetch(`${base}/v1/audit?room=consult`, { headers: { authorization: `Bearer ${staff}` } })).text();
    if (!/"event":"admitted".*"name":"Mr Park"/.test(audit.replace(/\n/g, " "))) throw new Error(`no admission in the audit trail:\n${audit}`);
    await patient.close();

    // 3. A withdrawn invitation keeps the browser out.
    const gone = await browser.newPage();
    const r = await fetch(`${base}/v1/invitations/${ann.id}`, { method: "DELETE", headers: { authorization: `Bearer ${staff}` } });
    if (r.status !== 200) throw new Error(`revoke: ${r.status}`);
    await gone.goto(ann.link);
    await gone.getByText("The care home withdrew this invitation").waitFor({ timeout: 20_000 });
    console.log("browser: after the invitation is withdrawn, its link shows that it was withdrawn");
    await check(gone, "guest-withdrawn");
    await gone.close();
  } finally {
    await browser.close();
  }
  console.log("browser mode: all passed");
}

main().then(
  () => {
    stopAll();
    process.exit(0);
  },
  (e) => {
    console.error("browser FAILED:", e);
    reportChildren();
    stopAll();
    process.exit(1);
  },
);

// Accessibility of every screen of both modes, in English and Korean: axe-core in Debian's
// Chromium, zero violations allowed. Then the resident mode's own rules, measured on the
// rendered page: text at least 28 px, touch targets at least 88 px, contrast at least 7:1.
// Also writes the screenshots under docs/screenshots/ when called with --screenshots.
import { mkdirSync } from "node:fs";
import { axeViolations, launch, serveDist } from "./serve.mjs";

const screenshots = process.argv.includes("--screenshots");
const shotDir = new URL("../../docs/screenshots/", import.meta.url);

const fixtures = [
  "setup", "setup-error", "connecting", "refused",
  "resident-idle", "resident-ringing", "resident-auto-answer", "resident-calling", "resident-in-call", "resident-in-call-weak", "resident-ended",
  "family-idle", "family-ringing", "family-calling", "family-in-call", "family-in-call-muted", "family-ended", "family-devices", "family-check",
  "clinician-lobby", "clinician-empty", "clinician-consult",
  "patient-checking", "patient-waiting", "patient-in-consult", "patient-denied",
  "staff-tablets", "staff-rules", "staff-invitations", "staff-audit",
];
// Screens reached from a fixture by a click: the fixture, then what to press.
const opened = { "staff-rules": ["staff-tablets", 'button[aria-expanded="false"]'] };
const shots = {
  "resident-idle": 1, "resident-ringing": 1, "resident-in-call": 1, "family-idle": 1, "family-ringing": 1, "family-in-call": 1,
  "clinician-lobby": 1, "clinician-consult": 1, "patient-waiting": 1, "staff-tablets": 1, "staff-invitations": 1,
};

// The resident's rules, checked in the page: every visible text node's font size, every
// button's box, and the contrast of text against the nearest opaque background.
function residentRules() {
  const problems = [];
  const lum = (c) => {
    const [r, g, b] = c.map((v) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const rgb = (s) => (s.match(/[\d.]+/g) ?? []).map(Number);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length === 3 || c[3] >= 0.7)) return c.slice(0, 3);
    }
    return [16, 20, 24];
  };
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && !el.closest(".visually-hidden");
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || !n.textContent.trim() || !visible(el) || el.closest("[aria-hidden=true]")) continue;
    const style = getComputedStyle(el);
    const size = parseFloat(style.fontSize);
    if (size < 28) problems.push(`text "${n.textContent.trim().slice(0, 30)}" is ${size}px`);
    const fg = rgb(style.color);
    const bg = background(el);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 7) problems.push(`text "${n.textContent.trim().slice(0, 30)}" has contrast ${ratio.toFixed(2)}:1`);
  }
  for (const el of document.querySelectorAll("button, [role=button], a, input, select, textarea")) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.width < 88 || r.height < 88) problems.push(`target "${(el.textContent || el.getAttribute("aria-label") || "").trim().slice(0, 30)}" is ${Math.round(r.width)}x${Math.round(r.height)}px`);
  }
  return problems;
}

const server = await serveDist();
/** What is wrong with the device names the devices screen shows in `lang`. */
async function deviceNames(page, lang) {
  const want = {
    en: ["Test pattern (moving colour bars)", "Test tone (a beep)", /^Microphone \d+$/],
    ko: ["테스트 화면 (움직이는 색 막대)", "테스트 소리 (삐 소리)", /^마이크 \d+$/],
  }[lang];
  await page.waitForSelector("option[value='synthetic']", { state: "attached" });
  const shown = await page.evaluate(() => [...document.querySelectorAll("option")].map((o) => (o.textContent ?? "").trim()));
  return want
    .filter((w) => !shown.some((s) => (typeof w === "string" ? s === w : w.test(s))))
    .map((w) => `device names: no option ${w} among ${JSON.stringify(shown)}`);
}

const browser = await launch();
let failures = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  for (const lang of ["en", "ko"]) {
    for (const f of fixtures) {
      const pages = { "family-devices": "devices", "family-check": "check", "staff-invitations": "invitations", "staff-audit": "audit" };
      const extra = pages[f] ? `&page=${pages[f]}` : "";
      const [fixture, press] = opened[f] ?? [f, null];
      await page.goto(`${server.url}?fixture=${fixture}&lang=${lang}${extra}`);
      await page.waitForSelector("main");
      if (press) {
        await page.click(press);
        await page.waitForSelector("form.rules");
      }
      await page.waitForTimeout(f.includes("in-call") || f.includes("consult") ? 600 : f.startsWith("staff-") ? 300 : 150);
      const result = await axeViolations(page);
      const resident = f.startsWith("resident-") ? await page.evaluate(residentRules) : [];
      // The devices are named in the page's language: the synthetic sources by what they are,
      // one with no name by its kind and number.
      const names = f === "family-devices" ? await deviceNames(page, lang) : [];
      const problems = [...result, ...resident, ...names];
      if (problems.length) {
        failures += problems.length;
        console.error(`✗ ${f} [${lang}]\n  ${problems.join("\n  ")}`);
      } else {
        console.log(`✓ ${f} [${lang}]${f.startsWith("resident-") ? " (resident sizes and contrast)" : ""}`);
      }
      if (screenshots && shots[f]) {
        mkdirSync(shotDir, { recursive: true });
        await page.screenshot({ path: new URL(`${f}-${lang}.png`, shotDir).pathname });
      }
    }
  }
} finally {
  await browser.close();
  server.close();
}
if (failures) {
  console.error(`${failures} accessibility problem(s)`);
  process.exit(1);
}
console.log("accessibility: no violations on any screen");

// Every screen with made-up data, for a plain browser: `?fixture=<name>&lang=ko`. The
// accessibility test and the screenshots open each of them in Chromium. In-call fixtures also
// feed synthetic pictures through the same message format and renderer the app uses.
import type { Backend } from "./api";
import type { AppState, CallPeer, Contact, Invitation, Role, Tablet, WaitingPatient } from "./bindings";

const contact = (key: string, presence: Contact["presence"], mode: Contact["role"] = "family"): Contact => ({
  key,
  name: key,
  role: mode,
  presence,
  peer: presence === "offline" ? null : `p-${key}`,
  has_photo: false,
  trusted: key === "Ann Kim",
});

const peer = (over: Partial<CallPeer> = {}): CallPeer => ({
  peer: "p-Ann Kim",
  name: "Ann Kim",
  connected: true,
  quality: "good",
  their_video: "on",
  our_video_paused: false,
  rtt_ms: 24,
  loss_percent: 0,
  receive_kbps: 1450,
  ...over,
});

type Mode = "resident" | "family" | "clinician" | "staff" | "patient";

const names: Record<Mode, [string, Role, string]> = {
  resident: ["Mrs Kim", "resident", "kim-family"],
  family: ["Ann Kim", "family", "kim-family"],
  clinician: ["Dr Lee", "clinician", "consult-lee"],
  staff: ["Nurse Yoon", "staff", "office"],
  patient: ["Mr Park", "patient", "consult-lee"],
};

const minutesAgo = (m: number) => Date.now() - m * 60_000;
const allOk = { camera: "ok", microphone: "ok", speaker: "ok", connection: "ok" } as const;

const waiting = (peer: string, over: Partial<WaitingPatient> = {}): WaitingPatient => ({
  peer: `w-${peer}`,
  name: peer,
  role: "patient",
  since_ms: minutesAgo(4),
  connected: true,
  check: allOk,
  ...over,
});

const lobby: WaitingPatient[] = [
  waiting("Mr Park", { since_ms: minutesAgo(7) }),
  waiting("Ms Lee", { since_ms: minutesAgo(2), check: { ...allOk, microphone: "failed" } }),
  waiting("Mr Choi", { since_ms: minutesAgo(1), connected: false, check: null, role: "guest" }),
];

const base = (mode: Mode): AppState => ({
  version: 1,
  language: "en",
  connection: { state: "online" },
  me: {
    name: names[mode][0],
    role: names[mode][1],
    room: names[mode][2],
    expires_at_ms: mode === "resident" ? null : Date.UTC(2027, 4, 1, 9, 0),
  },
  contacts:
    mode === "resident"
      ? [contact("Ann Kim", "available"), contact("Min-jun Kim", "in_call"), contact("Dr Lee", "offline", "clinician"), contact("Sofia", "available")]
      : mode === "family"
        ? [contact("Mrs Kim", "available", "resident"), contact("Mr Park", "in_call", "resident"), contact("Mrs Choi", "offline", "resident")]
        : mode === "clinician"
          ? [contact("Nurse Yoon", "available", "clinician")]
          : [],
  call: { state: "idle" },
  muted: false,
  camera_off: false,
  notices: [],
  kiosk: mode === "resident",
  lobby: mode === "clinician" ? lobby : [],
  my_check: null,
  quiet: false,
});

type Fixture = (s: AppState) => AppState;
const other = (s: AppState) => (s.me?.role === "resident" ? "Ann Kim" : "Mrs Kim");

export const fixtures: Record<string, { mode: Mode | "none"; make: Fixture }> = {
  setup: { mode: "none", make: (s) => ({ ...s, me: null, contacts: [], connection: { state: "setup_needed", error: null } }) },
  "setup-error": {
    mode: "none",
    make: (s) => ({
      ...s,
      me: null,
      contacts: [],
      connection: { state: "setup_needed", error: { code: "settings_unreadable", message: "" } },
    }),
  },
  connecting: {
    mode: "family",
    make: (s) => ({
      ...s,
      connection: { state: "connecting", attempt: 3, error: { code: "server_unreachable", message: "" }, retry_at_ms: Date.now() + 7000 },
    }),
  },
  refused: { mode: "family", make: (s) => ({ ...s, connection: { state: "refused", error: { code: "expired_token", message: "" } } }) },
  "resident-idle": { mode: "resident", make: (s) => s },
  "resident-ringing": { mode: "resident", make: (s) => ({ ...s, call: { state: "incoming", peer: "p-Sofia", name: "Sofia", auto_answer_seconds: null } }) },
  "resident-auto-answer": {
    mode: "resident",
    make: (s) => ({ ...s, call: { state: "incoming", peer: "p-Ann Kim", name: "Ann Kim", auto_answer_seconds: 3600 } }),
  },
  "resident-calling": { mode: "resident", make: (s) => ({ ...s, call: { state: "calling", peer: "p-Ann Kim", name: "Ann Kim", ringing: true } }) },
  "resident-in-call": { mode: "resident", make: (s) => ({ ...s, call: { state: "active", since_ms: Date.now() - 125_000, peers: [peer()] } }) },
  "resident-in-call-weak": {
    mode: "resident",
    make: (s) => ({ ...s, call: { state: "active", since_ms: Date.now() - 5_000, peers: [peer({ quality: "weak", their_video: "paused_weak" })] } }),
  },
  "resident-ended": { mode: "resident", make: (s) => ({ ...s, call: { state: "ended", name: other(s), reason: "remote_hung_up" } }) },
  "family-idle": { mode: "family", make: (s) => s },
  "family-ringing": { mode: "family", make: (s) => ({ ...s, call: { state: "incoming", peer: "p-Mrs Kim", name: "Mrs Kim", auto_answer_seconds: null } }) },
  "family-calling": { mode: "family", make: (s) => ({ ...s, call: { state: "calling", peer: "p-Mrs Kim", name: "Mrs Kim", ringing: false } }) },
  "family-in-call": {
    mode: "family",
    make: (s) => ({ ...s, call: { state: "active", since_ms: Date.now() - 754_000, peers: [peer({ peer: "p-Ann Kim", name: "Mrs Kim" })] } }),
  },
  "family-in-call-muted": {
    mode: "family",
    make: (s) => ({
      ...s,
      muted: true,
      camera_off: true,
      notices: [{ id: 1, device: "camera", code: null, message: "" }],
      call: {
        state: "active",
        since_ms: Date.now() - 30_000,
        peers: [peer({ peer: "p-Ann Kim", name: "Mrs Kim", quality: "reconnecting", our_video_paused: true })],
      },
    }),
  },
  "family-ended": { mode: "family", make: (s) => ({ ...s, call: { state: "ended", name: "Mrs Kim", reason: "no_answer" } }) },
  "family-devices": { mode: "family", make: (s) => s },
  "family-check": { mode: "family", make: (s) => s },
  "clinician-lobby": { mode: "clinician", make: (s) => s },
  "clinician-empty": { mode: "clinician", make: (s) => ({ ...s, lobby: [] }) },
  "clinician-consult": {
    mode: "clinician",
    make: (s) => ({
      ...s,
      lobby: lobby.slice(1),
      call: { state: "active", since_ms: Date.now() - 312_000, peers: [peer({ peer: "p-Ann Kim", name: "Mr Park" })] },
    }),
  },
  "patient-checking": { mode: "patient", make: (s) => ({ ...s, connection: { state: "waiting", position: 2 } }) },
  "patient-waiting": { mode: "patient", make: (s) => ({ ...s, connection: { state: "waiting", position: 1 }, my_check: { ...allOk, microphone: "failed" } }) },
  "patient-in-consult": {
    mode: "patient",
    make: (s) => ({ ...s, call: { state: "active", since_ms: Date.now() - 95_000, peers: [peer({ peer: "p-Ann Kim", name: "Dr Lee" })] } }),
  },
  "patient-denied": {
    mode: "patient",
    make: (s) => ({ ...s, connection: { state: "refused", error: { code: "denied", message: "The doctor cannot see you today. Please book another time." } } }),
  },
  "staff-tablets": { mode: "staff", make: (s) => s },
  "staff-invitations": { mode: "staff", make: (s) => s },
  "staff-audit": { mode: "staff", make: (s) => s },
};

const invitation = (name: string, role: Role, room: string, over: Partial<Invitation> = {}): Invitation => ({
  id: `inv-${name}`,
  code: "K7MQ-2XR9",
  link: "https://calls.example.org/join/K7MQ2XR9",
  room,
  role,
  name,
  sub: `inv-${name}`,
  created_by: "Nurse Yoon",
  created_at: minutesAgo(60 * 24),
  expires_at: Date.now() + 6 * 86_400_000,
  revoked_at: null,
  redeemed: 1,
  ...over,
});

const invitations: Invitation[] = [
  invitation("Ann Kim", "family", "kim-family"),
  invitation("Min-jun Kim", "family", "kim-family", { redeemed: 3 }),
  invitation("Old Friend", "family", "kim-family", { revoked_at: minutesAgo(30) }),
  invitation("Mrs Kim", "resident", "kim-family"),
];

const tablets: Tablet[] = [
  {
    sub: "inv-Mrs Kim",
    name: "Mrs Kim",
    room: "kim-family",
    online_since: minutesAgo(95),
    last_seen: minutesAgo(95),
    check: { ...allOk, speaker: "ok", at: minutesAgo(94) },
    rules: {
      callers: [
        { sub: "inv-Ann Kim", name: "Ann Kim", auto_answer: true },
        { sub: "inv-Min-jun Kim", name: "Min-jun Kim", auto_answer: false },
      ],
      quiet_hours: { from: "21:00", to: "07:30" },
      kiosk: true,
    },
  },
  {
    sub: "inv-Mr Park",
    name: "Mr Park",
    room: "park-family",
    online_since: null,
    last_seen: minutesAgo(60 * 5),
    check: { ...allOk, camera: "failed", at: minutesAgo(60 * 6) },
    rules: { callers: null, quiet_hours: null },
  },
];

/** A moving test picture in the app's binary message format. */
function picture(kind: number, peer: string, w: number, h: number, n: number): ArrayBuffer {
  const id = new TextEncoder().encode(peer);
  const padded = Math.ceil(id.length / 4) * 4;
  const head = 20 + padded;
  const buf = new ArrayBuffer(head + (w * h * 3) / 2);
  const v = new DataView(buf);
  v.setUint8(0, kind);
  v.setUint8(1, id.length);
  v.setUint32(4, w, true);
  v.setUint32(8, h, true);
  v.setFloat64(12, Date.now(), true);
  new Uint8Array(buf, 20, id.length).set(id);
  const y = new Uint8Array(buf, head, w * h);
  const u = new Uint8Array(buf, head + w * h, (w * h) / 4);
  const vv = new Uint8Array(buf, head + (w * h * 5) / 4, (w * h) / 4);
  const bars = [[180, 128, 128], [160, 60, 140], [130, 150, 60], [110, 90, 90], [90, 170, 190], [70, 200, 110], [50, 110, 210]];
  for (let row = 0; row < h; row++) {
    for (let col = 0; col < w; col++) {
      const bar = bars[Math.floor((col * bars.length) / w)] ?? [128, 128, 128];
      const moving = Math.abs(col - ((n * 4) % w)) < w / 16 && row > h / 3 && row < (h * 2) / 3;
      y[row * w + col] = moving ? 235 : (bar[0] ?? 128);
      if (row % 2 === 0 && col % 2 === 0) {
        const c = (row / 2) * (w / 2) + col / 2;
        u[c] = bar[1] ?? 128;
        vv[c] = bar[2] ?? 128;
      }
    }
  }
  return buf;
}

export function fixtureBackend(params: URLSearchParams): Backend {
  const name = params.get("fixture") ?? "resident-idle";
  const f = fixtures[name] ?? fixtures["resident-idle"];
  if (!f) throw new Error("no fixtures");
  const mode: Mode = f.mode === "none" ? "family" : f.mode;
  let state = f.make(base(mode));
  const lang = params.get("lang");
  if (lang === "ko" || lang === "en") state = { ...state, language: lang };
  const listeners: ((s: AppState) => void)[] = [];
  const set = (s: AppState) => {
    state = { ...s, version: s.version + 1 };
    listeners.forEach((l) => l(state));
  };
  const ok = async () => null;
  return {
    state: async () => state,
    onState: (cb) => listeners.push(cb),
    onVideoMessage(cb) {
      if (state.call.state !== "active") return;
      let n = 0;
      window.setInterval(() => {
        n++;
        cb(picture(1, "p-Ann Kim", 320, 240, n));
        cb(picture(2, "", 160, 120, n + 20));
      }, 100);
    },
    requestKeyframe() {},
    decodeVideoHere() {},
    selfViewWidth() {},
    acceptInvitation: async () => ({ code: "bad_invitation", message: "" }),
    forgetInvitation: ok,
    call: ok,
    answer: ok,
    decline: ok,
    hangUp: ok,
    setMuted: async (m) => (set({ ...state, muted: m }), null),
    setCameraOff: async (o) => (set({ ...state, camera_off: o }), null),
    setLanguage: async (l) => (set({ ...state, language: l }), null),
    devices: async () => [
      { id: "camera:USB Camera", name: "USB Camera", kind: "camera" },
      { id: "synthetic", name: "Test pattern", kind: "camera" },
      { id: "mic:Built-in Microphone", name: "Built-in Microphone", kind: "microphone" },
      { id: "synthetic", name: "Test tone", kind: "microphone" },
      // A browser names no device before the page may use them.
      { id: "mic:2", name: "", kind: "microphone" },
      { id: "speaker:Speakers", name: "Speakers", kind: "speaker" },
    ],
    settings: async () => ({
      server: "wss://calls.example.org/v1/ws",
      language: state.language,
      devices: { camera: null, microphone: null, speaker: null },
      resident: { auto_answer: false, auto_answer_seconds: 10, kiosk: false, contacts: [] },
    }),
    setDevices: ok,
    photo: async () => null,
    precheck: async () => ({
      camera: { status: "ok", message: null, size: [640, 480], level_percent: null, ms: null },
      microphone: { status: "ok", message: null, size: null, level_percent: 12.5, ms: null },
      speaker: { status: "failed", message: "No speaker", size: null, level_percent: null, ms: null },
      server: { status: "ok", message: null, size: null, level_percent: null, ms: null },
      relay: { status: "not_used", message: null, size: null, level_percent: null, ms: null },
    }),
    dismissNotice: async (id) => set({ ...state, notices: state.notices.filter((n) => n.id !== id) }),
    admit: async (p) => (set({ ...state, lobby: state.lobby.filter((w) => w.peer !== p) }), null),
    deny: async (p) => (set({ ...state, lobby: state.lobby.filter((w) => w.peer !== p) }), null),
    admitNext: ok,
    createInvitation: async (ask) => ({ ok: true, value: invitation(ask.name, ask.role, ask.room, { redeemed: 0 }) }),
    listInvitations: async () => ({ ok: true, value: invitations }),
    revokeInvitation: ok,
    listTablets: async () => ({ ok: true, value: tablets }),
    setRules: ok,
    runTabletCheck: async () => ({ ok: true, value: { ...allOk, at: Date.now() } }),
    exportAudit: async () => ({ ok: true, value: "/home/nurse/Downloads/hearth-audit.csv" }),
  };
}

// The browser mode: the same screens, with the browser's WebSocket and RTCPeerConnection in
// place of the app's engine. The signaling server serves this page at an invitation's link
// (`/join/<code>`); the page redeems the code for a token, joins the room over protocol v1 and
// calls with the call sub-protocol, so browsers, the app and hearth-cli call each other.
// It keeps an `AppState` of the same shape the app's Rust session keeps.
import type { Backend, Got, Outcome } from "../api";
import type {
  AppState,
  CallPeer,
  CheckResult,
  ClientError,
  Contact,
  Device,
  DeviceChoice,
  ErrorCode,
  Language,
  PrecheckReport,
  Role,
} from "../bindings";
import { openDevices } from "../logic/media";
import { attachStream } from "../video/registry";
import { type CallMessage, Calls, type EndReason } from "./calls";

interface PeerInfo {
  peer: string;
  name: string;
  role: Role;
  in_call: boolean;
}

type ServerMessage =
  | { type: "welcome"; peer: string; room: string; role: Role; peers: { peer: string; name: string; role: Role }[]; ice_servers: RTCIceServer[]; resume_secret?: string }
  | { type: "waiting"; peer: string; position: number; resume_secret?: string }
  | { type: "resumed"; peer: string; acked: number; replayed: number; snapshot: boolean }
  | { type: "peer_joined"; peer: string; name: string; role: Role }
  | { type: "peer_left"; peer: string }
  | { type: "signal"; from: string; data: CallMessage }
  | { type: "error"; code: string; message: string }
  | { type: "shutdown"; retry_after_ms: number }
  | { type: string };

/** Errors after which reconnecting with the same token cannot help (`forbidden` only at
 *  `hello`: once in, it refuses one message). */
const FINAL = new Set(["bad_token", "expired_token", "denied", "replaced", "revoked"]);
const ENDED_SHOWN_MS = 4000;

const err = (code: ErrorCode, message = ""): ClientError => ({ code, message });

/** The invitation code in a link (`/join/K7MQ2XR9`) or as typed. */
export function codeOf(input: string): string | null {
  const last = input.trim().split("/").filter(Boolean).pop() ?? "";
  const code = last.replace(/[\s-]/g, "");
  return /^[A-Za-z0-9]{8}$/.test(code) ? code.toUpperCase() : null;
}

function language(): Language {
  const kept = localStorage.getItem("hearth.language");
  if (kept === "en" || kept === "ko") return kept;
  return navigator.language.toLowerCase().startsWith("ko") ? "ko" : "en";
}

/** Whom someone of `me`'s role may call among the room's people (as the app decides). */
function callable(me: Role, them: Role): boolean {
  if (me === "resident") return them !== "resident" && them !== "patient";
  if (me === "clinician") return them !== "staff";
  return them === "resident";
}

/** The page's code for a server's error code (as the app's `ErrorCode::from_server`). */
function mapError(code: string): ErrorCode {
  const known: ErrorCode[] = ["bad_token", "expired_token", "forbidden", "room_full", "denied", "replaced", "revoked", "not_found", "offline", "timeout", "rate_limited"];
  if ((known as string[]).includes(code)) return code as ErrorCode;
  if (code === "unknown_peer") return "unavailable";
  if (code === "bad_message" || code === "too_large") return "bad_request";
  if (code === "shutting_down" || code === "unavailable") return "server_unreachable";
  return "internal";
}

/** Whether the TURN relay the server handed out gives a relay address within 5 s. */
async function relayCheck(ice: RTCIceServer[]): Promise<{ status: "ok" | "failed" | "not_used"; ms: number | null }> {
  const turn = ice.filter((s) => [s.urls].flat().some((u) => u.startsWith("turn")));
  if (turn.length === 0) return { status: "not_used", ms: null };
  const t0 = performance.now();
  const pc = new RTCPeerConnection({ iceServers: turn, iceTransportPolicy: "relay" });
  try {
    pc.createDataChannel("check");
    const found = new Promise<boolean>((ok) => {
      pc.onicecandidate = (e) => {
        if (e.candidate?.type === "relay") ok(true);
        else if (!e.candidate) ok(false);
      };
      window.setTimeout(() => ok(false), 5000);
    });
    await pc.setLocalDescription(await pc.createOffer());
    const ok = await found;
    return { status: ok ? "ok" : "failed", ms: ok ? Math.round(performance.now() - t0) : null };
  } finally {
    pc.close();
  }
}

export function browserBackend(location: Location): Backend {
  // Canvases here show the browser's own video elements, which the 2D canvas draws whatever
  // their pixel format (a WebGL renderer would need I420 frames).
  window.hearthRenderer = "2d";
  let state: AppState = {
    version: 1,
    language: language(),
    connection: { state: "setup_needed", error: null },
    me: null,
    contacts: [],
    call: { state: "idle" },
    muted: false,
    camera_off: false,
    notices: [],
    kiosk: false,
    lobby: [],
    my_check: null,
    quiet: false,
  };
  const listeners: ((s: AppState) => void)[] = [];
  let token: string | null = null;
  let ws: WebSocket | null = null;
  let me = "";
  let ice: RTCIceServer[] = [];
  let peers: PeerInfo[] = [];
  let attempt = 0;
  let retryTimer: number | null = null;
  /** Why the server did not let this connection in (said at `hello`), for the retry. */
  let notLetIn: ClientError | null = null;
  // A draining server's `shutdown`: when to move to another (docs/protocol.md, Drain).
  let moveTimer: number | null = null;
  // The session, to resume it after the connection drops (docs/protocol.md, Sessions): its id
  // and secret, the last numbered message received, and what was shown before the drop.
  let session: { peer: string; secret: string } | null = null;
  let lastSeq = 0;
  let beforeDrop: typeof state.connection | null = null;
  let endedTimer: number | null = null;
  let local: Promise<MediaStream | null> | null = null;
  let choice: DeviceChoice = JSON.parse(localStorage.getItem("hearth.devices") ?? "null") ?? { camera: null, microphone: null, speaker: null };
  const received = new Map<string, { bytes: number; at: number }>();
  let checked = false;

  const publish = () => {
    state = { ...state, version: state.version + 1, contacts: contacts() };
    for (const l of listeners) l(state);
  };

  /** The residents this page has seen in its room, kept for this tab (as its invitation is,
   *  not on a shared computer for good): one whose tablet is off stays listed, as not
   *  available, instead of vanishing (also after a reload). */
  const residentsKey = () => `hearth.residents.${state.me?.room ?? ""}`;
  /** Read from the tab's storage once per room, written back only when someone new is seen
   *  (the list is made at every change of state). */
  let remembered: { key: string; names: Set<string> } | null = null;
  const rememberedResidents = (): Set<string> => {
    const key = residentsKey();
    if (remembered?.key !== key) {
      let names: string[] = [];
      try {
        const kept: unknown = JSON.parse(sessionStorage.getItem(key) ?? "[]");
        if (Array.isArray(kept)) names = kept.filter((n): n is string => typeof n === "string");
      } catch {
        // Unreadable: started again from who is here.
      }
      remembered = { key, names: new Set(names) };
    }
    return remembered.names;
  };

  const contacts = (): Contact[] => {
    const role = state.me?.role;
    if (!role) return [];
    const seen = new Map<string, Contact>();
    for (const p of peers.filter((q) => callable(role, q.role))) {
      const presence = p.in_call ? "in_call" : "available";
      const had = seen.get(p.name);
      if (!had || (had.presence === "in_call" && presence === "available")) {
        seen.set(p.name, { key: p.name, name: p.name, role: p.role, presence, peer: p.peer, has_photo: false, trusted: false });
      }
    }
    if (role !== "resident") {
      const all = rememberedResidents();
      const before = all.size;
      for (const p of peers) if (p.role === "resident") all.add(p.name);
      if (all.size !== before) sessionStorage.setItem(residentsKey(), JSON.stringify([...all]));
      for (const name of all) {
        if (!seen.has(name) && callable(role, "resident")) {
          seen.set(name, { key: name, name, role: "resident", presence: "offline", peer: null, has_photo: false, trusted: false });
        }
      }
    }
    return [...seen.values()].sort((a, b) => a.name.localeCompare(b.name));
  };

  const nameOf = (peer: string) => peers.find((p) => p.peer === peer)?.name ?? "";

  const media = (): Promise<MediaStream | null> => {
    local ??= openDevices(
      (c) => navigator.mediaDevices.getUserMedia(c),
      choice.microphone ? { deviceId: { exact: choice.microphone } } : true,
      { width: 640, height: 480, frameRate: 30, ...(choice.camera ? { deviceId: { exact: choice.camera } } : {}) },
    ).then(({ tracks, failed }) => {
      // Each device that failed is said on its own; the call goes on with what works.
      for (const { device, error } of failed) {
        console.warn(`${device} unavailable`, error);
        state.notices = [...state.notices, { id: Date.now() + state.notices.length, device, code: null, message: String(error) }];
      }
      if (failed.length) publish();
      if (!tracks.length) return null;
      const s = new MediaStream(tracks);
      for (const t of s.getAudioTracks()) t.enabled = !state.muted;
      for (const t of s.getVideoTracks()) t.enabled = !state.camera_off;
      attachStream(null, s);
      return s;
    });
    return local;
  };

  const releaseMedia = () => {
    void local?.then((s) => s?.getTracks().forEach((t) => t.stop()));
    local = null;
    attachStream(null, null);
  };

  const send = (msg: object) => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  };

  const callPeer = (peer: string, connected: boolean): CallPeer => ({
    peer,
    name: nameOf(peer),
    connected,
    quality: "good",
    their_video: "on",
    our_video_paused: false,
    rtt_ms: null,
    loss_percent: 0,
    receive_kbps: 0,
  });

  const updatePeer = (peer: string, f: (p: CallPeer) => CallPeer) => {
    if (state.call.state !== "active") return;
    state.call = { ...state.call, peers: state.call.peers.map((p) => (p.peer === peer ? f(p) : p)) };
    publish();
  };

  const calls = new Calls(
    () => me,
    () => ice,
    media,
    {
      send: (to, data) => send({ type: "signal", to, data }),
      incoming(peer) {
        if (state.call.state === "active" || state.call.state === "calling") return;
        state.call = { state: "incoming", peer, name: nameOf(peer), auto_answer_seconds: null };
        publish();
      },
      ringing(peer) {
        if (state.call.state === "calling" && state.call.peer === peer) {
          state.call = { ...state.call, ringing: true };
          publish();
        }
      },
      connected(peer) {
        if (state.call.state === "active") {
          const has = state.call.peers.some((p) => p.peer === peer);
          state.call = {
            ...state.call,
            peers: has ? state.call.peers.map((p) => (p.peer === peer ? { ...p, connected: true } : p)) : [...state.call.peers, callPeer(peer, true)],
          };
        } else {
          state.call = { state: "active", since_ms: Date.now(), peers: [callPeer(peer, true)] };
        }
        calls.announce(peers.map((p) => p.peer));
        publish();
      },
      ended(peer, reason: EndReason) {
        attachStream(peer, null);
        received.delete(peer);
        const c = state.call;
        let over: string | null = null;
        if ((c.state === "incoming" || c.state === "calling") && c.peer === peer) over = c.name;
        if (c.state === "active") {
          const rest = c.peers.filter((p) => p.peer !== peer);
          if (rest.length === 0) over = c.peers.find((p) => p.peer === peer)?.name ?? nameOf(peer);
          else state.call = { ...c, peers: rest };
        }
        if (over !== null) {
          state.call = { state: "ended", name: over || nameOf(peer), reason };
          if (letIn && (reason === "hung_up" || reason === "remote_hung_up")) leaveAfterConsult();
          releaseMedia();
          if (endedTimer !== null) window.clearTimeout(endedTimer);
          endedTimer = window.setTimeout(() => {
            if (state.call.state === "ended") {
              state.call = { state: "idle" };
              publish();
            }
          }, ENDED_SHOWN_MS);
        }
        calls.announce(peers.map((p) => p.peer));
        publish();
      },
      quality(peer, q) {
        updatePeer(peer, (p) => (p.quality === q ? p : { ...p, quality: q }));
      },
      theirVideo(peer, video) {
        updatePeer(peer, (p) => (p.their_video === video ? p : { ...p, their_video: video }));
      },
      presence(peer, inCall) {
        peers = peers.map((p) => (p.peer === peer ? { ...p, in_call: inCall } : p));
        publish();
      },
      stream(peer, stream) {
        attachStream(peer, stream);
      },
    },
  );

  // Round trip, loss and rate in the call's numbers, once a second.
  window.setInterval(async () => {
    if (state.call.state !== "active") return;
    for (const p of state.call.peers) {
      const s = await calls.stats(p.peer);
      if (!s) continue;
      const before = received.get(p.peer);
      const now = performance.now();
      received.set(p.peer, { bytes: s.bytes, at: now });
      const kbps = before ? Math.round(((s.bytes - before.bytes) * 8) / (now - before.at)) : 0;
      updatePeer(p.peer, (q) => ({ ...q, rtt_ms: s.rtt === null ? null : Math.round(s.rtt), loss_percent: Math.round(s.loss * 10) / 10, receive_kbps: Math.max(0, kbps) }));
    }
  }, 1000);

  /** Patients and guests just let in from the waiting room join the clinician's first call the
   *  moment it comes; later calls ring. */
  let awaitingConsult = false;
  const autoAnswer = (peer: string) => {
    const yes =
      awaitingConsult && (state.me?.role === "patient" || state.me?.role === "guest") && peers.find((p) => p.peer === peer)?.role === "clinician";
    if (yes) awaitingConsult = false;
    return yes;
  };

  /** The part of the pre-call check a browser can do: camera and microphone give tracks. */
  const deviceCheck = async (): Promise<CheckResult> => {
    // Each device on its own merits: a broken camera does not fail the microphone too.
    const { tracks } = await openDevices((c) => navigator.mediaDevices.getUserMedia(c), true, true);
    const live = (kind: "audio" | "video") => tracks.some((t) => t.kind === kind && t.readyState === "live");
    const result: CheckResult = {
      camera: live("video") ? "ok" : "failed",
      microphone: live("audio") ? "ok" : "failed",
      speaker: "not_used",
      connection: ws?.readyState === WebSocket.OPEN ? "ok" : "failed",
    };
    tracks.forEach((t) => t.stop());
    return result;
  };

  /** Calls off the move a `shutdown` scheduled, if any. */
  const cancelMove = () => {
    if (moveTimer !== null) window.clearTimeout(moveTimer);
    moveTimer = null;
  };

  const refuse = (code: ErrorCode, message: string) => {
    // Closed for good: not to be taken up again, a move a `shutdown` asked for included.
    cancelMove();
    state.connection = { state: "refused", error: err(code, message) };
    state.call = { state: "idle" };
    calls.hangUp(null);
    releaseMedia();
    publish();
  };

  /** Let in from the waiting room since the page joined: a consult hung up ends its stay. */
  let letIn = false;
  /** The consult is over: leave the room, so that this page keeps no place in it (a room holds
   *  four) and the clinician can let in the next patients. Opening the link again waits again. */
  const leaveAfterConsult = () => {
    letIn = false;
    endSession(true);
    state.connection = { state: "consult_over" };
  };

  /** Ends this page's session for good: nothing of it may come back (no pending move or retry,
   *  which would resume it; no id or secret to resume), its socket closed, after `leave` when
   *  `leave` (the server lets its place go at once). */
  const endSession = (leave: boolean) => {
    cancelMove();
    if (retryTimer !== null) window.clearTimeout(retryTimer);
    retryTimer = null;
    session = null;
    lastSeq = 0;
    const old = ws;
    ws = null;
    if (leave && old?.readyState === WebSocket.OPEN) old.send(JSON.stringify({ type: "leave" }));
    old?.close();
  };

  const retry = (why: ClientError) => {
    attempt++;
    const delay = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2);
    state.connection = { state: "connecting", attempt, error: why, retry_at_ms: Date.now() + delay };
    publish();
    if (retryTimer !== null) window.clearTimeout(retryTimer);
    retryTimer = window.setTimeout(connect, delay);
  };

  const onMessage = async (msg: ServerMessage) => {
    switch (msg.type) {
      case "resumed": {
        // The same session: the missed messages follow; the screen is as it was.
        attempt = 0;
        if (beforeDrop) state.connection = beforeDrop;
        beforeDrop = null;
        publish();
        return;
      }
      case "welcome": {
        const m = msg as Extract<ServerMessage, { type: "welcome" }>;
        if (m.resume_secret) session = { peer: m.peer, secret: m.resume_secret };
        beforeDrop = null;
        me = m.peer;
        ice = m.ice_servers.map((s) => ({ urls: s.urls, username: s.username, credential: s.credential }));
        peers = m.peers.map((p) => ({ ...p, in_call: false }));
        attempt = 0;
        awaitingConsult = state.connection.state === "waiting";
        letIn ||= awaitingConsult;
        state.connection = { state: "online" };
        publish();
        return;
      }
      case "waiting": {
        const m = msg as Extract<ServerMessage, { type: "waiting" }>;
        if (m.resume_secret) session = { peer: m.peer, secret: m.resume_secret };
        beforeDrop = null;
        me = m.peer;
        state.connection = { state: "waiting", position: m.position };
        publish();
        if (!checked) {
          checked = true;
          const result = await deviceCheck();
          state.my_check = result;
          send({ type: "check", result });
          publish();
        }
        return;
      }
      case "peer_joined": {
        const m = msg as Extract<ServerMessage, { type: "peer_joined" }>;
        peers = [...peers.filter((p) => p.peer !== m.peer), { peer: m.peer, name: m.name, role: m.role, in_call: false }];
        calls.greet(m.peer);
        publish();
        return;
      }
      case "peer_left": {
        const m = msg as Extract<ServerMessage, { type: "peer_left" }>;
        peers = peers.filter((p) => p.peer !== m.peer);
        calls.left(m.peer);
        publish();
        return;
      }
      case "signal": {
        const m = msg as Extract<ServerMessage, { type: "signal" }>;
        if (m.data && typeof m.data === "object" && "call" in m.data) {
          let answered = false;
          const answerNow = (peer: string) => (answered = autoAnswer(peer));
          await calls.onMessage(m.from, m.data, peers.some((p) => p.peer === m.from), answerNow).catch((e) => console.warn("call message failed", e));
          if (answered && calls.peers().includes(m.from) && state.call.state !== "active") {
            state.call = { state: "active", since_ms: Date.now(), peers: [callPeer(m.from, false)] };
            publish();
          }
        }
        return;
      }
      case "error": {
        const m = msg as Extract<ServerMessage, { type: "error" }>;
        const joined = state.connection.state === "online" || state.connection.state === "waiting";
        if (FINAL.has(m.code) || (m.code === "forbidden" && !joined)) refuse(mapError(m.code), m.message);
        // Not let in this time (the room is full, the server is busy): the server closes, and
        // the retry says why.
        else if (!joined && state.connection.state === "connecting") notLetIn = err(mapError(m.code), m.message);
        else if (m.code === "forbidden" && state.call.state === "calling") {
          // The care home has not set up calls between the two (the resident's rules).
          calls.hangUp(state.call.peer, "not_allowed");
        } else {
          state.notices = [...state.notices.slice(-2), { id: Date.now(), device: null, code: mapError(m.code), message: m.message }];
          publish();
        }
        return;
      }
      case "shutdown": {
        // This server is stopping: go to another (through the same address) when it says, and
        // take the session along. The server keeps the connection open until its deadline, so
        // the page closes it itself. Nothing is said meanwhile: the server can still be reached,
        // and a move that works is not news for the screen (a failed one is, as any drop).
        if (state.connection.state === "refused") return;
        const m = msg as Extract<ServerMessage, { type: "shutdown" }>;
        cancelMove();
        moveTimer = window.setTimeout(() => {
          moveTimer = null;
          const old = ws;
          ws = null;
          // Normal closure: a page may not send 1001 (going away); the session stays
          // resumable either way, as only `leave` ends it.
          old?.close(1000, "moving");
          connect(true);
        }, m.retry_after_ms);
        return;
      }
    }
  };

  /** Opens the connection and says hello, resuming the session when there is one. `quietly`:
   *  a move a draining server asked for, which the screen is not told of. */
  function connect(quietly = false) {
    if (!token || state.connection.state === "consult_over") return;
    retryTimer = null;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
    const socket = new WebSocket(url);
    ws = socket;
    if (!quietly) {
      state.connection = { state: "connecting", attempt, error: null, retry_at_ms: null };
      publish();
    }
    socket.onopen = () => {
      const resume = session ? { peer: session.peer, secret: session.secret, last_seq: lastSeq } : undefined;
      socket.send(JSON.stringify({ type: "hello", token, resume }));
    };
    socket.onmessage = (e) => {
      const msg = JSON.parse(String(e.data)) as ServerMessage & { seq?: number };
      if (typeof msg.seq === "number") lastSeq = msg.seq;
      void onMessage(msg);
    };
    socket.onclose = () => {
      if (ws !== socket) return;
      ws = null;
      if (state.connection.state === "refused") return;
      // A draining server closed first: the move its `shutdown` scheduled stands.
      if (moveTimer !== null) return;
      if (state.connection.state !== "connecting") beforeDrop = state.connection;
      // The call is peer to peer and goes on; signaling comes back by itself.
      retry(notLetIn ?? err("server_unreachable", "The connection to the Hearth server was lost."));
      notLetIn = null;
    };
  }

  async function redeem(code: string): Promise<Outcome> {
    const kept = sessionStorage.getItem(`hearth.token.${code}`);
    if (kept) return start(kept);
    let res: Response;
    try {
      res = await fetch("/v1/redeem", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code }) });
    } catch {
      return err("server_unreachable");
    }
    const body = (await res.json().catch(() => ({}))) as { token?: string; code?: string; message?: string };
    if (!res.ok || !body.token) {
      const e = err(mapError(body.code ?? "internal"), body.message ?? "");
      if (e.code === "revoked" || e.code === "expired_token") {
        state.connection = { state: "refused", error: e };
        publish();
      }
      return e;
    }
    sessionStorage.setItem(`hearth.token.${code}`, body.token);
    return start(body.token);
  }

  function start(t: string): Outcome {
    let claims: { room: string; role: Role; name: string; exp?: number };
    try {
      // Base64url of UTF-8 JSON (names in Korean, say).
      const bytes = Uint8Array.from(atob((t.split(".")[1] ?? "").replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
      claims = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return err("bad_invitation");
    }
    token = t;
    state.me = { name: claims.name, role: claims.role, room: claims.room, expires_at_ms: claims.exp ? claims.exp * 1000 : null };
    connect();
    return null;
  }

  const unsupported = async (): Promise<Outcome> => err("forbidden", "The browser mode does not do this.");
  const nothing = async <T>(): Promise<Got<T>> => ({ ok: false, error: err("forbidden", "The browser mode does not do this.") });

  // Closing the page leaves the room at once; a connection that merely drops is held for a
  // resume instead, and the others would see the guest for the grace period. A patient waiting
  // does not leave: the page may be reloading (a closed one's place is let go after the
  // waiting room's grace), and the same invitation coming back keeps its place in the queue.
  window.addEventListener("pagehide", () => {
    if (state.connection.state === "waiting") return;
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "leave" }));
  });

  const fromLink = codeOf(location.pathname.startsWith("/join/") ? location.pathname : "");
  if (fromLink) void redeem(fromLink);

  return {
    state: async () => state,
    onState: (cb) => void listeners.push(cb),
    onVideoMessage() {},
    requestKeyframe() {},
    decodeVideoHere() {},
    selfViewWidth() {},
    async acceptInvitation(input) {
      const code = codeOf(input);
      if (!code) return err("bad_invitation");
      return redeem(code);
    },
    async forgetInvitation() {
      token = null;
      for (const k of Object.keys(sessionStorage)) if (k.startsWith("hearth.token.")) sessionStorage.removeItem(k);
      for (const k of Object.keys(sessionStorage)) if (k.startsWith("hearth.residents.")) sessionStorage.removeItem(k);
      remembered = null;
      // Nothing of the old session may reach the next invitation's.
      endSession(false);
      calls.hangUp(null);
      releaseMedia();
      state = { ...state, me: null, connection: { state: "setup_needed", error: null }, call: { state: "idle" } };
      publish();
      return null;
    },
    async call(key) {
      const c = contacts().find((x) => x.key === key);
      if (!c?.peer) return err("unavailable");
      try {
        await calls.call(c.peer, state.camera_off);
      } catch (e) {
        return err(String(e).includes("room_full") ? "room_full" : "internal");
      }
      if (state.call.state !== "active") state.call = { state: "calling", peer: c.peer, name: c.name, ringing: false };
      calls.announce(peers.map((p) => p.peer));
      publish();
      return null;
    },
    async answer(peer) {
      try {
        await calls.answer(peer, state.camera_off);
      } catch {
        return err("no_call");
      }
      state.call = { state: "active", since_ms: Date.now(), peers: [callPeer(peer, false)] };
      calls.announce(peers.map((p) => p.peer));
      publish();
      return null;
    },
    async decline(peer) {
      calls.decline(peer);
      return null;
    },
    async hangUp() {
      calls.hangUp(null);
      return null;
    },
    async setMuted(m) {
      state.muted = m;
      void local?.then((s) => s?.getAudioTracks().forEach((t) => (t.enabled = !m)));
      publish();
      return null;
    },
    async setCameraOff(off) {
      state.camera_off = off;
      void local?.then((s) => s?.getVideoTracks().forEach((t) => (t.enabled = !off)));
      calls.setCameraOff(off);
      publish();
      return null;
    },
    async setLanguage(l) {
      localStorage.setItem("hearth.language", l);
      state.language = l;
      publish();
      return null;
    },
    async devices(): Promise<Device[]> {
      const all = await navigator.mediaDevices.enumerateDevices().catch(() => []);
      const kind = { videoinput: "camera", audioinput: "microphone", audiooutput: "speaker" } as const;
      return all
        .filter((d) => d.kind in kind)
        // No label before the page may use the devices: the screen names them by kind and number.
        .map((d) => ({ id: d.deviceId, name: d.label, kind: kind[d.kind] }));
    },
    settings: async () => ({
      server: `${location.origin}/v1/ws`,
      language: state.language,
      devices: choice,
      resident: { auto_answer: false, auto_answer_seconds: 10, kiosk: false, contacts: [] },
    }),
    async setDevices(c) {
      choice = c;
      localStorage.setItem("hearth.devices", JSON.stringify(c));
      if (state.call.state === "idle") releaseMedia();
      return null;
    },
    photo: async () => null,
    async precheck(): Promise<PrecheckReport> {
      const r = await deviceCheck();
      const relay = await relayCheck(ice);
      const item = (s: "ok" | "failed" | "not_used", ms: number | null = null) => ({ status: s, message: null, size: null, level_percent: null, ms });
      return { camera: item(r.camera), microphone: item(r.microphone), speaker: item("not_used"), server: item(r.connection), relay: item(relay.status, relay.ms) };
    },
    async dismissNotice(id) {
      state.notices = state.notices.filter((n) => n.id !== id);
      publish();
    },
    admit: unsupported,
    deny: unsupported,
    admitNext: unsupported,
    createInvitation: nothing,
    listInvitations: nothing,
    revokeInvitation: unsupported,
    listTablets: nothing,
    setRules: unsupported,
    runTabletCheck: nothing,
    exportAudit: nothing,
  };
}

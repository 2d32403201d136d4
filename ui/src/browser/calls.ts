// The call sub-protocol (docs/protocol.md, "Calls") with the browser's own RTCPeerConnection:
// one connection per other person (mesh, up to four people), invites with the offer attached,
// trickle ICE, ringing, answer, decline, hangup, glare, camera-off notes, presence and ICE
// restarts. It knows nothing of screens: it reports to its owner through `CallEvents`.
import type { VideoState } from "../bindings";
import { theirVideo } from "../logic/media";

/** A call message, as `data` of a `signal`. */
export type CallMessage =
  | { call: "invite"; id: string; sdp: RTCSessionDescriptionInit; members: string[] }
  | { call: "ringing"; id: string }
  | { call: "answer"; id: string; sdp: RTCSessionDescriptionInit }
  | { call: "decline"; id: string; reason: "declined" | "busy" | "unavailable" }
  | { call: "candidate"; id: string; candidate: RTCIceCandidateInit | null }
  | { call: "renegotiate"; id: string; sdp: RTCSessionDescriptionInit }
  | { call: "media"; id: string; video_paused: boolean; camera_off?: boolean }
  | { call: "presence"; in_call: boolean }
  | { call: "hangup"; id: string; reason: "ended" | "cancelled" | "timeout" | "failed" };

export type EndReason =
  | "hung_up"
  | "remote_hung_up"
  | "declined"
  | "busy"
  | "unavailable"
  | "no_answer"
  | "cancelled"
  | "peer_left"
  | "not_allowed"
  | "connection_lost"
  | "failed";

type Phase = "outgoing" | "incoming" | "connecting" | "connected";

interface Leg {
  id: string;
  phase: Phase;
  pc: RTCPeerConnection | null;
  offer: RTCSessionDescriptionInit | null;
  members: string[];
  early: RTCIceCandidateInit[];
  offerer: boolean;
  since: number;
  /** When the connection went bad (disconnected or failed), for restarts and giving up. */
  badSince: number | null;
  restarts: number;
  cameraOff: boolean;
}

export interface CallEvents {
  send(to: string, msg: CallMessage): void;
  /** Someone is calling; `joinNow` when it is our own call growing (answered without ringing). */
  incoming(peer: string): void;
  ringing(peer: string): void;
  connected(peer: string): void;
  ended(peer: string, reason: EndReason): void;
  quality(peer: string, state: "good" | "weak" | "reconnecting"): void;
  /** Their picture: coming, paused by their weak connection, or their camera off. */
  theirVideo(peer: string, video: VideoState): void;
  presence(peer: string, inCall: boolean): void;
  stream(peer: string, stream: MediaStream): void;
}

/** Calls ring this long before giving up. */
const RING_MS = 45_000;
/** A connection that stays broken this long ends the call. */
const GIVE_UP_MS = 30_000;
/** A disconnected connection is restarted after this long (by the side that offered). */
const RESTART_AFTER_MS = 3_000;
const MAX_CALL = 4;

function newId(): string {
  return `b-${crypto.getRandomValues(new Uint32Array(2)).join("")}`;
}

export class Calls {
  private legs = new Map<string, Leg>();
  private callId: string | null = null;
  private announced = false;
  private timer: number;

  constructor(
    private me: () => string,
    private iceServers: () => RTCIceServer[],
    private media: () => Promise<MediaStream | null>,
    private ev: CallEvents,
  ) {
    this.timer = window.setInterval(() => void this.tick(), 1000);
  }

  dispose() {
    window.clearInterval(this.timer);
    for (const peer of [...this.legs.keys()]) this.drop(peer);
  }

  inCall(): boolean {
    return [...this.legs.values()].some((l) => l.phase !== "incoming");
  }

  peers(): string[] {
    return [...this.legs.keys()];
  }

  /** Tells everyone in the room when we went into a call or came out of one. */
  announce(room: string[]) {
    const now = this.inCall();
    if (now === this.announced) return;
    this.announced = now;
    for (const p of room) this.ev.send(p, { call: "presence", in_call: now });
  }

  /** A newcomer learns we are busy. */
  greet(peer: string) {
    if (this.announced) this.ev.send(peer, { call: "presence", in_call: true });
  }

  private async connection(peer: string, leg: Leg): Promise<RTCPeerConnection> {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers() });
    leg.pc = pc;
    pc.onicecandidate = (e) => this.ev.send(peer, { call: "candidate", id: leg.id, candidate: e.candidate ? e.candidate.toJSON() : null });
    pc.ontrack = (e) => this.ev.stream(peer, e.streams[0] ?? new MediaStream([e.track]));
    pc.onconnectionstatechange = () => this.onState(peer, leg, pc);
    const stream = await this.media();
    const kinds = new Set<string>();
    for (const track of stream?.getTracks() ?? []) {
      pc.addTrack(track, stream as MediaStream);
      kinds.add(track.kind);
    }
    // A side without a camera or microphone still receives.
    for (const kind of ["audio", "video"]) if (!kinds.has(kind)) pc.addTransceiver(kind, { direction: "recvonly" });
    return pc;
  }

  private onState(peer: string, leg: Leg, pc: RTCPeerConnection) {
    if (this.legs.get(peer) !== leg) return;
    switch (pc.connectionState) {
      case "connected":
        leg.badSince = null;
        if (leg.phase !== "connected") {
          leg.phase = "connected";
          this.ev.connected(peer);
          if (leg.cameraOff) this.ev.send(peer, { call: "media", id: leg.id, video_paused: true, camera_off: true });
        }
        this.ev.quality(peer, "good");
        break;
      case "disconnected":
      case "failed":
        leg.badSince ??= Date.now();
        this.ev.quality(peer, "reconnecting");
        break;
      default:
        break;
    }
  }

  async call(peer: string, cameraOff: boolean): Promise<void> {
    if (this.legs.has(peer)) return;
    if (this.legs.size + 1 >= MAX_CALL) throw new Error("room_full");
    const id = (this.callId ??= newId());
    const members = [...this.legs.entries()].filter(([, l]) => l.id === id && l.phase !== "outgoing" && l.phase !== "incoming").map(([p]) => p);
    const leg: Leg = { id, phase: "outgoing", pc: null, offer: null, members: [], early: [], offerer: true, since: Date.now(), badSince: null, restarts: 0, cameraOff };
    this.legs.set(peer, leg);
    const pc = await this.connection(peer, leg);
    await pc.setLocalDescription(await pc.createOffer());
    this.ev.send(peer, { call: "invite", id, sdp: pc.localDescription?.toJSON() ?? { type: "offer" }, members });
  }

  async answer(peer: string, cameraOff: boolean): Promise<void> {
    const leg = this.legs.get(peer);
    if (!leg || leg.phase !== "incoming" || !leg.offer) throw new Error("no_call");
    leg.cameraOff = cameraOff;
    const pc = await this.connection(peer, leg);
    try {
      await pc.setRemoteDescription(leg.offer);
      await pc.setLocalDescription(await pc.createAnswer());
    } catch (e) {
      this.ev.send(peer, { call: "hangup", id: leg.id, reason: "failed" });
      this.drop(peer);
      this.ev.ended(peer, "failed");
      throw e;
    }
    for (const c of leg.early.splice(0)) await pc.addIceCandidate(c).catch(() => {});
    leg.phase = "connecting";
    leg.offer = null;
    leg.since = Date.now();
    this.callId = leg.id;
    this.ev.send(peer, { call: "answer", id: leg.id, sdp: pc.localDescription?.toJSON() ?? { type: "answer" } });
    // A mesh call: connect to everyone else already in it.
    for (const m of leg.members.splice(0)) if (m !== this.me() && !this.legs.has(m)) await this.call(m, cameraOff).catch(() => {});
  }

  decline(peer: string, reason: "declined" | "unavailable" = "declined") {
    const leg = this.legs.get(peer);
    if (!leg || leg.phase !== "incoming") return;
    this.ev.send(peer, { call: "decline", id: leg.id, reason });
    this.drop(peer);
    this.ev.ended(peer, "declined");
  }

  /** Ends our calls (or the one with `peer`); `reason` is what this side is told. */
  hangUp(peer: string | null, reason: EndReason = "hung_up") {
    for (const p of peer === null ? [...this.legs.keys()] : [peer]) {
      const leg = this.legs.get(p);
      if (!leg) continue;
      if (leg.phase === "incoming") {
        this.decline(p);
        continue;
      }
      this.ev.send(p, { call: "hangup", id: leg.id, reason: leg.phase === "outgoing" ? "cancelled" : "ended" });
      this.drop(p);
      this.ev.ended(p, reason);
    }
  }

  /** Our camera went off or on: everyone in the call is told it was our choice. */
  setCameraOff(off: boolean) {
    for (const [p, leg] of this.legs) {
      leg.cameraOff = off;
      if (leg.phase === "connected") this.ev.send(p, { call: "media", id: leg.id, video_paused: off, camera_off: off });
    }
  }

  /** They left the room: whatever we had with them is over. */
  left(peer: string) {
    if (!this.legs.has(peer)) return;
    this.drop(peer);
    this.ev.ended(peer, "peer_left");
  }

  private drop(peer: string) {
    const leg = this.legs.get(peer);
    if (!leg) return;
    leg.pc?.close();
    this.legs.delete(peer);
    if (!this.inCall() && ![...this.legs.values()].some((l) => l.phase === "incoming")) this.callId = null;
  }

  private async restart(peer: string, leg: Leg) {
    if (!leg.pc) return;
    leg.restarts++;
    leg.pc.restartIce();
    await leg.pc.setLocalDescription(await leg.pc.createOffer({ iceRestart: true }));
    this.ev.send(peer, { call: "renegotiate", id: leg.id, sdp: leg.pc.localDescription?.toJSON() ?? { type: "offer" } });
  }

  private async tick() {
    const now = Date.now();
    for (const [peer, leg] of [...this.legs]) {
      if (leg.phase === "outgoing" && now - leg.since > RING_MS) {
        this.ev.send(peer, { call: "hangup", id: leg.id, reason: "timeout" });
        this.drop(peer);
        this.ev.ended(peer, "no_answer");
      } else if (leg.badSince !== null && now - leg.badSince > GIVE_UP_MS) {
        this.ev.send(peer, { call: "hangup", id: leg.id, reason: "failed" });
        this.drop(peer);
        this.ev.ended(peer, "connection_lost");
      } else if (leg.badSince !== null && leg.offerer && now - leg.badSince > RESTART_AFTER_MS * (1 + leg.restarts)) {
        await this.restart(peer, leg).catch(() => {});
      } else if (leg.phase === "connected" && leg.pc) {
        this.ev.quality(peer, await this.measure(leg.pc));
      }
    }
  }

  private lastLoss = new WeakMap<RTCPeerConnection, { lost: number; received: number }>();

  /** Good or weak from the last second's packet loss and round trip. */
  private async measure(pc: RTCPeerConnection): Promise<"good" | "weak"> {
    const report = await pc.getStats();
    let lost = 0;
    let received = 0;
    let rtt = 0;
    report.forEach((s) => {
      if (s.type === "inbound-rtp") {
        lost += s.packetsLost ?? 0;
        received += s.packetsReceived ?? 0;
      } else if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated) {
        rtt = s.currentRoundTripTime ?? 0;
      }
    });
    const before = this.lastLoss.get(pc) ?? { lost: 0, received: 0 };
    this.lastLoss.set(pc, { lost, received });
    const dl = lost - before.lost;
    const dr = received - before.received;
    const loss = dl + dr > 0 ? dl / (dl + dr) : 0;
    return loss > 0.05 || rtt > 0.4 ? "weak" : "good";
  }

  /** Round trip (ms), loss (percent) and bytes received so far from one peer. */
  async stats(peer: string): Promise<{ rtt: number | null; loss: number; bytes: number } | null> {
    const pc = this.legs.get(peer)?.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    let rtt: number | null = null;
    let bytes = 0;
    let lost = 0;
    let received = 0;
    report.forEach((s) => {
      if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime * 1000;
      if (s.type === "inbound-rtp") {
        bytes += s.bytesReceived ?? 0;
        lost += s.packetsLost ?? 0;
        received += s.packetsReceived ?? 0;
      }
    });
    return { rtt, loss: lost + received > 0 ? (100 * lost) / (lost + received) : 0, bytes };
  }

  /** One call message from `from`. */
  async onMessage(from: string, msg: CallMessage, knownPeer: boolean, autoAnswer: (peer: string) => boolean) {
    if (msg.call === "presence") {
      if (knownPeer) this.ev.presence(from, msg.in_call);
      return;
    }
    const leg = this.legs.get(from);
    const same = leg !== undefined && leg.id === msg.id;
    switch (msg.call) {
      case "invite": {
        if (msg.sdp.type !== "offer") return;
        let glare = false;
        if (leg) {
          // Both called at once: the invite from the smaller id wins.
          if (leg.phase === "outgoing" && this.me() > from) {
            this.drop(from);
            glare = true;
          } else return;
        }
        const busy = this.callId !== null && this.callId !== msg.id && this.inCall();
        if (busy || this.legs.size + 1 >= MAX_CALL) {
          this.ev.send(from, { call: "decline", id: msg.id, reason: "busy" });
          return;
        }
        const joining = glare || (this.callId === msg.id && this.inCall());
        const cameraOff = [...this.legs.values()].some((l) => l.cameraOff);
        this.legs.set(from, {
          id: msg.id, phase: "incoming", pc: null, offer: msg.sdp, members: msg.members ?? [], early: [], offerer: false,
          since: Date.now(), badSince: null, restarts: 0, cameraOff,
        });
        if (joining || autoAnswer(from)) {
          await this.answer(from, cameraOff).catch(() => {});
          return;
        }
        this.ev.send(from, { call: "ringing", id: msg.id });
        this.ev.incoming(from);
        return;
      }
      case "ringing":
        if (same) this.ev.ringing(from);
        return;
      case "answer":
        if (!same || !leg.pc || leg.phase !== "outgoing") return;
        await leg.pc.setRemoteDescription(msg.sdp);
        for (const c of leg.early.splice(0)) await leg.pc.addIceCandidate(c).catch(() => {});
        leg.phase = "connecting";
        leg.since = Date.now();
        return;
      case "candidate":
        if (!same || !msg.candidate) return;
        if (leg.pc?.remoteDescription) await leg.pc.addIceCandidate(msg.candidate).catch(() => {});
        else leg.early.push(msg.candidate);
        return;
      case "renegotiate":
        if (!same || !leg.pc) return;
        await leg.pc.setRemoteDescription(msg.sdp);
        if (msg.sdp.type === "offer") {
          await leg.pc.setLocalDescription(await leg.pc.createAnswer());
          this.ev.send(from, { call: "renegotiate", id: leg.id, sdp: leg.pc.localDescription?.toJSON() ?? { type: "answer" } });
        }
        return;
      case "media":
        if (same) this.ev.theirVideo(from, theirVideo(msg));
        return;
      case "decline":
        if (!same) return;
        this.drop(from);
        this.ev.ended(from, msg.reason === "busy" ? "busy" : msg.reason === "unavailable" ? "unavailable" : "declined");
        return;
      case "hangup": {
        if (!same) return;
        const incoming = leg.phase === "incoming";
        this.drop(from);
        this.ev.ended(
          from,
          incoming ? "cancelled" : msg.reason === "failed" ? "connection_lost" : msg.reason === "timeout" ? "no_answer" : "remote_hung_up",
        );
        return;
      }
    }
  }
}

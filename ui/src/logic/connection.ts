// What the screen says about the link to the server and the call's quality: words and an
// icon, never only numbers.
import type { CallPeer, ClientError, Connection, ErrorCode } from "../bindings";
import type { MessageKey } from "../i18n";

export type ConnectionView =
  | { kind: "setup"; error: ErrorCode | null }
  | { kind: "connecting"; retryInSeconds: number | null; error: ErrorCode | null }
  | { kind: "online" }
  | { kind: "waiting"; position: number }
  | { kind: "consultOver" }
  | { kind: "refused"; error: ClientError };

export function connectionView(c: Connection, now: number): ConnectionView {
  switch (c.state) {
    case "setup_needed":
      return { kind: "setup", error: c.error?.code ?? null };
    case "connecting": {
      const retry = c.retry_at_ms === null ? null : Math.max(0, Math.ceil((c.retry_at_ms - now) / 1000));
      return { kind: "connecting", retryInSeconds: retry, error: c.error?.code ?? null };
    }
    case "online":
      return { kind: "online" };
    case "waiting":
      return { kind: "waiting", position: c.position };
    case "consult_over":
      return { kind: "consultOver" };
    case "refused":
      return { kind: "refused", error: c.error };
  }
}

export type Banner = { icon: "weak" | "reconnecting" | "paused" | "camOff"; key: MessageKey };

/** What to say about a peer's connection and pictures, most important first; nothing when all is well. */
export function callBanners(p: CallPeer): Banner[] {
  const out: Banner[] = [];
  if (p.quality === "reconnecting") out.push({ icon: "reconnecting", key: "quality.reconnecting" });
  if (p.their_video === "camera_off") out.push({ icon: "camOff", key: "video.cameraOff" });
  else if (p.their_video === "paused_weak") out.push({ icon: "paused", key: "video.pausedWeak" });
  if (p.our_video_paused) out.push({ icon: "paused", key: "video.ourPaused" });
  if (out.length === 0 && p.quality === "weak") out.push({ icon: "weak", key: "quality.weak" });
  return out;
}

export function qualityKey(p: CallPeer): MessageKey {
  return p.quality === "good" ? "quality.good" : p.quality === "weak" ? "quality.weak" : "quality.reconnecting";
}

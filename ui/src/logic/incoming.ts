// What an incoming call does on screen and in the speaker: ring, or count down to an
// automatic answer with a chime each second, then answer. A pure reducer: events in, state and
// effects out, `now` passed in, so Vitest drives it without timers.
import type { CallView } from "../bindings";

export type Incoming =
  | { kind: "none" }
  | { kind: "ringing"; peer: string }
  | { kind: "counting"; peer: string; startedAt: number; seconds: number; chimes: number }
  | { kind: "answering"; peer: string };

export type Effect = "ring" | "stop_ring" | "chime" | { answer: string };

export type IncomingEvent =
  | { type: "call"; call: CallView; now: number }
  | { type: "tick"; now: number }
  | { type: "answered_by_hand" };

export const idle: Incoming = { kind: "none" };

/** Whole seconds left before an automatic answer, rounded up (what the countdown shows). */
export function secondsLeft(s: Incoming, now: number): number | null {
  if (s.kind !== "counting") return null;
  return Math.max(0, Math.ceil((s.startedAt + s.seconds * 1000 - now) / 1000));
}

function stopRinging(s: Incoming): Effect[] {
  return s.kind === "ringing" ? ["stop_ring"] : [];
}

export function step(s: Incoming, e: IncomingEvent): [Incoming, Effect[]] {
  switch (e.type) {
    case "call": {
      const call = e.call;
      if (call.state !== "incoming") return [idle, stopRinging(s)];
      if (s.kind !== "none" && s.peer === call.peer) return [s, []];
      const seconds = call.auto_answer_seconds;
      if (seconds === null || seconds === undefined) {
        return [{ kind: "ringing", peer: call.peer }, [...stopRinging(s), "ring"]];
      }
      if (seconds <= 0) {
        return [{ kind: "answering", peer: call.peer }, [...stopRinging(s), { answer: call.peer }]];
      }
      return [
        { kind: "counting", peer: call.peer, startedAt: e.now, seconds, chimes: 1 },
        [...stopRinging(s), "chime"],
      ];
    }
    case "tick": {
      if (s.kind !== "counting") return [s, []];
      const elapsed = e.now - s.startedAt;
      if (elapsed >= s.seconds * 1000) {
        return [{ kind: "answering", peer: s.peer }, [{ answer: s.peer }]];
      }
      // One chime when the countdown starts, then one at each whole second.
      const due = Math.min(s.seconds, 1 + Math.floor(elapsed / 1000));
      if (due > s.chimes) return [{ ...s, chimes: due }, ["chime"]];
      return [s, []];
    }
    case "answered_by_hand":
      if (s.kind === "none") return [s, []];
      return [{ kind: "answering", peer: s.peer }, stopRinging(s)];
  }
}

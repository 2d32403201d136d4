// The clinician's waiting room: who is new (an alert for every arrival that cannot be missed,
// not only the first), how long each has waited, what their check says, and who is next. Pure
// functions and a reducer, `now` passed in, so Vitest drives them without timers.
import type { CheckResult, Contact, WaitingPatient } from "../bindings";

export interface LobbyAlerts {
  /** Every waiting id seen so far: a patient who reconnects keeps their id and is not new. */
  known: string[];
  /** Arrivals the clinician has not acknowledged yet, in arrival order. */
  unseen: string[];
}

export type LobbyEvent = { type: "lobby"; lobby: WaitingPatient[] } | { type: "seen" };

/** One alert (a knock and the window's attention request) per new arrival. */
export type LobbyEffect = { alert: string };

export const noAlerts: LobbyAlerts = { known: [], unseen: [] };

/** Ids remembered; more than a day's queue, so the list cannot grow without bound. */
const KNOWN_KEPT = 1000;

export function lobbyStep(s: LobbyAlerts, e: LobbyEvent): [LobbyAlerts, LobbyEffect[]] {
  if (e.type === "seen") return [{ ...s, unseen: [] }, []];
  const ids = e.lobby.map((w) => w.peer);
  const arrivals = ids.filter((id) => !s.known.includes(id));
  const unseen = [...s.unseen, ...arrivals].filter((id) => ids.includes(id));
  const known = [...s.known, ...arrivals].slice(-KNOWN_KEPT);
  return [{ known, unseen }, arrivals.map((id) => ({ alert: id }))];
}

/** Whole seconds someone has waited. */
export function waitedSeconds(w: Pick<WaitingPatient, "since_ms">, now: number): number {
  return w.since_ms === null ? 0 : Math.max(0, Math.floor((now - w.since_ms) / 1000));
}

export type CheckSummary = "pending" | "ok" | "problem";

/** What a clinician needs at a glance: not yet checked, camera and microphone work, or not. */
export function checkSummary(check: CheckResult | null): CheckSummary {
  if (!check) return "pending";
  const parts = [check.camera, check.microphone, check.connection];
  return parts.some((p) => p === "failed") ? "problem" : "ok";
}

/** The next patient to admit: the first who is connected now. */
export function nextToAdmit(lobby: WaitingPatient[]): WaitingPatient | null {
  return lobby.find((w) => w.connected) ?? null;
}

/** The window title: the number waiting, so it shows in the taskbar too. */
export function lobbyTitle(app: string, waiting: number): string {
  return waiting > 0 ? `(${waiting}) ${app}` : app;
}

/** Someone in the room (not waiting) a clinician may call: `busy` while they are in a call. */
export interface InRoom {
  contact: Contact;
  busy: boolean;
}

/**
 * Who is in the room besides the waiting room, and not already in our call: a resident on a
 * doctor's round, a nurse, a relative. They are called (or added to the consult) directly.
 */
export function inRoom(contacts: readonly Contact[], inCall: readonly string[]): InRoom[] {
  return contacts
    .filter((c) => c.peer !== null && c.presence !== "offline" && !inCall.includes(c.peer))
    .map((contact) => ({ contact, busy: contact.presence !== "available" }));
}

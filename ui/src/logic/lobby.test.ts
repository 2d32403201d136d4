import { describe, expect, it } from "vitest";
import type { Contact, WaitingPatient } from "../bindings";
import { en } from "../i18n/en";
import { retranslate } from "../i18n";
import { ko } from "../i18n/ko";
import { checkSummary, inRoom, lobbyStep, lobbyTitle, nextToAdmit, noAlerts, waitedSeconds } from "./lobby";

const w = (peer: string, over: Partial<WaitingPatient> = {}): WaitingPatient => ({
  peer,
  name: peer.toUpperCase(),
  role: "patient",
  since_ms: 1000,
  connected: true,
  check: null,
  ...over,
});

describe("waiting-room alerts", () => {
  it("alerts for every new arrival, not only the first", () => {
    let [s, fx] = lobbyStep(noAlerts, { type: "lobby", lobby: [w("a")] });
    expect(fx).toEqual([{ alert: "a" }]);
    [s, fx] = lobbyStep(s, { type: "lobby", lobby: [w("a"), w("b")] });
    expect(fx).toEqual([{ alert: "b" }]);
    [s, fx] = lobbyStep(s, { type: "lobby", lobby: [w("a"), w("b"), w("c"), w("d")] });
    expect(fx).toEqual([{ alert: "c" }, { alert: "d" }]);
    expect(s.unseen).toEqual(["a", "b", "c", "d"]);
  });

  it("keeps marks until seen, and drops those who left", () => {
    let [s] = lobbyStep(noAlerts, { type: "lobby", lobby: [w("a"), w("b")] });
    [s] = lobbyStep(s, { type: "lobby", lobby: [w("b")] });
    expect(s.unseen).toEqual(["b"]);
    let fx;
    [s, fx] = lobbyStep(s, { type: "seen" });
    expect(s.unseen).toEqual([]);
    expect(fx).toEqual([]);
  });

  it("does not alert again for a patient who drops and comes back", () => {
    let [s] = lobbyStep(noAlerts, { type: "lobby", lobby: [w("a")] });
    [s] = lobbyStep(s, { type: "seen" });
    let fx;
    [s, fx] = lobbyStep(s, { type: "lobby", lobby: [w("a", { connected: false })] });
    expect(fx).toEqual([]);
    [s, fx] = lobbyStep(s, { type: "lobby", lobby: [w("a")] });
    expect(fx).toEqual([]);
    expect(s.unseen).toEqual([]);
  });

  it("alerts for everyone already waiting when the clinician opens the room", () => {
    const [, fx] = lobbyStep(noAlerts, { type: "lobby", lobby: [w("a"), w("b")] });
    expect(fx).toHaveLength(2);
  });
});

describe("waiting-room details", () => {
  it("counts waited seconds from check-in", () => {
    expect(waitedSeconds(w("a", { since_ms: 10_000 }), 75_500)).toBe(65);
    expect(waitedSeconds(w("a", { since_ms: 80_000 }), 75_000)).toBe(0);
    expect(waitedSeconds(w("a", { since_ms: null }), 75_000)).toBe(0);
  });

  it("summarises the check as a clinician needs it", () => {
    expect(checkSummary(null)).toBe("pending");
    const ok = { camera: "ok", microphone: "ok", speaker: "not_used", connection: "ok" } as const;
    expect(checkSummary(ok)).toBe("ok");
    expect(checkSummary({ ...ok, microphone: "failed" })).toBe("problem");
    expect(checkSummary({ ...ok, speaker: "failed" })).toBe("ok");
  });

  it("admits the first connected patient next", () => {
    expect(nextToAdmit([w("a", { connected: false }), w("b"), w("c")])?.peer).toBe("b");
    expect(nextToAdmit([w("a", { connected: false })])).toBeNull();
    expect(nextToAdmit([])).toBeNull();
  });

  it("shows the count in the title", () => {
    expect(lobbyTitle("Hearth", 0)).toBe("Hearth");
    expect(lobbyTitle("Hearth", 3)).toBe("(3) Hearth");
  });
});

describe("a turned-away patient's reason", () => {
  it("reaches them in their language when the clinician picked one of the reasons", () => {
    const keys = ["lobby.reason.later", "lobby.reason.callBack"] as const;
    expect(retranslate(en["lobby.reason.later"], keys, "ko")).toBe(ko["lobby.reason.later"]);
    expect(retranslate(ko["lobby.reason.callBack"], keys, "en")).toBe(en["lobby.reason.callBack"]);
    expect(retranslate("Bring your blood pressure diary.", keys, "ko")).toBe("Bring your blood pressure diary.");
  });
});

describe("who else is in the room", () => {
  const contact = (name: string, role: Contact["role"], presence: Contact["presence"], peer: string | null): Contact => ({
    key: name,
    name,
    role,
    presence,
    peer,
    has_photo: false,
    trusted: false,
  });
  const contacts = [
    contact("Mrs Kim", "resident", "available", "k"),
    contact("Mr Lee", "resident", "in_call", "l"),
    contact("Ann", "family", "offline", null),
    contact("Nurse Yoon", "staff", "available", "y"),
  ];

  it("lists a resident on a round and a nurse to call, someone in another call as busy, not the absent", () => {
    expect(inRoom(contacts, []).map((p) => [p.contact.name, p.busy])).toEqual([
      ["Mrs Kim", false],
      ["Mr Lee", true],
      ["Nurse Yoon", false],
    ]);
  });

  it("leaves out who is in our call already", () => {
    expect(inRoom(contacts, ["k", "y"]).map((p) => p.contact.name)).toEqual(["Mr Lee"]);
  });
});

import { describe, expect, it } from "vitest";
import type { CallView } from "../bindings";
import { type Effect, type Incoming, idle, secondsLeft, step } from "./incoming";

const incoming = (peer: string, auto: number | null): CallView => ({
  state: "incoming",
  peer,
  name: "Ann",
  auto_answer_seconds: auto,
});

function run(events: Parameters<typeof step>[1][]): [Incoming, Effect[]] {
  let s = idle;
  const all: Effect[] = [];
  for (const e of events) {
    const [next, effects] = step(s, e);
    s = next;
    all.push(...effects);
  }
  return [s, all];
}

describe("ringing", () => {
  it("rings once for an incoming call and stops when it is answered elsewhere or ends", () => {
    const [s, effects] = run([
      { type: "call", call: incoming("p1", null), now: 0 },
      { type: "call", call: incoming("p1", null), now: 500 },
      { type: "tick", now: 1000 },
      { type: "call", call: { state: "idle" }, now: 2000 },
    ]);
    expect(effects).toEqual(["ring", "stop_ring"]);
    expect(s).toEqual(idle);
  });

  it("stops ringing when the person answers by hand", () => {
    const [s, effects] = run([
      { type: "call", call: incoming("p1", null), now: 0 },
      { type: "answered_by_hand" },
    ]);
    expect(effects).toEqual(["ring", "stop_ring"]);
    expect(s).toEqual({ kind: "answering", peer: "p1" });
  });

  it("a second caller replaces the first", () => {
    const [s, effects] = run([
      { type: "call", call: incoming("p1", null), now: 0 },
      { type: "call", call: incoming("p2", null), now: 10 },
    ]);
    expect(effects).toEqual(["ring", "stop_ring", "ring"]);
    expect(s).toEqual({ kind: "ringing", peer: "p2" });
  });
});

describe("auto-answer countdown", () => {
  it("chimes each second, shows the seconds left, then answers exactly once", () => {
    let s = idle;
    const effects: Effect[] = [];
    const left: (number | null)[] = [];
    const feed = (e: Parameters<typeof step>[1]) => {
      const [n, fx] = step(s, e);
      s = n;
      effects.push(...fx);
    };
    feed({ type: "call", call: incoming("p1", 3), now: 10_000 });
    for (let t = 10_000; t <= 14_000; t += 250) {
      feed({ type: "tick", now: t });
      left.push(secondsLeft(s, t));
    }
    expect(effects).toEqual(["chime", "chime", "chime", { answer: "p1" }]);
    expect(left.slice(0, 5)).toEqual([3, 3, 3, 3, 2]);
    expect(left.filter((x) => x === null).length).toBeGreaterThan(0);
    expect(s).toEqual({ kind: "answering", peer: "p1" });
  });

  it("a caller who gives up stops the countdown: no answer", () => {
    const [s, effects] = run([
      { type: "call", call: incoming("p1", 5), now: 0 },
      { type: "tick", now: 1200 },
      { type: "call", call: { state: "ended", name: "Ann", reason: "cancelled" }, now: 1500 },
      { type: "tick", now: 6000 },
    ]);
    expect(effects).toEqual(["chime", "chime"]);
    expect(s).toEqual(idle);
  });

  it("answers at once when the countdown is zero", () => {
    const [, effects] = run([{ type: "call", call: incoming("p1", 0), now: 0 }]);
    expect(effects).toEqual([{ answer: "p1" }]);
  });

  it("a tap during the countdown answers and the countdown does not answer again", () => {
    const [s, effects] = run([
      { type: "call", call: incoming("p1", 5), now: 0 },
      { type: "answered_by_hand" },
      { type: "tick", now: 9000 },
    ]);
    expect(effects).toEqual(["chime"]);
    expect(s.kind).toBe("answering");
  });
});

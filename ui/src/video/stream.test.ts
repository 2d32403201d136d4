import { describe, expect, it } from "vitest";
import { ASK_INTERVAL_MS, FAILURE_WINDOW_MS, FailureCounter, MAX_FAILURES, StreamGate, chunkTimestamp } from "./stream";

describe("the gate in front of a peer's decoder", () => {
  it("starts at a keyframe and then passes frames in sequence", () => {
    const g = new StreamGate();
    expect(g.offer(0, true, 0)).toEqual({ decode: true, askKeyframe: false });
    for (let s = 1; s < 10; s++) expect(g.offer(s, false, s * 33).decode).toBe(true);
  });

  it("skips delta frames it joined in the middle of, asking for a keyframe", () => {
    const g = new StreamGate();
    expect(g.offer(40, false, 0)).toEqual({ decode: false, askKeyframe: true });
    expect(g.offer(41, false, 33)).toEqual({ decode: false, askKeyframe: false });
    expect(g.offer(42, true, 66).decode).toBe(true);
    expect(g.offer(43, false, 99).decode).toBe(true);
  });

  it("after a gap waits for a keyframe, asking again at most every interval", () => {
    const g = new StreamGate();
    g.offer(0, true, 0);
    g.offer(1, false, 33);
    expect(g.offer(3, false, 66)).toEqual({ decode: false, askKeyframe: true });
    expect(g.offer(4, false, 100).askKeyframe).toBe(false);
    expect(g.offer(5, false, 66 + ASK_INTERVAL_MS).askKeyframe).toBe(true);
    expect(g.offer(6, true, 700).decode).toBe(true);
    expect(g.offer(7, false, 733).decode).toBe(true);
  });

  it("follows the sequence across its wrap", () => {
    const g = new StreamGate();
    g.offer(2 ** 32 - 1, true, 0);
    expect(g.offer(0, false, 33).decode).toBe(true);
  });

  it("waits for a keyframe after the decoder is lost", () => {
    const g = new StreamGate();
    g.offer(0, true, 0);
    g.lost();
    expect(g.offer(1, false, 33)).toEqual({ decode: false, askKeyframe: true });
    expect(g.offer(2, true, 66).decode).toBe(true);
  });
});

describe("giving up on decoding in the page", () => {
  it("after several failures close together, not after scattered ones", () => {
    const c = new FailureCounter();
    for (let i = 0; i < MAX_FAILURES - 1; i++) expect(c.failed(i * FAILURE_WINDOW_MS)).toBe(false);
    const d = new FailureCounter();
    let gaveUp = false;
    for (let i = 0; i < MAX_FAILURES; i++) gaveUp = d.failed(1000 + i * 100);
    expect(gaveUp).toBe(true);
  });
});

it("turns 90 kHz RTP time into microseconds", () => {
  expect(chunkTimestamp(90_000)).toBe(1_000_000);
  expect(chunkTimestamp(3000)).toBe(33_333);
});

import { describe, expect, it } from "vitest";
import type { Picture } from "./message";
import { i420ToRgba } from "./renderer";

function picture(w: number, h: number, y: number, u: number, v: number): Picture {
  return {
    kind: 1,
    peer: "p",
    width: w,
    height: h,
    sentMs: 0,
    y: new Uint8Array(w * h).fill(y),
    u: new Uint8Array((w * h) / 4).fill(u),
    v: new Uint8Array((w * h) / 4).fill(v),
  };
}

const rgba = (px: number) => [px & 0xff, (px >>> 8) & 0xff, (px >>> 16) & 0xff, px >>> 24];

describe("I420 to RGBA", () => {
  it("converts BT.601 limited range: black, white, and the primaries", () => {
    const cases: [number, number, number, number[]][] = [
      [16, 128, 128, [0, 0, 0]],
      [235, 128, 128, [255, 255, 255]],
      [81, 90, 240, [255, 0, 0]],
      [145, 54, 34, [0, 255, 0]],
      [41, 240, 110, [0, 0, 255]],
    ];
    for (const [y, u, v, want] of cases) {
      const out = new Uint32Array(4 * 2);
      i420ToRgba(picture(4, 2, y, u, v), out);
      const [r, g, b, a] = rgba(out[5] ?? 0);
      expect(a).toBe(255);
      for (const [got, exp] of [[r, want[0]], [g, want[1]], [b, want[2]]] as const) {
        expect(Math.abs((got ?? 0) - (exp ?? 0))).toBeLessThanOrEqual(3);
      }
    }
  });

  it("gives each 2x2 block its own chroma", () => {
    const p = picture(4, 4, 128, 128, 128);
    p.v[1] = 240; // top-right block turns red
    const out = new Uint32Array(16);
    i420ToRgba(p, out);
    const [r0] = rgba(out[0] ?? 0);
    const [r2] = rgba(out[2] ?? 0);
    const [r7] = rgba(out[7] ?? 0);
    const [r11] = rgba(out[11] ?? 0);
    expect(r2 ?? 0).toBeGreaterThan((r0 ?? 0) + 100);
    expect(r7).toBe(r2);
    expect(r11).toBe(r0);
  });
});

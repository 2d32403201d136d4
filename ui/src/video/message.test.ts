import { describe, expect, it } from "vitest";
import { KIND_REMOTE, readPicture } from "./message";

function build(peer: string, w: number, h: number): ArrayBuffer {
  const id = new TextEncoder().encode(peer);
  const padded = Math.ceil(id.length / 4) * 4;
  const buf = new ArrayBuffer(20 + padded + (w * h * 3) / 2);
  const v = new DataView(buf);
  v.setUint8(0, KIND_REMOTE);
  v.setUint8(1, id.length);
  v.setUint32(4, w, true);
  v.setUint32(8, h, true);
  v.setFloat64(12, 1_700_000_000_123.5, true);
  new Uint8Array(buf, 20, id.length).set(id);
  const planes = new Uint8Array(buf, 20 + padded);
  planes.fill(16, 0, w * h);
  planes.fill(90, w * h, w * h + (w * h) / 4);
  planes.fill(240, w * h + (w * h) / 4);
  return buf;
}

describe("picture messages", () => {
  it("reads the header, the id and the three planes in place", () => {
    const p = readPicture(build("3f2a-peer", 8, 4));
    expect(p).not.toBeNull();
    expect(p?.peer).toBe("3f2a-peer");
    expect([p?.width, p?.height]).toEqual([8, 4]);
    expect(p?.sentMs).toBe(1_700_000_000_123.5);
    expect(p?.y.length).toBe(32);
    expect([p?.u[0], p?.v[0], p?.u.length]).toEqual([90, 240, 8]);
  });

  it("refuses truncated or odd-sized messages", () => {
    const good = build("x", 8, 4);
    expect(readPicture(good.slice(0, good.byteLength - 1))).toBeNull();
    expect(readPicture(new ArrayBuffer(5))).toBeNull();
    const odd = build("x", 8, 4);
    new DataView(odd).setUint32(4, 7, true);
    expect(readPicture(odd)).toBeNull();
  });
});

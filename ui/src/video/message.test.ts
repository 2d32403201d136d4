import { describe, expect, it } from "vitest";
import { CODEC_VP8, KIND_ENCODED, KIND_REMOTE, messageKind, readEncoded, readPicture } from "./message";

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

function buildEncoded(peer: string, codec: number, flags: number, seq: number, body: number[]): ArrayBuffer {
  const id = new TextEncoder().encode(peer);
  const padded = Math.ceil(id.length / 4) * 4;
  const buf = new ArrayBuffer(20 + padded + body.length);
  const v = new DataView(buf);
  v.setUint8(0, KIND_ENCODED);
  v.setUint8(1, id.length);
  v.setUint8(2, codec);
  v.setUint8(3, flags);
  v.setUint32(4, seq, true);
  v.setUint32(8, 90_000, true);
  v.setFloat64(12, 1_700_000_000_000, true);
  new Uint8Array(buf, 20, id.length).set(id);
  new Uint8Array(buf, 20 + padded).set(body);
  return buf;
}

describe("encoded frame messages", () => {
  it("reads the codec, keyframe flag, sequence and the frame in place", () => {
    const buf = buildEncoded("peer-1", CODEC_VP8, 1, 4_000_000_000, [9, 8, 7]);
    expect(messageKind(buf)).toBe(KIND_ENCODED);
    const f = readEncoded(buf);
    expect(f).toMatchObject({ peer: "peer-1", codec: "vp8", keyframe: true, seq: 4_000_000_000, rtpTimestamp: 90_000 });
    expect(Array.from(f?.data ?? [])).toEqual([9, 8, 7]);
    expect(readEncoded(buildEncoded("p", 2, 0, 1, [1]))?.codec).toBe("avc1.42e01f");
  });

  it("refuses unknown codecs, empty frames and other kinds", () => {
    expect(readEncoded(buildEncoded("p", 9, 0, 1, [1]))).toBeNull();
    expect(readEncoded(buildEncoded("p", CODEC_VP8, 0, 1, []))).toBeNull();
    expect(readEncoded(build("p", 8, 4))).toBeNull();
    expect(messageKind(new ArrayBuffer(3))).toBeNull();
  });
});

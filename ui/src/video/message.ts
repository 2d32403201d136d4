// Reads the binary picture message the app sends (layout in crates/client/src/video.rs).
export const KIND_REMOTE = 1;
export const KIND_LOCAL = 2;
const HEADER = 20;

export interface Picture {
  kind: number;
  peer: string;
  width: number;
  height: number;
  /** When the app sent it, ms since the Unix epoch. */
  sentMs: number;
  y: Uint8Array;
  u: Uint8Array;
  v: Uint8Array;
}

const utf8 = new TextDecoder();

/** Views into `buf` (no copy); null when the message is malformed. */
export function readPicture(buf: ArrayBuffer): Picture | null {
  if (buf.byteLength < HEADER) return null;
  const view = new DataView(buf);
  const kind = view.getUint8(0);
  const n = view.getUint8(1);
  const width = view.getUint32(4, true);
  const height = view.getUint32(8, true);
  const sentMs = view.getFloat64(12, true);
  const start = HEADER + Math.ceil(n / 4) * 4;
  const luma = width * height;
  if (width === 0 || height === 0 || width % 2 || height % 2) return null;
  if (buf.byteLength !== start + luma + luma / 2) return null;
  const peer = utf8.decode(new Uint8Array(buf, HEADER, n));
  return {
    kind,
    peer,
    width,
    height,
    sentMs,
    y: new Uint8Array(buf, start, luma),
    u: new Uint8Array(buf, start + luma, luma / 4),
    v: new Uint8Array(buf, start + luma + luma / 4, luma / 4),
  };
}

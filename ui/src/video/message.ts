// Reads the binary picture message the app sends (layout in crates/client/src/video.rs).
export const KIND_REMOTE = 1;
export const KIND_LOCAL = 2;
export const KIND_ENCODED = 3;
export const CODEC_VP8 = 1;
export const CODEC_H264 = 2;
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

/** One encoded frame from a peer, for the page's decoder. */
export interface EncodedFrame {
  peer: string;
  /** "vp8" or "avc1.42e01f", as WebCodecs names them. */
  codec: string;
  keyframe: boolean;
  /** One more than the last frame from this peer; wraps at 2^32. */
  seq: number;
  /** RTP timestamp, 90 kHz. */
  rtpTimestamp: number;
  sentMs: number;
  data: Uint8Array;
}

const utf8 = new TextDecoder();

/** The message's kind, or null when it is too short to have one. */
export function messageKind(buf: ArrayBuffer): number | null {
  return buf.byteLength < HEADER ? null : new DataView(buf).getUint8(0);
}

/** An encoded frame, its data a view into `buf`; null when malformed or of another kind. */
export function readEncoded(buf: ArrayBuffer): EncodedFrame | null {
  if (buf.byteLength < HEADER) return null;
  const view = new DataView(buf);
  if (view.getUint8(0) !== KIND_ENCODED) return null;
  const n = view.getUint8(1);
  const codecByte = view.getUint8(2);
  const codec = codecByte === CODEC_VP8 ? "vp8" : codecByte === CODEC_H264 ? "avc1.42e01f" : null;
  const start = HEADER + Math.ceil(n / 4) * 4;
  if (!codec || buf.byteLength <= start) return null;
  return {
    peer: utf8.decode(new Uint8Array(buf, HEADER, n)),
    codec,
    keyframe: (view.getUint8(3) & 1) === 1,
    seq: view.getUint32(4, true),
    rtpTimestamp: view.getUint32(8, true),
    sentMs: view.getFloat64(12, true),
    data: new Uint8Array(buf, start),
  };
}

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

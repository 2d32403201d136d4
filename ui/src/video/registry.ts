// Which canvas shows whose picture, and the decoders of peers' encoded video. Canvases register
// as they mount; pictures for a peer with no canvas are dropped (nobody is looking), and so are
// encoded frames, whose decoder then waits for a keyframe.
//
// Remote video comes as encoded VP8 frames that the page decodes with WebCodecs (cheaper than
// receiving decoded pictures: docs/ARCHITECTURE.md). When the page cannot decode (no
// `VideoDecoder`, the codec unsupported, or the decoder keeps failing) it tells the app, which
// then decodes and sends I420 pictures instead; both kinds are drawn here.
import { KIND_ENCODED, KIND_LOCAL, type EncodedFrame, type Picture, messageKind, readEncoded, readPicture } from "./message";
import { createRenderer, type Renderer } from "./renderer";
import { FailureCounter, StreamGate, chunkTimestamp } from "./stream";

/** What the registry asks of the app. */
export interface VideoControls {
  requestKeyframe(peer: string): void;
  decodeVideoHere(): void;
  /** The self-view is shown this many device pixels wide: its pictures need be no wider. */
  selfViewWidth(pixels: number): void;
}

const LOCAL = "\u0000self";
const renderers = new Map<string, Renderer>();
const painted = new Map<string, number>();
/** How each peer's last picture came: decoded here ("webcodecs"), by the app ("pictures"), or
 *  by the browser's own WebRTC in the browser mode ("browser"). */
const paths = new Map<string, "webcodecs" | "pictures" | "browser">();
let received = 0;
/** Channel delays of the latest remote pictures, ms (sent by the app to drawn here). */
const DELAYS_KEPT = 600;
const delays = new Float64Array(DELAYS_KEPT);
let delaysSeen = 0;
let controls: VideoControls = { requestKeyframe() {}, decodeVideoHere() {}, selfViewWidth() {} };
/** Whether the page decodes encoded video; false once it gave that up. */
let decodingHere = true;
const failures = new FailureCounter();

interface PeerDecoder {
  gate: StreamGate;
  decoder: VideoDecoder | null;
  codec: string;
  /** When each frame in the decoder was sent, by its chunk timestamp (for the delay). */
  sent: Map<number, number>;
}
const decoders = new Map<string, PeerDecoder>();

/** The latest self-view picture, held to be drawn together with the next remote picture: with
 *  WebKit painting in software, every separate canvas update is a repaint of its own, so
 *  drawing the two together saves a third of the repaints (docs/BENCHMARKS.md). Drawn on its
 *  own when no remote picture comes soon (their camera is off). */
let pendingLocal: Picture | null = null;
let localTimer: number | null = null;
const LOCAL_WAIT_MS = 70;

function drawLocal() {
  if (localTimer !== null) {
    window.clearTimeout(localTimer);
    localTimer = null;
  }
  const p = pendingLocal;
  pendingLocal = null;
  const r = renderers.get(LOCAL);
  if (!p || !r) return;
  r.draw(p);
  painted.set(LOCAL, (painted.get(LOCAL) ?? 0) + 1);
}

function remoteDrawn() {
  if (pendingLocal) drawLocal();
}

export function setVideoControls(c: VideoControls) {
  controls = c;
}

/** Checks that the page can decode VP8; if not, the app decodes from now on. */
export async function checkDecoding(): Promise<void> {
  let ok = false;
  try {
    ok = typeof VideoDecoder !== "undefined" && ((await VideoDecoder.isConfigSupported({ codec: "vp8" })).supported ?? false);
  } catch {
    ok = false;
  }
  if (!ok) giveUpDecoding("this page has no VP8 decoder");
}

function giveUpDecoding(why: string) {
  if (!decodingHere) return;
  decodingHere = false;
  console.warn(`video: ${why}; the app decodes it instead`);
  for (const d of decoders.values()) closeDecoder(d);
  decoders.clear();
  controls.decodeVideoHere();
}

/** Watches how wide the self-view is shown and tells the app (each self-view picture comes
 *  whole through the app's channel: pixels nobody sees cost a measurable share of a call). */
let selfViewObserver: ResizeObserver | null = null;
let selfViewPixels = 0;

function watchSelfView(canvas: HTMLCanvasElement | null) {
  selfViewObserver?.disconnect();
  selfViewObserver = null;
  if (!canvas || typeof ResizeObserver === "undefined") return;
  const measure = () => {
    const pixels = Math.round(canvas.getBoundingClientRect().width * (window.devicePixelRatio || 1));
    if (pixels > 0 && pixels !== selfViewPixels) {
      selfViewPixels = pixels;
      controls.selfViewWidth(pixels);
    }
  };
  selfViewObserver = new ResizeObserver(measure);
  selfViewObserver.observe(canvas);
}

export function attach(peer: string | null, canvas: HTMLCanvasElement | null) {
  const key = peer ?? LOCAL;
  if (peer === null) watchSelfView(canvas);
  if (canvas) renderers.set(key, createRenderer(canvas));
  else {
    renderers.delete(key);
    const d = decoders.get(key);
    if (d) {
      closeDecoder(d);
      decoders.delete(key);
    }
  }
}

/** Off: pictures are received and counted but not drawn (the benchmark's way to tell the
  *  cost of moving pictures from the drawing's). */
let drawing = true;

function noteDelay(sentMs: number) {
  delays[delaysSeen % DELAYS_KEPT] = Date.now() - sentMs;
  delaysSeen++;
}

export function onVideoMessage(buf: ArrayBuffer) {
  if (messageKind(buf) === KIND_ENCODED) {
    const f = readEncoded(buf);
    if (f) onEncoded(f);
    return;
  }
  const p = readPicture(buf);
  if (!p) return;
  if (!drawing) {
    received++;
    return;
  }
  if (p.kind === KIND_LOCAL) {
    pendingLocal = p;
    if (localTimer === null) localTimer = window.setTimeout(drawLocal, LOCAL_WAIT_MS);
    return;
  }
  const r = renderers.get(p.peer);
  if (!r) return;
  r.draw(p);
  painted.set(p.peer, (painted.get(p.peer) ?? 0) + 1);
  paths.set(p.peer, "pictures");
  noteDelay(p.sentMs);
  remoteDrawn();
}

function closeDecoder(d: PeerDecoder) {
  if (d.decoder && d.decoder.state !== "closed") d.decoder.close();
  d.decoder = null;
  d.sent.clear();
  d.gate.lost();
}

function onEncoded(f: EncodedFrame) {
  if (!decodingHere) return;
  if (!drawing) {
    // Counted, not decoded (the sequence gap makes the decoder wait for a keyframe after).
    received++;
    return;
  }
  // Nobody looks at this peer: nothing to decode. (A decoder made for a canvas that went away
  // was closed with it.)
  if (!renderers.has(f.peer)) return;
  let d = decoders.get(f.peer);
  if (!d) {
    d = { gate: new StreamGate(), decoder: null, codec: f.codec, sent: new Map() };
    decoders.set(f.peer, d);
  }
  const offer = d.gate.offer(f.seq, f.keyframe, performance.now());
  if (offer.askKeyframe) controls.requestKeyframe(f.peer);
  if (!offer.decode) return;
  if (!d.decoder || d.decoder.state === "closed" || d.codec !== f.codec) {
    if (d.decoder && d.decoder.state !== "closed") d.decoder.close();
    d.decoder = makeDecoder(f.peer, d, f.codec);
    d.codec = f.codec;
    if (!d.decoder) return;
  }
  const timestamp = chunkTimestamp(f.rtpTimestamp);
  d.sent.set(timestamp, f.sentMs);
  try {
    d.decoder.decode(new EncodedVideoChunk({ type: f.keyframe ? "key" : "delta", timestamp, data: f.data }));
  } catch (e) {
    decoderFailed(f.peer, d, e);
  }
}

function makeDecoder(peer: string, d: PeerDecoder, codec: string): VideoDecoder | null {
  try {
    const decoder = new VideoDecoder({
      output: (frame) => {
        const sentMs = d.sent.get(frame.timestamp);
        d.sent.delete(frame.timestamp);
        const r = renderers.get(peer);
        if (!r) {
          frame.close();
          return;
        }
        r.drawFrame(frame);
        painted.set(peer, (painted.get(peer) ?? 0) + 1);
        paths.set(peer, "webcodecs");
        if (sentMs !== undefined) noteDelay(sentMs);
        remoteDrawn();
      },
      error: (e) => decoderFailed(peer, d, e),
    });
    decoder.configure({ codec, optimizeForLatency: true });
    return decoder;
  } catch (e) {
    decoderFailed(peer, d, e);
    return null;
  }
}

function decoderFailed(peer: string, d: PeerDecoder, e: unknown) {
  console.warn(`video: decoding ${peer}'s video failed`, e);
  closeDecoder(d);
  if (failures.failed(performance.now())) giveUpDecoding("the decoder keeps failing");
  else controls.requestKeyframe(peer);
}

/** The delay from the app sending a picture to drawing it: median and 95th percentile over the latest remote pictures, ms. */
export function channelDelay(): { p50: number; p95: number; samples: number } | null {
  const n = Math.min(delaysSeen, DELAYS_KEPT);
  if (n === 0) return null;
  const sorted = delays.slice(0, n).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { p50: at(0.5), p95: at(0.95), samples: sorted.length };
}

/** A media stream playing for one canvas (the browser mode): a hidden video element whose
 *  frames are drawn as they come, and which plays the sound. */
interface Playing {
  video: HTMLVideoElement;
  stopped: boolean;
}
const playing = new Map<string, Playing>();

function mediaShelf(): HTMLElement {
  let shelf = document.getElementById("media-shelf");
  if (!shelf) {
    shelf = document.createElement("div");
    shelf.id = "media-shelf";
    shelf.setAttribute("aria-hidden", "true");
    shelf.style.cssText = "position:fixed;width:1px;height:1px;overflow:hidden;opacity:0;pointer-events:none;left:0;top:0";
    document.body.append(shelf);
  }
  return shelf;
}

/** Browser mode: shows `stream` on `peer`'s canvas (`null`: the self-view) and plays its sound
 *  (not our own); `null` stops it. */
export function attachStream(peer: string | null, stream: MediaStream | null) {
  const key = peer ?? LOCAL;
  const old = playing.get(key);
  if (old) {
    old.stopped = true;
    old.video.srcObject = null;
    old.video.remove();
    playing.delete(key);
  }
  if (!stream) return;
  const video = document.createElement("video");
  video.playsInline = true;
  video.autoplay = true;
  video.muted = peer === null;
  video.srcObject = stream;
  mediaShelf().append(video);
  const entry: Playing = { video, stopped: false };
  playing.set(key, entry);
  const start = () =>
    video.play().catch(() => {
      // Sound before any click is blocked by some browsers: play muted, and unmute at the
      // first touch or key.
      video.muted = true;
      void video.play();
      const unmute = () => {
        if (peer !== null) video.muted = false;
        void video.play();
      };
      window.addEventListener("pointerdown", unmute, { once: true });
      window.addEventListener("keydown", unmute, { once: true });
    });
  void start();
  const next = () => {
    if (entry.stopped) return;
    if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(draw);
    else window.setTimeout(draw, 33);
  };
  const draw = () => {
    const r = renderers.get(key);
    if (r && video.videoWidth > 0) {
      try {
        // The browser draws its own video (any pixel format, on the GPU when it has one).
        if (r.drawVideo) r.drawVideo(video);
        else r.drawFrame(new VideoFrame(video, { timestamp: Math.round(performance.now() * 1000) }));
        painted.set(key, (painted.get(key) ?? 0) + 1);
        if (peer !== null) paths.set(key, "browser");
      } catch (e) {
        console.warn("video: a frame could not be drawn", e);
      }
    }
    next();
  };
  next();
}

/** Pictures drawn per peer (the end-to-end test reads it; so does a curious developer). */
export function paintedCount(peer: string | null): number {
  return painted.get(peer ?? LOCAL) ?? 0;
}

declare global {
  interface Window {
    hearthVideo?: {
      painted: typeof paintedCount;
      renderer: (peer: string | null) => string | null;
      /** How `peer`'s pictures reach the canvas: "webcodecs", "pictures", or null before any. */
      path: (peer: string) => string | null;
      delay: typeof channelDelay;
      setDrawing: (on: boolean) => number;
    };
  }
}
window.hearthVideo = {
  painted: paintedCount,
  renderer: (peer) => renderers.get(peer ?? LOCAL)?.kind ?? null,
  path: (peer) => paths.get(peer) ?? null,
  delay: channelDelay,
  setDrawing(on) {
    drawing = on;
    return received;
  },
};

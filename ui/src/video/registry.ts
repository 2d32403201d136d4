// Which canvas shows whose picture. Canvases register as they mount; pictures for a peer with
// no canvas are dropped (nobody is looking).
import { KIND_LOCAL, readPicture } from "./message";
import { createRenderer, type Renderer } from "./renderer";

const LOCAL = "\u0000self";
const renderers = new Map<string, Renderer>();
const painted = new Map<string, number>();
let received = 0;
/** Channel delays of the latest remote pictures, ms (sent by the app to drawn here). */
const DELAYS_KEPT = 600;
const delays = new Float64Array(DELAYS_KEPT);
let delaysSeen = 0;

export function attach(peer: string | null, canvas: HTMLCanvasElement | null) {
  const key = peer ?? LOCAL;
  if (canvas) renderers.set(key, createRenderer(canvas));
  else renderers.delete(key);
}

/** Off: pictures are received and counted but not drawn (the benchmark's way to tell the
  *  cost of moving pictures from the drawing's). */
let drawing = true;

export function onPicture(buf: ArrayBuffer) {
  const p = readPicture(buf);
  if (!p) return;
  if (!drawing) {
    received++;
    return;
  }
  const key = p.kind === KIND_LOCAL ? LOCAL : p.peer;
  const r = renderers.get(key);
  if (!r) return;
  r.draw(p);
  painted.set(key, (painted.get(key) ?? 0) + 1);
  if (p.kind !== KIND_LOCAL) {
    delays[delaysSeen % DELAYS_KEPT] = Date.now() - p.sentMs;
    delaysSeen++;
  }
}

/** The delay from the app sending a picture to drawing it: median and 95th percentile over the latest remote pictures, ms. */
export function channelDelay(): { p50: number; p95: number; samples: number } | null {
  const n = Math.min(delaysSeen, DELAYS_KEPT);
  if (n === 0) return null;
  const sorted = delays.slice(0, n).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { p50: at(0.5), p95: at(0.95), samples: sorted.length };
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
      delay: typeof channelDelay;
      setDrawing: (on: boolean) => number;
    };
  }
}
window.hearthVideo = {
  painted: paintedCount,
  renderer: (peer) => renderers.get(peer ?? LOCAL)?.kind ?? null,
  delay: channelDelay,
  setDrawing(on) {
    drawing = on;
    return received;
  },
};

// Which canvas shows whose picture. Canvases register as they mount; pictures for a peer with
// no canvas are dropped (nobody is looking).
import { KIND_LOCAL, readPicture } from "./message";
import { createRenderer, type Renderer } from "./renderer";

const LOCAL = "\u0000self";
const renderers = new Map<string, Renderer>();
const painted = new Map<string, number>();

export function attach(peer: string | null, canvas: HTMLCanvasElement | null) {
  const key = peer ?? LOCAL;
  if (canvas) renderers.set(key, createRenderer(canvas));
  else renderers.delete(key);
}

export function onPicture(buf: ArrayBuffer) {
  const p = readPicture(buf);
  if (!p) return;
  const key = p.kind === KIND_LOCAL ? LOCAL : p.peer;
  const r = renderers.get(key);
  if (!r) return;
  r.draw(p);
  painted.set(key, (painted.get(key) ?? 0) + 1);
}

/** Pictures drawn per peer (the end-to-end test reads it; so does a curious developer). */
export function paintedCount(peer: string | null): number {
  return painted.get(peer ?? LOCAL) ?? 0;
}

declare global {
  interface Window {
    hearthVideo?: { painted: typeof paintedCount; renderer: (peer: string | null) => string | null };
  }
}
window.hearthVideo = {
  painted: paintedCount,
  renderer: (peer) => renderers.get(peer ?? LOCAL)?.kind ?? null,
};

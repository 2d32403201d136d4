// Draws pictures on a canvas: I420 pictures from the app, or frames the page decoded itself
// (WebCodecs). WebGL2 (or WebGL1) uploads the three planes as textures and converts to RGB in a
// shader, so the CPU only copies bytes; without WebGL a 2D canvas and a conversion in
// JavaScript take over for I420, and the browser's own drawImage for decoded frames.
import type { Picture } from "./message";

export interface Renderer {
  readonly kind: "webgl" | "canvas2d";
  draw(p: Picture): void;
  /** Draws a decoded frame and closes it (at once, or when an asynchronous copy is done). */
  drawFrame(f: VideoFrame): void;
  /** Draws a playing video element's current picture (the browser mode; 2D canvas only). */
  drawVideo?(v: HTMLVideoElement): void;
}

/** A decoded I420 frame's planes, copied out into `buf` (grown when too small). */
async function framePlanes(f: VideoFrame, buf: { bytes: Uint8Array }): Promise<Picture | null> {
  const width = f.codedWidth;
  const height = f.codedHeight;
  if (f.format !== "I420" || width % 2 || height % 2) return null;
  const luma = width * height;
  const size = luma + luma / 2;
  if (buf.bytes.length < size) buf.bytes = new Uint8Array(size);
  const b = buf.bytes;
  await f.copyTo(b, {
    layout: [
      { offset: 0, stride: width },
      { offset: luma, stride: width / 2 },
      { offset: luma + luma / 4, stride: width / 2 },
    ],
  });
  return {
    kind: 0,
    peer: "",
    width,
    height,
    sentMs: 0,
    y: b.subarray(0, luma),
    u: b.subarray(luma, luma + luma / 4),
    v: b.subarray(luma + luma / 4, size),
  };
}

const VERTEX = `
attribute vec2 pos;
varying vec2 uv;
void main() {
  uv = vec2((pos.x + 1.0) / 2.0, (1.0 - pos.y) / 2.0);
  gl_Position = vec4(pos, 0.0, 1.0);
}`;

// BT.601 limited range, what the encoders and decoders use.
const FRAGMENT = `
precision mediump float;
varying vec2 uv;
uniform sampler2D ty;
uniform sampler2D tu;
uniform sampler2D tv;
void main() {
  float y = 1.1643 * (texture2D(ty, uv).r - 0.0625);
  float u = texture2D(tu, uv).r - 0.5;
  float v = texture2D(tv, uv).r - 0.5;
  gl_FragColor = vec4(y + 1.5958 * v, y - 0.39173 * u - 0.81290 * v, y + 2.017 * u, 1.0);
}`;

class GlRenderer implements Renderer {
  readonly kind = "webgl";
  private textures: WebGLTexture[] = [];
  private size = [0, 0];

  constructor(
    private canvas: HTMLCanvasElement,
    private gl: WebGLRenderingContext,
  ) {
    const program = gl.createProgram();
    const shader = (type: number, src: string) => {
      const s = gl.createShader(type);
      if (!s) throw new Error("no shader");
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s) ?? "shader");
      gl.attachShader(program, s);
    };
    shader(gl.VERTEX_SHADER, VERTEX);
    shader(gl.FRAGMENT_SHADER, FRAGMENT);
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error("link");
    gl.useProgram(program);
    const buf = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const pos = gl.getAttribLocation(program, "pos");
    gl.enableVertexAttribArray(pos);
    gl.vertexAttribPointer(pos, 2, gl.FLOAT, false, 0, 0);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    ["ty", "tu", "tv"].forEach((name, i) => {
      const t = gl.createTexture();
      if (!t) throw new Error("no texture");
      gl.activeTexture(gl.TEXTURE0 + i);
      gl.bindTexture(gl.TEXTURE_2D, t);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
      gl.uniform1i(gl.getUniformLocation(program, name), i);
      this.textures.push(t);
    });
  }

  draw(p: Picture) {
    const gl = this.gl;
    const resized = this.size[0] !== p.width || this.size[1] !== p.height;
    if (resized) {
      this.canvas.width = p.width;
      this.canvas.height = p.height;
      gl.viewport(0, 0, p.width, p.height);
      this.size = [p.width, p.height];
    }
    const planes: [Uint8Array, number, number][] = [
      [p.y, p.width, p.height],
      [p.u, p.width / 2, p.height / 2],
      [p.v, p.width / 2, p.height / 2],
    ];
    planes.forEach(([data, w, h], i) => {
      gl.activeTexture(gl.TEXTURE0 + i);
      const texture = this.textures[i];
      if (texture) gl.bindTexture(gl.TEXTURE_2D, texture);
      if (resized) {
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.LUMINANCE, w, h, 0, gl.LUMINANCE, gl.UNSIGNED_BYTE, data);
      } else {
        gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, w, h, gl.LUMINANCE, gl.UNSIGNED_BYTE, data);
      }
    });
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
  }

  private planes = { bytes: new Uint8Array(0) };

  /** A copy out of a frame is under way: frames meanwhile are skipped, not queued (they
   *  would share the one buffer). */
  private copying = false;

  drawFrame(f: VideoFrame) {
    // Our decoders give I420: its planes go up as they are, once copied out (asynchronously).
    if (this.copying) {
      f.close();
      return;
    }
    this.copying = true;
    void framePlanes(f, this.planes)
      .then((p) => {
        if (p) this.draw(p);
        else console.warn("a decoded frame in an unexpected format", f.format);
      })
      .finally(() => {
        f.close();
        this.copying = false;
      });
  }
}

// BT.601 limited range in 8-bit fixed point, as tables: the per-pixel work is a few
// additions and lookups. Written by hand: no package does I420 to RGBA into an ImageData.
const Y_TAB = new Int32Array(256);
const RV = new Int32Array(256);
const GU = new Int32Array(256);
const GV = new Int32Array(256);
const BU = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  Y_TAB[i] = 298 * (i - 16) + 128;
  RV[i] = 409 * (i - 128);
  GU[i] = -100 * (i - 128);
  GV[i] = -208 * (i - 128);
  BU[i] = 516 * (i - 128);
}
// Clamps (value >> 8) + CLIP_OFFSET to 0..255.
const CLIP_OFFSET = 512;
const CLIP = new Uint8Array(1536);
for (let i = 0; i < CLIP.length; i++) CLIP[i] = Math.max(0, Math.min(255, i - CLIP_OFFSET));

/** I420 to RGBA (little-endian: alpha in the top byte), two rows and two columns at a time,
 *  since each chroma sample covers a 2x2 block. */
export function i420ToRgba(p: Picture, out: Uint32Array) {
  const w = p.width;
  const cw = w >> 1;
  for (let row = 0; row < p.height; row += 2) {
    const y0 = row * w;
    const y1 = y0 + w;
    const c0 = (row >> 1) * cw;
    for (let cx = 0; cx < cw; cx++) {
      const u = p.u[c0 + cx] ?? 128;
      const v = p.v[c0 + cx] ?? 128;
      const r = RV[v] ?? 0;
      const g = (GU[u] ?? 0) + (GV[v] ?? 0);
      const b = BU[u] ?? 0;
      const x = cx << 1;
      out[y0 + x] = pixel(p.y[y0 + x] ?? 16, r, g, b);
      out[y0 + x + 1] = pixel(p.y[y0 + x + 1] ?? 16, r, g, b);
      out[y1 + x] = pixel(p.y[y1 + x] ?? 16, r, g, b);
      out[y1 + x + 1] = pixel(p.y[y1 + x + 1] ?? 16, r, g, b);
    }
  }
}

function pixel(y: number, r: number, g: number, b: number): number {
  const yy = Y_TAB[y] ?? 0;
  return (
    (0xff000000 |
      ((CLIP[((yy + b) >> 8) + CLIP_OFFSET] ?? 0) << 16) |
      ((CLIP[((yy + g) >> 8) + CLIP_OFFSET] ?? 0) << 8) |
      (CLIP[((yy + r) >> 8) + CLIP_OFFSET] ?? 0)) >>>
    0
  );
}

class SoftwareRenderer implements Renderer {
  readonly kind = "canvas2d";
  private image: ImageData | null = null;
  private pixels: Uint32Array | null = null;

  constructor(
    private canvas: HTMLCanvasElement,
    private ctx: CanvasRenderingContext2D,
  ) {}

  draw(p: Picture) {
    if (!this.image || !this.pixels || this.image.width !== p.width || this.image.height !== p.height) {
      this.canvas.width = p.width;
      this.canvas.height = p.height;
      this.image = this.ctx.createImageData(p.width, p.height);
      this.pixels = new Uint32Array(this.image.data.buffer);
    }
    i420ToRgba(p, this.pixels);
    this.ctx.putImageData(this.image, 0, 0);
  }

  drawVideo(v: HTMLVideoElement) {
    if (this.canvas.width !== v.videoWidth || this.canvas.height !== v.videoHeight) {
      this.canvas.width = v.videoWidth;
      this.canvas.height = v.videoHeight;
      this.image = null;
    }
    this.ctx.drawImage(v, 0, 0);
  }

  drawFrame(f: VideoFrame) {
    // The browser converts and draws; measured here to cost less than drawing I420 from the app.
    if (this.canvas.width !== f.displayWidth || this.canvas.height !== f.displayHeight) {
      this.canvas.width = f.displayWidth;
      this.canvas.height = f.displayHeight;
      this.image = null;
    }
    try {
      this.ctx.drawImage(f, 0, 0);
    } finally {
      f.close();
    }
  }
}

declare global {
  interface Window {
    /** Set by the app: "2d" when WebKit paints without the GPU (see src-tauri/src/lib.rs). */
    hearthRenderer?: string;
  }
}

/** WebGL when the page has it and the app composites on the GPU, else the 2D canvas
 *  (`?renderer=2d` forces it in a browser). */
export function createRenderer(canvas: HTMLCanvasElement): Renderer {
  const forced2d = window.hearthRenderer === "2d" || new URLSearchParams(location.search).get("renderer") === "2d";
  if (!forced2d) {
    const opts = { preserveDrawingBuffer: true, antialias: false, alpha: false };
    const gl = (canvas.getContext("webgl2", opts) ?? canvas.getContext("webgl", opts)) as WebGLRenderingContext | null;
    if (gl) {
      try {
        return new GlRenderer(canvas, gl);
      } catch (e) {
        console.warn("WebGL renderer failed; drawing in software", e);
      }
    }
  }
  const ctx = canvas.getContext("2d");
  if (!ctx) throw new Error("this page can draw no pictures");
  return new SoftwareRenderer(canvas, ctx);
}

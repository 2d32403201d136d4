// The ring and the auto-answer chime, made with Web Audio (no sound files to ship). A
// resident's ring is loud and long; it stops the moment the call is answered or gone.
let ctx: AudioContext | null = null;
let ringTimer: number | null = null;

function audio(): AudioContext | null {
  try {
    ctx ??= new AudioContext();
    // A browser starts a context made before the person touched the page suspended (its
    // autoplay rules); asking again costs nothing and plays once it is allowed.
    if (ctx.state === "suspended") void ctx.resume().catch(() => {});
    return ctx;
  } catch {
    return null;
  }
}

// The first touch, click or key anywhere makes (or wakes) the context while the browser allows
// it, so a ring that comes later, with nobody touching the page, is heard: a relative waiting
// on the page for the care home's call. (A finger's `pointerdown` does not count as such a
// gesture; its `touchend` and `pointerup` do.)
if (typeof window !== "undefined") {
  for (const kind of ["pointerup", "touchend", "click", "keydown"]) window.addEventListener(kind, audio, { capture: true, passive: true });
}

function tone(freq: number, start: number, length: number, gain: number) {
  const a = audio();
  // A suspended context's clock stands still: tones queued now would all sound at once when it
  // wakes. This burst is skipped; the next one plays.
  if (!a || a.state !== "running") return;
  const osc = a.createOscillator();
  const g = a.createGain();
  osc.frequency.value = freq;
  g.gain.setValueAtTime(0, a.currentTime + start);
  g.gain.linearRampToValueAtTime(gain, a.currentTime + start + 0.02);
  g.gain.linearRampToValueAtTime(0, a.currentTime + start + length);
  osc.connect(g).connect(a.destination);
  osc.start(a.currentTime + start);
  osc.stop(a.currentTime + start + length + 0.05);
}

export function startRing() {
  stopRing();
  const burst = () => {
    for (let i = 0; i < 2; i++) {
      tone(440, i * 0.5, 0.4, 0.5);
      tone(480, i * 0.5, 0.4, 0.5);
    }
  };
  burst();
  ringTimer = window.setInterval(burst, 3000);
}

export function stopRing() {
  if (ringTimer !== null) window.clearInterval(ringTimer);
  ringTimer = null;
}

export function chime() {
  tone(880, 0, 0.25, 0.4);
  tone(1320, 0.12, 0.35, 0.3);
}

/** Someone new is in the waiting room: a double knock, distinct from a ring. */
export function knock() {
  tone(660, 0, 0.12, 0.5);
  tone(660, 0.18, 0.12, 0.5);
  tone(990, 0.5, 0.3, 0.35);
}

// The rules for one peer's encoded video in the page, kept apart from WebCodecs so they can be
// tested: which frames may go to the decoder, when to ask the other side for a keyframe, and
// when to give up decoding in the page and let the app decode instead.

/** Least time between two keyframe requests from the page (the app sends at most one a
 *  second to the other side anyway). */
export const ASK_INTERVAL_MS = 500;
/** Decoder failures within `FAILURE_WINDOW_MS` after which the page stops decoding. */
export const MAX_FAILURES = 3;
export const FAILURE_WINDOW_MS = 30_000;

export interface Offer {
  /** Give this frame to the decoder. */
  decode: boolean;
  /** Ask the other side for a keyframe now. */
  askKeyframe: boolean;
}

/** Whether frames may be decoded: a delta frame decodes only after everything before it did,
 *  so after any gap (a frame lost on the way, a decoder failure, nobody looking) frames are
 *  skipped until a keyframe. */
export class StreamGate {
  private next: number | null = null;
  private needKey = true;
  private askedAt = Number.NEGATIVE_INFINITY;

  /** A frame arrived. `seq` counts frames from this peer and wraps at 2^32. */
  offer(seq: number, keyframe: boolean, now: number): Offer {
    if (this.next !== null && seq !== this.next) this.needKey = true;
    this.next = (seq + 1) % 2 ** 32;
    if (keyframe) {
      this.needKey = false;
      return { decode: true, askKeyframe: false };
    }
    if (!this.needKey) return { decode: true, askKeyframe: false };
    return { decode: false, askKeyframe: this.ask(now) };
  }

  /** The decoder failed or was closed: wait for a keyframe. */
  lost() {
    this.needKey = true;
  }

  private ask(now: number): boolean {
    if (now - this.askedAt < ASK_INTERVAL_MS) return false;
    this.askedAt = now;
    return true;
  }
}

/** Counts decoder failures; says when there were too many to keep trying. */
export class FailureCounter {
  private times: number[] = [];

  /** A failure at `now`; true when the page should stop decoding. */
  failed(now: number): boolean {
    this.times = this.times.filter((t) => now - t < FAILURE_WINDOW_MS);
    this.times.push(now);
    return this.times.length >= MAX_FAILURES;
  }
}

/** WebCodecs' timestamp (µs) for a 90 kHz RTP timestamp. */
export function chunkTimestamp(rtp: number): number {
  return Math.round((rtp * 1000) / 90);
}

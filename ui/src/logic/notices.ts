// How long things a person did not ask to read stay on screen. A resident's tablet shows no
// dialog that needs reading or a tap to go away (PRODUCT.md): its notices go by themselves, as
// does anyone's line about a tap that failed (it has no close button).

/** How long such a notice or line stays, in milliseconds. */
export const SHOWN_MS = 10_000;

/**
 * The notices among `ids` that have been on screen for `shownMs` or longer at `now`.
 * `firstSeen` remembers when each id was first shown; ids no longer shown are forgotten.
 */
export function expired(ids: readonly number[], firstSeen: Map<number, number>, now: number, shownMs = SHOWN_MS): number[] {
  for (const id of [...firstSeen.keys()]) if (!ids.includes(id)) firstSeen.delete(id);
  const out: number[] = [];
  for (const id of ids) {
    const since = firstSeen.get(id) ?? now;
    firstSeen.set(id, since);
    if (now - since >= shownMs) out.push(id);
  }
  return out;
}

/** A line shown since `since`: the same line keeps its time, a different one starts again. */
export interface Shown<T> {
  what: T;
  since: number;
}

/** What stays of the line `what` at `now`: `null` once it has been shown for `shownMs`. */
export function lineAt<T>(shown: Shown<T> | null, what: T | null, now: number, shownMs = SHOWN_MS): Shown<T> | null {
  if (what === null) return null;
  const since = shown && shown.what === what ? shown.since : now;
  return now - since >= shownMs ? null : { what, since };
}

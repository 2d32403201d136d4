// What the staff console shows of invitations, and the defaults it offers. Pure functions, `now`
// passed in, so Vitest drives them.
import type { Invitation, Role } from "../bindings";

/** Days a new invitation lasts unless changed. Staff set up a resident's tablet, its family and
 *  the home's own people once and keep them (an expired tablet invitation leaves the resident
 *  with a screen she cannot fix); a consult's patients and guests come for a visit, and so does
 *  everyone a clinician invites (`byStaff` false). */
export function defaultDays(role: Role, byStaff: boolean): number {
  return byStaff && role !== "patient" && role !== "guest" ? 365 : 7;
}

/** An invitation this close to its end is shown with a warning, so a new one is made first. */
export const EXPIRES_SOON_DAYS = 14;

export type InvitationStatus = "active" | "expired" | "revoked";

export interface InvitationView {
  status: InvitationStatus;
  /** Whole days left when it is active and ends within [`EXPIRES_SOON_DAYS`]. */
  soonDays: number | null;
}

const DAY_MS = 86_400_000;

export function invitationView(inv: Pick<Invitation, "revoked_at" | "expires_at">, now: number): InvitationView {
  if (inv.revoked_at !== null) return { status: "revoked", soonDays: null };
  if (inv.expires_at === null) return { status: "active", soonDays: null };
  if (inv.expires_at <= now) return { status: "expired", soonDays: null };
  const days = Math.ceil((inv.expires_at - now) / DAY_MS);
  return { status: "active", soonDays: days <= EXPIRES_SOON_DAYS ? days : null };
}

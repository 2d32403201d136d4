import { describe, expect, it } from "vitest";
import { defaultDays, invitationView } from "./invitations";

const DAY = 86_400_000;

describe("invitations in the staff console", () => {
  it("last a year for a tablet, its family and staff, a week for a consult's visitors", () => {
    expect(defaultDays("resident", true)).toBe(365);
    expect(defaultDays("family", true)).toBe(365);
    expect(defaultDays("staff", true)).toBe(365);
    expect(defaultDays("clinician", true)).toBe(365);
    expect(defaultDays("patient", true)).toBe(7);
    expect(defaultDays("guest", true)).toBe(7);
    // A clinician's invitations are for a consult, family included.
    expect(defaultDays("family", false)).toBe(7);
  });

  it("warn in their last two weeks and say when they are over", () => {
    const now = 1_000 * DAY;
    const inv = (expires: number | null, revoked: number | null = null) => ({ expires_at: expires, revoked_at: revoked });
    expect(invitationView(inv(now + 100 * DAY), now)).toEqual({ status: "active", soonDays: null });
    expect(invitationView(inv(now + 3 * DAY - 1), now)).toEqual({ status: "active", soonDays: 3 });
    expect(invitationView(inv(now + 14 * DAY), now)).toEqual({ status: "active", soonDays: 14 });
    expect(invitationView(inv(now), now)).toEqual({ status: "expired", soonDays: null });
    expect(invitationView(inv(now + DAY, now - 1), now)).toEqual({ status: "revoked", soonDays: null });
    expect(invitationView(inv(null), now)).toEqual({ status: "active", soonDays: null });
  });
});

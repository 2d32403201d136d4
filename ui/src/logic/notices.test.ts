import { describe, expect, it } from "vitest";
import { expired, lineAt } from "./notices";

describe("notices that go by themselves", () => {
  it("expire after they have been shown for the time, each from when it first showed", () => {
    const seen = new Map<number, number>();
    expect(expired([1], seen, 0, 10)).toEqual([]);
    expect(expired([1, 2], seen, 5, 10)).toEqual([]);
    expect(expired([1, 2], seen, 10, 10)).toEqual([1]);
    expect(expired([2], seen, 14, 10)).toEqual([]);
    expect(expired([2], seen, 15, 10)).toEqual([2]);
  });

  it("forget notices no longer shown, so an id shown again starts afresh", () => {
    const seen = new Map<number, number>();
    expired([7], seen, 0, 10);
    expired([], seen, 5, 10);
    expect(seen.size).toBe(0);
    expect(expired([7], seen, 12, 10)).toEqual([]);
  });
});

describe("the line about a failed tap", () => {
  it("goes after the time; a different line starts the time again", () => {
    let shown = lineAt(null, "offline", 0, 10);
    expect(shown).toEqual({ what: "offline", since: 0 });
    shown = lineAt(shown, "offline", 9, 10);
    expect(shown?.since).toBe(0);
    expect(lineAt(shown, "offline", 10, 10)).toBeNull();
    shown = lineAt(shown, "busy", 9, 10);
    expect(shown).toEqual({ what: "busy", since: 9 });
    expect(lineAt(shown, null, 10, 10)).toBeNull();
  });
});

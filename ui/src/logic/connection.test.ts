import { describe, expect, it } from "vitest";
import type { CallPeer } from "../bindings";
import { callBanners, connectionView } from "./connection";

const peer = (over: Partial<CallPeer>): CallPeer => ({
  peer: "p1",
  name: "Ann",
  connected: true,
  quality: "good",
  their_video: "on",
  our_video_paused: false,
  rtt_ms: 20,
  loss_percent: 0,
  receive_kbps: 900,
  ...over,
});

describe("reconnecting", () => {
  it("counts down to the next attempt and never below zero", () => {
    const c = {
      state: "connecting" as const,
      attempt: 3,
      error: { code: "server_unreachable" as const, message: "x" },
      retry_at_ms: 10_500,
    };
    expect(connectionView(c, 8_000)).toEqual({ kind: "connecting", retryInSeconds: 3, error: "server_unreachable" });
    expect(connectionView(c, 10_400)).toMatchObject({ retryInSeconds: 1 });
    expect(connectionView(c, 20_000)).toMatchObject({ retryInSeconds: 0 });
    expect(connectionView({ state: "connecting", attempt: 0, error: null, retry_at_ms: null }, 0)).toEqual({
      kind: "connecting",
      retryInSeconds: null,
      error: null,
    });
  });

  it("an expired or refused invitation asks for a new one instead of retrying", () => {
    expect(
      connectionView({ state: "refused", error: { code: "expired_token", message: "x" } }, 0),
    ).toEqual({ kind: "refused", error: { code: "expired_token", message: "x" } });
  });

  it("says reconnecting in words, then why video is missing", () => {
    expect(callBanners(peer({ quality: "reconnecting" })).map((b) => b.key)).toEqual(["quality.reconnecting"]);
    expect(callBanners(peer({ quality: "weak", their_video: "paused_weak" })).map((b) => b.key)).toEqual([
      "video.pausedWeak",
    ]);
    expect(callBanners(peer({ quality: "weak" })).map((b) => b.key)).toEqual(["quality.weak"]);
    expect(callBanners(peer({ their_video: "camera_off", our_video_paused: true })).map((b) => b.key)).toEqual([
      "video.cameraOff",
      "video.ourPaused",
    ]);
    expect(callBanners(peer({}))).toEqual([]);
  });
});

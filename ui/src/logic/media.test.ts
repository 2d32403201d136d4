import { describe, expect, it } from "vitest";
import { type GetUserMedia, openDevices, theirVideo } from "./media";

const track = (kind: "audio" | "video") => ({ kind }) as MediaStreamTrack;

/** A browser whose camera or microphone (or both) fail with `NotReadableError`. */
function browser(camera: boolean, microphone: boolean): { gum: GetUserMedia; asked: MediaStreamConstraints[] } {
  const asked: MediaStreamConstraints[] = [];
  const gum: GetUserMedia = async (c) => {
    asked.push(c);
    if ((c.video && !camera) || (c.audio && !microphone)) throw new DOMException("Could not start", "NotReadableError");
    const tracks = [...(c.audio ? [track("audio")] : []), ...(c.video ? [track("video")] : [])];
    return { getTracks: () => tracks };
  };
  return { gum, asked };
}

describe("opening the devices", () => {
  it("asks once when both work", async () => {
    const { gum, asked } = browser(true, true);
    const opened = await openDevices(gum, true, true);
    expect(opened.tracks.map((t) => t.kind)).toEqual(["audio", "video"]);
    expect(opened.failed).toEqual([]);
    expect(asked).toHaveLength(1);
  });

  it("keeps the microphone when the camera fails, and says which failed", async () => {
    const opened = await openDevices(browser(false, true).gum, true, { width: 640 });
    expect(opened.tracks.map((t) => t.kind)).toEqual(["audio"]);
    expect(opened.failed.map((f) => f.device)).toEqual(["camera"]);
  });

  it("keeps the camera when the microphone fails", async () => {
    const opened = await openDevices(browser(true, false).gum, true, true);
    expect(opened.tracks.map((t) => t.kind)).toEqual(["video"]);
    expect(opened.failed.map((f) => f.device)).toEqual(["microphone"]);
  });

  it("reports both when neither works", async () => {
    const opened = await openDevices(browser(false, false).gum, true, true);
    expect(opened.tracks).toEqual([]);
    expect(opened.failed.map((f) => f.device)).toEqual(["microphone", "camera"]);
  });
});

describe("their picture", () => {
  it("tells a weak connection from a camera turned off", () => {
    expect(theirVideo({ video_paused: true })).toBe("paused_weak");
    expect(theirVideo({ video_paused: true, camera_off: true })).toBe("camera_off");
    expect(theirVideo({ video_paused: false })).toBe("on");
  });
});

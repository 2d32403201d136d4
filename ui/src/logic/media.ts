// The browser mode's own devices and what it makes of the other side's video. Pure functions
// over what the browser gives (getUserMedia is passed in), so Vitest drives them without one.
import type { DeviceKind, VideoState } from "../bindings";

/** `getUserMedia`, or a stand-in for it. */
export type GetUserMedia = (c: MediaStreamConstraints) => Promise<{ getTracks(): MediaStreamTrack[] }>;

/** What opening the devices gave: the tracks that work, and each device that failed. */
export interface Opened {
  tracks: MediaStreamTrack[];
  failed: { device: Extract<DeviceKind, "camera" | "microphone">; error: unknown }[];
}

/**
 * Opens the microphone and the camera. Asked together first (one permission prompt); when that
 * fails, each alone, so that a camera that is broken, busy or refused does not cost the call its
 * sound, nor a missing microphone the picture.
 */
export async function openDevices(
  gum: GetUserMedia,
  audio: MediaTrackConstraints | true,
  video: MediaTrackConstraints | true,
): Promise<Opened> {
  try {
    return { tracks: (await gum({ audio, video })).getTracks(), failed: [] };
  } catch {
    const opened: Opened = { tracks: [], failed: [] };
    const each: [Opened["failed"][number]["device"], MediaStreamConstraints][] = [
      ["microphone", { audio }],
      ["camera", { video }],
    ];
    for (const [device, constraints] of each) {
      try {
        opened.tracks.push(...(await gum(constraints)).getTracks());
      } catch (error) {
        opened.failed.push({ device, error });
      }
    }
    return opened;
  }
}

/** What the other side's `media` call message says about their picture. */
export function theirVideo(msg: { video_paused: boolean; camera_off?: boolean }): VideoState {
  if (msg.camera_off) return "camera_off";
  return msg.video_paused ? "paused_weak" : "on";
}

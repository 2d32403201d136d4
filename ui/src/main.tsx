import { render } from "preact";
import { type Backend, inTauri, tauriBackend } from "./api";
import { App } from "./app";
import "./styles.css";
import { checkDecoding, onVideoMessage, setVideoControls } from "./video/registry";

declare global {
  interface Window {
    hearthFirstPaint?: number;
  }
}

async function start() {
  let api: Backend;
  const params = new URLSearchParams(location.search);
  if (inTauri()) {
    api = tauriBackend();
  } else if (params.has("fixture") && !location.pathname.startsWith("/join")) {
    // The screens with made-up data (accessibility checks, screenshots), never at an
    // invitation's link, where the server serves this page to real people.
    const { fixtureBackend } = await import("./fixtures");
    api = fixtureBackend(params);
  } else {
    // The browser mode, served by the signaling server at an invitation's link.
    const { browserBackend } = await import("./browser/backend");
    api = browserBackend(location);
  }
  setVideoControls({
    requestKeyframe: (peer) => api.requestKeyframe(peer),
    decodeVideoHere: () => api.decodeVideoHere(),
    selfViewWidth: (pixels) => api.selfViewWidth(pixels),
  });
  void checkDecoding();
  api.onVideoMessage(onVideoMessage);
  const initial = await api.state();
  const root = document.getElementById("app");
  const asked = new URLSearchParams(location.search).get("page");
  const page = asked === "devices" || asked === "check" ? asked : "home";
  const tab = asked === "invitations" || asked === "audit" ? asked : "tablets";
  if (root) render(<App api={api} initial={initial} initialPage={page} initialTab={tab} />, root);
  // When the first screen was painted, ms since the Unix epoch (the start-up benchmark reads it).
  requestAnimationFrame(() => {
    window.hearthFirstPaint = performance.timeOrigin + performance.now();
  });
}

void start();

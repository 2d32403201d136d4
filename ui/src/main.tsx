import { render } from "preact";
import { type Backend, inTauri, tauriBackend } from "./api";
import { App } from "./app";
import "./styles.css";
import { onPicture } from "./video/registry";

async function start() {
  let api: Backend;
  if (inTauri()) {
    api = tauriBackend();
  } else {
    // A plain browser: the screens with fixture data (accessibility checks, screenshots).
    const { fixtureBackend } = await import("./fixtures");
    api = fixtureBackend(new URLSearchParams(location.search));
  }
  api.onPicture(onPicture);
  const initial = await api.state();
  const root = document.getElementById("app");
  const page = new URLSearchParams(location.search).get("page") === "devices" ? "devices" : "home";
  if (root) render(<App api={api} initial={initial} initialPage={page} />, root);
}

void start();

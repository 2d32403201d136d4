import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Backend, Outcome } from "./api";
import type { AppState } from "./bindings";
import { AppContext, type Ctx } from "./context";
import { i18n } from "./i18n";
import { connectionView } from "./logic/connection";
import { type Effect, type Incoming, idle, secondsLeft, step } from "./logic/incoming";
import { Calling, Ended, IncomingCall, InCall } from "./screens/call";
import { ErrorText } from "./screens/common";
import { Check, Devices, FamilyHome, type FamilyPage } from "./screens/family";
import { ResidentHome } from "./screens/resident";
import { Setup } from "./screens/setup";
import { Connecting, Refused, Waiting } from "./screens/status";
import { chime, startRing, stopRing } from "./sound";

export function App({ api, initial, initialPage = "home" }: { api: Backend; initial: AppState; initialPage?: FamilyPage }) {
  const [state, setState] = useState(initial);
  const [now, setNow] = useState(Date.now());
  const [error, setError] = useState<string | null>(null);
  const [page, setPage] = useState<FamilyPage>(initialPage);
  const incoming = useRef<Incoming>(idle);
  const t = useMemo(() => i18n(state.language), [state.language]);

  const run = (effects: Effect[]) => {
    for (const fx of effects) {
      if (fx === "ring") startRing();
      else if (fx === "stop_ring") stopRing();
      else if (fx === "chime") chime();
      else void api.answer(fx.answer).then((r) => setError(r?.code ?? null));
    }
  };
  const feed = (e: Parameters<typeof step>[1]) => {
    const [next, effects] = step(incoming.current, e);
    incoming.current = next;
    run(effects);
  };

  useEffect(() => {
    api.onState((s) => {
      setState(s);
      feed({ type: "call", call: s.call, now: Date.now() });
    });
    feed({ type: "call", call: initial.call, now: Date.now() });
    const timer = window.setInterval(() => {
      const n = Date.now();
      setNow(n);
      feed({ type: "tick", now: n });
    }, 250);
    return () => window.clearInterval(timer);
  }, []);

  useEffect(() => {
    document.documentElement.lang = state.language;
    document.documentElement.dataset.mode = state.me?.role ?? "setup";
  }, [state.language, state.me?.role]);

  const act = async (p: Promise<Outcome>) => {
    const r = await p;
    setError(r?.code ?? null);
    return r === null;
  };
  const ctx: Ctx = { state, api, t, now, act };
  const mode = state.me?.role === "resident" ? "resident" : "family";

  const conn = connectionView(state.connection, now);
  let screen;
  const call = state.call;
  if (call.state === "incoming") {
    screen = (
      <IncomingCall
        call={call}
        variant={mode}
        secondsLeft={secondsLeft(incoming.current, now)}
        onAnswer={() => {
          feed({ type: "answered_by_hand" });
          void act(api.answer(call.peer));
        }}
      />
    );
  } else if (call.state === "calling") {
    screen = <Calling call={call} variant={mode} />;
  } else if (call.state === "active") {
    screen = <InCall call={call} variant={mode} />;
  } else if (call.state === "ended") {
    screen = <Ended call={call} variant={mode} />;
  } else if (conn.kind === "setup") {
    screen = <Setup reason={conn.error} />;
  } else if (conn.kind === "connecting") {
    screen = <Connecting retryInSeconds={conn.retryInSeconds} error={conn.error} />;
  } else if (conn.kind === "refused") {
    screen = <Refused error={conn.error} />;
  } else if (conn.kind === "waiting") {
    screen = <Waiting position={conn.position} />;
  } else if (mode === "resident") {
    screen = <ResidentHome />;
  } else if (page === "check") {
    screen = <Check go={setPage} />;
  } else if (page === "devices") {
    screen = <Devices go={setPage} />;
  } else {
    screen = <FamilyHome go={setPage} />;
  }
  return (
    <AppContext.Provider value={ctx}>
      <div class={`app mode-${mode}${state.kiosk ? " kiosk" : ""}`}>
        {screen}
        {error && error !== "no_call" && (
          <div class="toast">
            <ErrorText code={error} />
          </div>
        )}
      </div>
    </AppContext.Provider>
  );
}

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Backend, Outcome } from "./api";
import type { AppState } from "./bindings";
import { AppContext, type Ctx } from "./context";
import { i18n } from "./i18n";
import { connectionView } from "./logic/connection";
import { type Effect, type Incoming, idle, secondsLeft, step } from "./logic/incoming";
import { type LobbyAlerts, lobbyStep, lobbyTitle, noAlerts } from "./logic/lobby";
import { expired, lineAt, type Shown } from "./logic/notices";
import { Calling, Ended, IncomingCall, InCall } from "./screens/call";
import { ClinicianHome, ConsultPanel } from "./screens/clinician";
import { ErrorText } from "./screens/common";
import { Check, Devices, FamilyHome, type FamilyPage } from "./screens/family";
import { ResidentHome } from "./screens/resident";
import { Setup } from "./screens/setup";
import { StaffHome, type StaffTab } from "./screens/staff";
import { Connecting, Refused, Waiting } from "./screens/status";
import { chime, knock, startRing, stopRing } from "./sound";

/** The screens a role gets. Patients and guests wait, then are in a consult. */
type Mode = "resident" | "family" | "clinician" | "staff" | "patient";

function modeOf(role: string | undefined): Mode {
  switch (role) {
    case "resident":
    case "clinician":
    case "staff":
      return role;
    case "patient":
    case "guest":
      return "patient";
    default:
      return "family";
  }
}

export function App({ api, initial, initialPage = "home", initialTab = "tablets" }: {
  api: Backend;
  initial: AppState;
  initialPage?: FamilyPage;
  initialTab?: StaffTab;
}) {
  const [state, setState] = useState(initial);
  const [now, setNow] = useState(Date.now());
  // The line about the last failed tap: each failure its own object, so that the same error
  // again is shown for its full time.
  const [error, setError] = useState<{ code: string } | null>(null);
  const failed = (r: Outcome) => setError(r ? { code: r.code } : null);
  const [page, setPage] = useState<FamilyPage>(initialPage);
  const [tab, setTab] = useState<StaffTab>(initialTab);
  const incoming = useRef<Incoming>(idle);
  const alerts = useRef<LobbyAlerts>(noAlerts);
  const hadCall = useRef(false);
  const [unseen, setUnseen] = useState<string[]>([]);
  const t = useMemo(() => i18n(state.language), [state.language]);

  const run = (effects: Effect[]) => {
    for (const fx of effects) {
      if (fx === "ring") startRing();
      else if (fx === "stop_ring") stopRing();
      else if (fx === "chime") chime();
      else void api.answer(fx.answer).then(failed);
    }
  };
  const feed = (e: Parameters<typeof step>[1]) => {
    const [next, effects] = step(incoming.current, e);
    incoming.current = next;
    run(effects);
  };
  const feedLobby = (e: Parameters<typeof lobbyStep>[1]) => {
    const [next, effects] = lobbyStep(alerts.current, e);
    alerts.current = next;
    setUnseen(next.unseen);
    // Every arrival knocks, a moment apart, so two at once are two knocks.
    effects.forEach((_, i) => window.setTimeout(knock, i * 900));
  };

  useEffect(() => {
    const apply = (s: AppState) => {
      setState(s);
      feed({ type: "call", call: s.call, now: Date.now() });
      if (s.me?.role === "clinician") feedLobby({ type: "lobby", lobby: s.lobby });
    };
    api.onState(apply);
    apply(initial);
    // A change between reading the first state and listening would otherwise be missed until
    // the next one (a browser guest's welcome can come that fast): read it once more.
    void api.state().then((s) => {
      if (s.version !== initial.version) apply(s);
    });
  }, []);

  // The clock the screens read: four times a second while an incoming call counts down (its
  // chimes fall on the second), once a second otherwise (every re-render in a call costs
  // WebKit a repaint).
  const counting = state.call.state === "incoming";
  useEffect(() => {
    const timer = window.setInterval(
      () => {
        const n = Date.now();
        setNow(n);
        feed({ type: "tick", now: n });
      },
      counting ? 250 : 1000,
    );
    return () => window.clearInterval(timer);
  }, [counting]);

  useEffect(() => {
    document.documentElement.lang = state.language;
    document.documentElement.dataset.mode = state.me?.role ?? "setup";
  }, [state.language, state.me?.role]);

  useEffect(() => {
    document.title = lobbyTitle(t.t("app.name"), state.me?.role === "clinician" ? state.lobby.length : 0);
  }, [state.lobby.length, state.me?.role, t]);

  const act = async (p: Promise<Outcome>) => {
    const r = await p;
    failed(r);
    return r === null;
  };
  const ctx: Ctx = { state, api, t, now, act };
  const mode = modeOf(state.me?.role);

  // A resident's notices go by themselves (nothing on the tablet needs a tap to go away), and
  // anyone's line about a failed tap does (it has no close button).
  const noticesSeen = useRef(new Map<number, number>());
  const errorShown = useRef<Shown<{ code: string }> | null>(null);
  useEffect(() => {
    if (mode === "resident") {
      for (const id of expired(state.notices.map((n) => n.id), noticesSeen.current, now)) void api.dismissNotice(id);
    }
    errorShown.current = lineAt(errorShown.current, error, now);
    if (error !== null && errorShown.current === null) setError(null);
  }, [now, error, state.notices, mode]);
  const variant = mode === "resident" ? "resident" : "family";
  const seen = () => feedLobby({ type: "seen" });

  const conn = connectionView(state.connection, now);
  let screen;
  const call = state.call;
  if (call.state === "active") hadCall.current = true;
  if (call.state === "incoming") {
    screen = (
      <IncomingCall
        call={call}
        variant={variant}
        secondsLeft={secondsLeft(incoming.current, now)}
        onAnswer={() => {
          feed({ type: "answered_by_hand" });
          void act(api.answer(call.peer));
        }}
      />
    );
  } else if (call.state === "calling") {
    screen = <Calling call={call} variant={variant} />;
  } else if (call.state === "active") {
    screen = <InCall call={call} variant={variant} side={mode === "clinician" ? <ConsultPanel unseen={unseen} onSeen={seen} /> : null} />;
  } else if (call.state === "ended" && mode !== "clinician") {
    screen = <Ended call={call} variant={variant} />;
  } else if (conn.kind === "setup") {
    screen = <Setup reason={conn.error} />;
  } else if (conn.kind === "connecting") {
    screen = <Connecting retryInSeconds={conn.retryInSeconds} error={conn.error} />;
  } else if (conn.kind === "refused") {
    screen = <Refused error={conn.error} />;
  } else if (conn.kind === "consultOver") {
    // The consult was hung up and this device left the room.
    screen = <Waiting position={null} over />;
  } else if (mode === "patient" && conn.kind === "online") {
    // Let in: the clinician's call is on its way (or a consult broke off and may be called again).
    screen = <Waiting position={null} over={hadCall.current} />;
  } else if (conn.kind === "waiting") {
    screen = <Waiting position={conn.position} />;
  } else if (mode === "resident") {
    screen = <ResidentHome />;
  } else if (mode === "clinician") {
    screen = <ClinicianHome unseen={unseen} onSeen={seen} />;
  } else if (mode === "staff") {
    screen = <StaffHome tab={tab} go={setTab} />;
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
        {error && error.code !== "no_call" && (
          <div class="toast">
            <ErrorText code={error.code} />
          </div>
        )}
      </div>
    </AppContext.Provider>
  );
}

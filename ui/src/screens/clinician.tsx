import { useState } from "preact/hooks";
import type { CheckOutcome, CheckResult, Invitation, Role, WaitingPatient } from "../bindings";
import { useApp } from "../context";
import { defaultDays } from "../logic/invitations";
import { checkSummary, inRoom, nextToAdmit, waitedSeconds } from "../logic/lobby";
import { ErrorText, Icon, Notices, Screen } from "./common";

/** The parts of a check a clinician looks at, each in words with a mark. */
export function CheckBadges({ check }: { check: CheckResult | null }) {
  const { t } = useApp();
  if (!check) {
    return (
      <p class="check-badges pending">
        <Icon name="reconnecting" />
        {t.t("lobby.checkPending")}
      </p>
    );
  }
  const part = (key: "camera" | "microphone" | "speaker" | "connection", outcome: CheckOutcome) => (
    <li class={`check-badge check-${outcome}`} key={key}>
      <Icon name={outcome === "failed" ? "cross" : "check"} />
      {t.t(`lobby.part.${key}`)}: {t.t(`lobby.outcome.${outcome}`)}
    </li>
  );
  return (
    <ul class="check-badges" role="list">
      {part("camera", check.camera)}
      {part("microphone", check.microphone)}
      {check.speaker !== "not_used" && part("speaker", check.speaker)}
      {part("connection", check.connection)}
    </ul>
  );
}

/** Reasons a clinician can pick, so nobody has to type while a queue waits. */
export const REASONS = ["lobby.reason.later", "lobby.reason.wrongRoom", "lobby.reason.callBack"] as const;

function DenyForm({ w, onDone }: { w: WaitingPatient; onDone: () => void }) {
  const { t, api, act } = useApp();
  const [reason, setReason] = useState<string>(t.t(REASONS[0]));
  const id = `deny-${w.peer}`;
  return (
    <form
      class="deny-form"
      onSubmit={(e) => {
        e.preventDefault();
        void act(api.deny(w.peer, reason.trim() || null)).then(onDone);
      }}
    >
      <label for={id}>{t.t("lobby.denyReason", { name: w.name })}</label>
      <select
        class="input"
        onChange={(e) => setReason((e.target as HTMLSelectElement).value)}
        aria-label={t.t("lobby.denyPick")}
      >
        {REASONS.map((k) => (
          <option key={k} value={t.t(k)}>
            {t.t(k)}
          </option>
        ))}
      </select>
      <input id={id} class="input" value={reason} maxLength={300} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
      <div class="row">
        <button type="submit" class="btn btn-decline">
          {t.t("lobby.denyConfirm")}
        </button>
        <button type="button" class="btn btn-quiet" onClick={onDone}>
          {t.t("lobby.denyCancel")}
        </button>
      </div>
    </form>
  );
}

function WaitingRow({ w, isNew, inCall }: { w: WaitingPatient; isNew: boolean; inCall: boolean }) {
  const { t, api, act, now } = useApp();
  const [denying, setDenying] = useState(false);
  const waited = t.duration(waitedSeconds(w, now));
  const summary = checkSummary(w.check);
  return (
    <li class={`waiting-row${isNew ? " is-new" : ""}${w.connected ? "" : " dropped"}`}>
      <div class="waiting-text">
        <p class="person-name">
          {w.name}
          {isNew && <span class="new-mark">{t.t("lobby.new")}</span>}
        </p>
        <p class="small">
          {t.t(`role.${w.role}`)} · {t.t("lobby.waited", { duration: waited })}
        </p>
        {!w.connected && (
          <p class="small dropped-note" role="status">
            <Icon name="reconnecting" />
            {t.t("lobby.dropped")}
          </p>
        )}
        <CheckBadges check={w.check} />
        {summary === "problem" && <p class="small warn">{t.t("lobby.checkProblem")}</p>}
      </div>
      {denying ? (
        <DenyForm w={w} onDone={() => setDenying(false)} />
      ) : (
        <div class="waiting-actions">
          <button
            type="button"
            class="btn btn-answer"
            disabled={!w.connected}
            aria-label={t.t(inCall ? "lobby.addName" : "lobby.admitName", { name: w.name })}
            onClick={() => void act(api.admit(w.peer))}
          >
            <Icon name="phone" />
            {t.t(inCall ? "lobby.add" : "lobby.admit")}
          </button>
          <button type="button" class="btn btn-quiet" aria-label={t.t("lobby.denyName", { name: w.name })} onClick={() => setDenying(true)}>
            {t.t("lobby.deny")}
          </button>
        </div>
      )}
    </li>
  );
}

/** The queue, first arrived first, with what a clinician needs to decide. */
export function WaitingList({ unseen, onSeen, inCall }: { unseen: string[]; onSeen: () => void; inCall: boolean }) {
  const { state, t } = useApp();
  const lobby = state.lobby;
  return (
    <section class="waiting-room" aria-labelledby="waiting-title">
      <h2 id="waiting-title">
        {t.t("lobby.title")} <span class="count">{t.t("lobby.count", { count: lobby.length })}</span>
      </h2>
      {unseen.length > 0 && (
        <div class="arrival" role="alert">
          <p>
            <Icon name="phone" />
            {t.t(unseen.length === 1 ? "lobby.arrivedOne" : "lobby.arrivedMany", {
              name: lobby.find((w) => w.peer === unseen[unseen.length - 1])?.name ?? "",
              count: unseen.length,
            })}
          </p>
          <button type="button" class="btn btn-quiet" onClick={onSeen}>
            {t.t("lobby.seen")}
          </button>
        </div>
      )}
      {lobby.length === 0 ? (
        <p class="lead">{t.t("lobby.empty")}</p>
      ) : (
        <ol class="waiting-list">
          {lobby.map((w) => (
            <WaitingRow key={w.peer} w={w} isNew={unseen.includes(w.peer)} inCall={inCall} />
          ))}
        </ol>
      )}
    </section>
  );
}

/** Creates an invitation and shows its link and code to pass on. With `room` null (staff) the
 *  room is asked for, starting empty (not the staff's own room, where a relative's invitation
 *  left as it was would find nobody), with `rooms` (the tablets' rooms) offered. */
export function InvitePanel({ roles, room, rooms = [], onMade }: { roles: Role[]; room: string | null; rooms?: string[]; onMade?: () => void }) {
  const { t, api } = useApp();
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>(roles[0] ?? "family");
  const [targetRoom, setTargetRoom] = useState(room ?? "");
  // Until staff change it, the default for the role chosen.
  const [chosenDays, setDays] = useState<number | null>(null);
  const days = chosenDays ?? defaultDays(role, room === null);
  const [made, setMade] = useState<Invitation | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    const r = await api.createInvitation({ room: targetRoom.trim(), role, name: name.trim(), expires_in_s: Math.round(days * 86400) });
    setBusy(false);
    if (r.ok) {
      setMade(r.value);
      setError(null);
      setName("");
      onMade?.();
    } else {
      setError(r.error.code);
    }
  };
  return (
    <section class="invite" aria-labelledby="invite-title">
      <h2 id="invite-title">{t.t("invite.title")}</h2>
      <form class="form" onSubmit={(e) => void submit(e)}>
        <label for="invite-name">{t.t("invite.name")}</label>
        <input id="invite-name" class="input" required maxLength={200} value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <label for="invite-role">{t.t("invite.role")}</label>
        <select id="invite-role" class="input" value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role)}>
          {roles.map((r) => (
            <option key={r} value={r}>
              {t.t(`role.${r}`)}
            </option>
          ))}
        </select>
        {room === null && (
          <>
            <label for="invite-room">{t.t("invite.room")}</label>
            <input
              id="invite-room"
              class="input"
              required
              maxLength={128}
              list="invite-rooms"
              value={targetRoom}
              onInput={(e) => setTargetRoom((e.target as HTMLInputElement).value)}
            />
            <datalist id="invite-rooms">
              {[...new Set(rooms)].sort().map((r) => (
                <option key={r} value={r} />
              ))}
            </datalist>
          </>
        )}
        <label for="invite-days">{t.t("invite.days")}</label>
        <input
          id="invite-days"
          class="input"
          type="number"
          min={1}
          max={365}
          value={days}
          onInput={(e) => setDays(Number((e.target as HTMLInputElement).value) || 7)}
        />
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {t.t("invite.create")}
        </button>
      </form>
      <ErrorText code={error} />
      {made && (
        <div class="invite-made" role="status">
          <p>{t.t("invite.made", { name: made.name })}</p>
          <p class="code" aria-label={t.t("invite.code")}>
            {made.code}
          </p>
          <p class="link">
            <a href={made.link}>{made.link}</a>
          </p>
          <p class="small">{t.t("invite.until", { date: t.date(made.expires_at ?? 0) })}</p>
        </div>
      )}
    </section>
  );
}

/** Who is in the room outside the waiting room (a resident on a round, a nurse): between
 *  consults they are called, in one they are added to it. Someone in another call is shown as
 *  such, and cannot be called until they are free. */
function InRoomList({ inCall }: { inCall: string[] }) {
  const { state, t, api, act } = useApp();
  const people = inRoom(state.contacts, inCall);
  if (people.length === 0) return null;
  const adding = inCall.length > 0;
  return (
    <section aria-labelledby="in-room-title">
      <h2 id="in-room-title">{t.t(adding ? "consult.addTitle" : "lobby.inRoom")}</h2>
      <ul class="people" role="list">
        {people.map(({ contact: c, busy }) => (
          <li key={c.key} class="person">
            <p class="person-name">{c.name}</p>
            {busy && <p class="small">{t.t("presence.in_call")}</p>}
            <button type="button" class="btn btn-quiet" disabled={busy} onClick={() => void act(api.call(c.key))}>
              {t.t(adding ? "consult.add" : "lobby.callName", { name: c.name })}
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** A clinician between consults: the waiting room, who else is in the room, and inviting
 *  someone. */
export function ClinicianHome({ unseen, onSeen }: { unseen: string[]; onSeen: () => void }) {
  const { state, t, api, act } = useApp();
  const next = nextToAdmit(state.lobby);
  return (
    <Screen label={t.t("lobby.title")} className="clinician-home">
      <header class="bar">
        <p class="who">{state.me && t.t("home.signedInAs", { name: state.me.name })}</p>
        {next && (
          <button type="button" class="btn btn-answer" onClick={() => void act(api.admit(next.peer))}>
            <Icon name="phone" />
            {t.t("lobby.admitName", { name: next.name })}
          </button>
        )}
      </header>
      <h1>{t.t("lobby.heading")}</h1>
      <WaitingList unseen={unseen} onSeen={onSeen} inCall={false} />
      <InRoomList inCall={[]} />
      <InvitePanel roles={["patient", "guest", "family"]} room={state.me?.room ?? null} />
      <Notices />
    </Screen>
  );
}

/** In a consult: the queue beside the call, add someone, end and admit the next. */
export function ConsultPanel({ unseen, onSeen }: { unseen: string[]; onSeen: () => void }) {
  const { state, t, api, act } = useApp();
  const next = nextToAdmit(state.lobby);
  const inCall = state.call.state === "active" ? state.call.peers.map((p) => p.peer) : [];
  const [inviting, setInviting] = useState(false);
  return (
    <aside class="consult-panel" aria-label={t.t("lobby.title")}>
      <button type="button" class="btn btn-primary" disabled={!next} onClick={() => void act(api.admitNext())}>
        <Icon name="end" />
        {next ? t.t("lobby.endAndAdmit", { name: next.name }) : t.t("lobby.endNoNext")}
      </button>
      <WaitingList unseen={unseen} onSeen={onSeen} inCall />
      <InRoomList inCall={inCall} />
      <button type="button" class="btn btn-quiet" aria-expanded={inviting} onClick={() => setInviting(!inviting)}>
        {t.t("consult.invite")}
      </button>
      {inviting && <InvitePanel roles={["guest", "family"]} room={state.me?.room ?? null} />}
    </aside>
  );
}

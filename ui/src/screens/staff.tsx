import { useEffect, useRef, useState } from "preact/hooks";
import type { Caller, CheckReport, Invitation, Rules, Tablet } from "../bindings";
import { useApp } from "../context";
import { invitationView } from "../logic/invitations";
import { CheckBadges, InvitePanel } from "./clinician";
import { ErrorText, Icon, Notices, Screen } from "./common";

export type StaffTab = "tablets" | "invitations" | "audit";

/** How often the console asks the server again, so online states stay current. */
const REFRESH_MS = 5000;

function useList<T>(load: () => Promise<{ ok: true; value: T[] } | { ok: false; error: { code: string } }>, key: number) {
  const { now } = useApp();
  const [items, setItems] = useState<T[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const tick = Math.floor(now / REFRESH_MS);
  useEffect(() => {
    let live = true;
    void load().then((r) => {
      if (!live) return;
      if (r.ok) {
        setItems(r.value);
        setError(null);
      } else setError(r.error.code);
    });
    return () => {
      live = false;
    };
  }, [tick, key]);
  return { items, error };
}

function RulesEditor({ tablet, invitations, onSaved }: { tablet: Tablet; invitations: Invitation[]; onSaved: () => void }) {
  const { t, api } = useApp();
  const candidates = invitations.filter((i) => i.room === tablet.room && i.role !== "resident" && i.role !== "staff" && i.revoked_at === null);
  const listed = tablet.rules.callers ?? null;
  const [anyone, setAnyone] = useState(listed === null);
  const [callers, setCallers] = useState<Caller[]>(listed ?? []);
  const [quiet, setQuiet] = useState(tablet.rules.quiet_hours !== null && tablet.rules.quiet_hours !== undefined);
  const [from, setFrom] = useState(tablet.rules.quiet_hours?.from ?? "21:00");
  const [to, setTo] = useState(tablet.rules.quiet_hours?.to ?? "07:30");
  const [kiosk, setKiosk] = useState<boolean | null>(tablet.rules.kiosk ?? null);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const find = (sub: string) => callers.find((c) => c.sub === sub);
  const toggle = (i: Invitation, on: boolean) =>
    setCallers(on ? [...callers, { sub: i.sub, name: i.name, auto_answer: false }] : callers.filter((c) => c.sub !== i.sub));
  const trust = (sub: string, on: boolean) => setCallers(callers.map((c) => (c.sub === sub ? { ...c, auto_answer: on } : c)));
  const save = async (e: Event) => {
    e.preventDefault();
    const rules: Rules = { callers: anyone ? null : callers, quiet_hours: quiet ? { from, to } : null, kiosk };
    const r = await api.setRules(tablet.sub, rules);
    setError(r?.code ?? null);
    setSaved(r === null);
    if (r === null) onSaved();
  };
  const id = (s: string) => `${s}-${tablet.sub}`;
  return (
    <form class="rules" onSubmit={(e) => void save(e)} aria-label={t.t("rules.title", { name: tablet.name })}>
      <h3>{t.t("rules.title", { name: tablet.name })}</h3>
      <p class="check-line">
        <input id={id("anyone")} type="checkbox" checked={anyone} onChange={(e) => setAnyone((e.target as HTMLInputElement).checked)} />
        <label for={id("anyone")}>{t.t("rules.anyone")}</label>
      </p>
      {!anyone && (
        <ul class="callers" role="list">
          {candidates.length === 0 && <li>{t.t("rules.nobodyInvited")}</li>}
          {candidates.map((i) => {
            const c = find(i.sub);
            return (
              <li key={i.sub} class="rules-caller">
                <span class="check-line">
                  <input id={id(`may-${i.id}`)} type="checkbox" checked={!!c} onChange={(e) => toggle(i, (e.target as HTMLInputElement).checked)} />
                  <label for={id(`may-${i.id}`)}>{t.t("rules.mayCall", { name: i.name })}</label>
                </span>
                <span class="check-line">
                  <input
                    id={id(`auto-${i.id}`)}
                    type="checkbox"
                    disabled={!c}
                    checked={!!c?.auto_answer}
                    onChange={(e) => trust(i.sub, (e.target as HTMLInputElement).checked)}
                  />
                  <label for={id(`auto-${i.id}`)}>{t.t("rules.autoAnswer")}</label>
                </span>
              </li>
            );
          })}
        </ul>
      )}
      <p class="check-line">
        <input id={id("quiet")} type="checkbox" checked={quiet} onChange={(e) => setQuiet((e.target as HTMLInputElement).checked)} />
        <label for={id("quiet")}>{t.t("rules.quiet")}</label>
      </p>
      {quiet && (
        <p class="row">
          <label for={id("from")}>{t.t("rules.from")}</label>
          <input id={id("from")} class="input" type="time" required value={from} onInput={(e) => setFrom((e.target as HTMLInputElement).value)} />
          <label for={id("to")}>{t.t("rules.to")}</label>
          <input id={id("to")} class="input" type="time" required value={to} onInput={(e) => setTo((e.target as HTMLInputElement).value)} />
        </p>
      )}
      <p class="row">
        <label for={id("kiosk")}>{t.t("rules.kiosk")}</label>
        <select
          id={id("kiosk")}
          class="input"
          value={kiosk === null ? "" : kiosk ? "on" : "off"}
          onChange={(e) => {
            const v = (e.target as HTMLSelectElement).value;
            setKiosk(v === "" ? null : v === "on");
          }}
        >
          <option value="">{t.t("rules.kioskUnchanged")}</option>
          <option value="on">{t.t("rules.kioskOn")}</option>
          <option value="off">{t.t("rules.kioskOff")}</option>
        </select>
      </p>
      <button type="submit" class="btn btn-primary">
        {t.t("rules.save")}
      </button>
      {saved && <p role="status">{t.t("rules.saved")}</p>}
      <ErrorText code={error} />
    </form>
  );
}

function TabletRow({ tablet, invitations, onChanged }: { tablet: Tablet; invitations: Invitation[]; onChanged: () => void }) {
  const { t, api, now } = useApp();
  const [checking, setChecking] = useState(false);
  const [fresh, setFresh] = useState<CheckReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState(false);
  const check = fresh ?? tablet.check;
  const run = async () => {
    setChecking(true);
    setError(null);
    const r = await api.runTabletCheck(tablet.sub);
    setChecking(false);
    if (r.ok) setFresh(r.value);
    else setError(r.error.code);
  };
  const online = tablet.online_since !== null;
  return (
    <li class={`tablet ${online ? "online" : "offline"}`}>
      <div class="tablet-text">
        <p class="person-name">{tablet.name}</p>
        <p class={`presence presence-${online ? "available" : "offline"}`}>
          <span class="dot" aria-hidden="true" />
          {online
            ? t.t("tablets.onlineSince", { duration: t.duration(((now - (tablet.online_since ?? now)) / 1000) | 0) })
            : t.t("tablets.lastSeen", { date: t.date(tablet.last_seen ?? 0) })}
        </p>
        <p class="small">{t.t("tablets.room", { room: tablet.room })}</p>
        <CheckBadges check={check} />
        {check && <p class="small">{t.t("tablets.checkedAt", { date: t.date(check.at ?? 0) })}</p>}
        <ErrorText code={error} />
      </div>
      <div class="tablet-actions">
        <button type="button" class="btn btn-quiet" disabled={!online || checking} onClick={() => void run()} aria-label={t.t("tablets.runCheckFor", { name: tablet.name })}>
          <Icon name="check" />
          {checking ? t.t("check.running") : t.t("tablets.runCheck")}
        </button>
        <button type="button" class="btn btn-quiet" aria-expanded={editing} onClick={() => setEditing(!editing)} aria-label={t.t("rules.editFor", { name: tablet.name })}>
          <Icon name="settings" />
          {t.t("rules.edit")}
        </button>
      </div>
      {editing && <RulesEditor tablet={tablet} invitations={invitations} onSaved={onChanged} />}
    </li>
  );
}

function InvitationRow({ inv, onChanged }: { inv: Invitation; onChanged: () => void }) {
  const { t, api, act, now } = useApp();
  const { status, soonDays } = invitationView(inv, now);
  // Withdrawing closes the device at once (a resident's tablet too): asked once more first.
  const [confirming, setConfirming] = useState(false);
  // Focus follows the question: to it when it opens, back to Withdraw when it is put away.
  const question = useRef<HTMLButtonElement>(null);
  const withdraw = useRef<HTMLButtonElement>(null);
  const asked = useRef(false);
  useEffect(() => {
    if (confirming) question.current?.focus();
    else if (asked.current) withdraw.current?.focus();
    asked.current ||= confirming;
  }, [confirming]);
  const used = inv.redeemed === 0 ? t.t("inv.unused") : inv.redeemed === 1 ? t.t("inv.usedOnce") : t.t("inv.redeemed", { count: inv.redeemed });
  return (
    <li class={`invitation inv-${status}`}>
      <div>
        <p class="person-name">
          {inv.name} · {t.t(`role.${inv.role}`)}
        </p>
        <p class="small">
          {t.t("tablets.room", { room: inv.room })} · <span class="code">{inv.code}</span> · {t.t(`inv.${status}`)} · {used}
          {status === "active" && inv.expires_at !== null && <> · {t.t("invite.until", { date: t.date(inv.expires_at) })}</>}
        </p>
        {soonDays !== null && (
          <p class="small warning" role="note">
            {t.t("inv.expiresSoon", { days: soonDays })}
          </p>
        )}
        {status === "active" && (
          // The link to pass on, selected whole when focused, to copy with the keyboard or the
          // menu: the app's web view has no clipboard to write to.
          <p class="small link">
            <label for={`link-${inv.id}`}>{t.t("inv.linkFor", { name: inv.name })}</label>{" "}
            <input
              id={`link-${inv.id}`}
              class="input link-text"
              readOnly
              value={inv.link}
              onFocus={(e) => (e.target as HTMLInputElement).select()}
            />
          </p>
        )}
      </div>
      {status === "active" && !confirming && (
        <button ref={withdraw} type="button" class="btn btn-quiet" aria-label={t.t("inv.revokeFor", { name: inv.name })} onClick={() => setConfirming(true)}>
          {t.t("inv.revoke")}
        </button>
      )}
      {status === "active" && confirming && (
        <div class="confirm" role="group" aria-label={t.t("inv.revokeFor", { name: inv.name })}>
          <p class="small">{t.t(inv.role === "resident" ? "inv.revokeTabletWarning" : "inv.revokeWarning", { name: inv.name })}</p>
          <button ref={question} type="button" class="btn btn-end" onClick={() => void act(api.revokeInvitation(inv.id)).then(onChanged)}>
            {t.t("inv.revokeConfirm")}
          </button>
          <button type="button" class="btn btn-quiet" onClick={() => setConfirming(false)}>
            {t.t("inv.keep")}
          </button>
        </div>
      )}
    </li>
  );
}

/** Care-home staff: tablets (online, checks, rules), invitations, and the audit export. */
export function StaffHome({ tab, go }: { tab: StaffTab; go: (t: StaffTab) => void }) {
  const { state, t, api } = useApp();
  const [version, setVersion] = useState(0);
  const changed = () => setVersion(version + 1);
  const tablets = useList(() => api.listTablets(), version);
  const invitations = useList(() => api.listInvitations(), version);
  const [exported, setExported] = useState<string | null>(null);
  const [exportError, setExportError] = useState<string | null>(null);
  const tabs: StaffTab[] = ["tablets", "invitations", "audit"];
  return (
    <Screen label={t.t("staff.title")} className="staff-home">
      <header class="bar">
        <p class="who">{state.me && t.t("home.signedInAs", { name: state.me.name })}</p>
      </header>
      <h1>{t.t("staff.title")}</h1>
      <nav class="tabs" aria-label={t.t("staff.title")}>
        {tabs.map((k) => (
          <button type="button" key={k} class={`btn tab${tab === k ? " current" : ""}`} aria-current={tab === k ? "page" : undefined} onClick={() => go(k)}>
            {t.t(`staff.tab.${k}`)}
          </button>
        ))}
      </nav>
      {tab === "tablets" && (
        <section aria-labelledby="tablets-title">
          <h2 id="tablets-title">{t.t("staff.tab.tablets")}</h2>
          <ErrorText code={tablets.error} />
          {tablets.items?.length === 0 && <p class="lead">{t.t("tablets.none")}</p>}
          <ul class="tablets" role="list">
            {(tablets.items ?? []).map((tb) => (
              <TabletRow key={tb.sub} tablet={tb} invitations={invitations.items ?? []} onChanged={changed} />
            ))}
          </ul>
        </section>
      )}
      {tab === "invitations" && (
        <>
          <InvitePanel
            roles={["family", "resident", "patient", "guest", "clinician", "staff"]}
            room={null}
            rooms={(tablets.items ?? []).map((tb) => tb.room)}
            onMade={changed}
          />
          <section aria-labelledby="inv-title">
            <h2 id="inv-title">{t.t("inv.title")}</h2>
            <ErrorText code={invitations.error} />
            <ul class="invitations" role="list">
              {(invitations.items ?? []).map((i) => (
                <InvitationRow key={i.id} inv={i} onChanged={changed} />
              ))}
            </ul>
          </section>
        </>
      )}
      {tab === "audit" && (
        <section aria-labelledby="audit-title">
          <h2 id="audit-title">{t.t("audit.title")}</h2>
          <p class="lead">{t.t("audit.intro")}</p>
          <button
            type="button"
            class="btn btn-primary"
            onClick={() =>
              void api.exportAudit().then((r) => {
                if (r.ok) {
                  setExported(r.value);
                  setExportError(null);
                } else setExportError(r.error.code);
              })
            }
          >
            {t.t("audit.export")}
          </button>
          {exported && <p role="status">{t.t("audit.saved", { path: exported })}</p>}
          <ErrorText code={exportError} />
        </section>
      )}
      <Notices />
    </Screen>
  );
}

import { useEffect, useState } from "preact/hooks";
import type { CheckItem, Device, DeviceChoice, DeviceKind, ErrorCode, PrecheckReport } from "../bindings";
import { useApp } from "../context";
import { ErrorText, Icon, Notices, Portrait, PresenceBadge, Screen } from "./common";
import { LanguagePicker } from "./setup";

export type FamilyPage = "home" | "devices" | "check";

/** A relative's screen: the residents they may call, with presence; call, devices. */
export function FamilyHome({ go }: { go: (p: FamilyPage) => void }) {
  const { state, t, api, act } = useApp();
  return (
    <Screen label={t.t("home.title")} className="family-home">
      <header class="bar">
        <p class="who">{state.me && t.t("home.signedInAs", { name: state.me.name })}</p>
        <div class="bar-actions">
          <button type="button" class="btn btn-quiet" onClick={() => go("check")}>
            <Icon name="check" />
            {t.t("check.open")}
          </button>
          <button type="button" class="btn btn-quiet" onClick={() => go("devices")}>
            <Icon name="settings" />
            {t.t("devices.open")}
          </button>
        </div>
      </header>
      <h1>{t.t("home.title")}</h1>
      {state.contacts.length === 0 && <p class="lead">{t.t("home.nobody")}</p>}
      <ul class="people" role="list">
        {state.contacts.map((c) => (
          <li key={c.key} class="person">
            <Portrait contact={c} size="small" />
            <div class="person-text">
              <p class="person-name">{c.name}</p>
              <PresenceBadge presence={c.presence} />
            </div>
            <button
              type="button"
              class="btn btn-call"
              disabled={c.presence !== "available"}
              aria-label={t.t("home.callName", { name: c.name })}
              onClick={() => void act(api.call(c.key))}
            >
              <Icon name="phone" />
              {t.t("home.callName", { name: c.name })}
            </button>
          </li>
        ))}
      </ul>
      <Notices />
      {state.me?.expires_at_ms && <p class="small">{t.t("settings.expires", { date: t.date(state.me.expires_at_ms) })}</p>}
    </Screen>
  );
}

function DeviceSelect({ kind, devices, value, onChange }: {
  kind: DeviceKind;
  devices: Device[];
  value: string | null;
  onChange: (v: string | null) => void;
}) {
  const { t } = useApp();
  const id = `device-${kind}`;
  return (
    <div class="field">
      <label for={id}>{t.t(`devices.${kind}`)}</label>
      <select id={id} value={value ?? ""} onChange={(e) => {
        const v = (e.target as HTMLSelectElement).value;
        onChange(v === "" ? null : v);
      }}>
        <option value="">{t.t("devices.default")}</option>
        {devices.filter((d) => d.kind === kind).map((d, i) => (
          <option value={d.id} key={d.id}>
            {/* The synthetic sources by what they are; a device with no name by its kind and number. */}
            {d.id === "synthetic"
              ? t.t(kind === "camera" ? "devices.testPattern" : "devices.testTone")
              : d.name || `${t.t(`devices.${kind}`)} ${t.number(i + 1)}`}
          </option>
        ))}
        {kind === "speaker" && <option value="none">{t.t("devices.none")}</option>}
      </select>
    </div>
  );
}

export function Devices({ go }: { go: (p: FamilyPage) => void }) {
  const { t, api, act } = useApp();
  const [devices, setDevices] = useState<Device[]>([]);
  const [choice, setChoice] = useState<DeviceChoice>({ camera: null, microphone: null, speaker: null });
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    void api.devices().then(setDevices);
    void api.settings().then((s) => s && setChoice(s.devices));
  }, []);
  const save = async (e: Event) => {
    e.preventDefault();
    setSaved(await act(api.setDevices(choice)));
  };
  return (
    <Screen label={t.t("devices.title")} className="devices">
      <header class="bar">
        <button type="button" class="btn btn-quiet" onClick={() => go("home")}>
          {t.t("devices.back")}
        </button>
      </header>
      <h1>{t.t("devices.title")}</h1>
      <form onSubmit={save}>
        {(["camera", "microphone", "speaker"] as const).map((k) => (
          <DeviceSelect key={k} kind={k} devices={devices} value={choice[k] ?? null} onChange={(v) => setChoice({ ...choice, [k]: v })} />
        ))}
        <button type="submit" class="btn btn-primary">{t.t("devices.save")}</button>
        {saved && <p role="status">{t.t("devices.saved")}</p>}
      </form>
      <LanguagePicker />
      <button type="button" class="btn btn-quiet" onClick={() => void act(api.forgetInvitation())}>
        {t.t("settings.signOut")}
      </button>
    </Screen>
  );
}

const checkParts = ["camera", "microphone", "speaker", "server", "relay"] as const;

function CheckRow({ part, item }: { part: (typeof checkParts)[number]; item: CheckItem | null }) {
  const { t } = useApp();
  let status = t.t("check.running");
  let detail = "";
  if (item) {
    status = item.status === "ok" ? t.t("check.ok") : item.status === "failed" ? t.t("check.failed") : t.t("check.notConfigured");
    // The page's own words: the app's detail is an English sentence.
    if (item.status === "failed") detail = t.t(`check.${part}Failed`);
    else if (item.size) detail = t.t("check.cameraDetail", { width: item.size[0], height: item.size[1] });
    else if (item.level_percent !== null && item.level_percent !== undefined) detail = t.t("check.micDetail", { level: item.level_percent });
    else if (item.ms !== null && item.ms !== undefined) detail = t.t("check.serverDetail", { ms: Math.round(item.ms) });
  }
  return (
    <li class={`check-row check-${item?.status ?? "running"}`}>
      <Icon name={item?.status === "ok" ? "check" : item?.status === "failed" ? "cross" : "reconnecting"} />
      <span class="check-part">{t.t(`check.${part}`)}</span>
      <span class="check-status">{status}</span>
      {detail && <span class="check-detail">{detail}</span>}
    </li>
  );
}

/** The pre-call check: does each part work, in words. */
export function Check({ go }: { go: (p: FamilyPage) => void }) {
  const { t, api } = useApp();
  const [report, setReport] = useState<PrecheckReport | null>(null);
  const [error, setError] = useState<ErrorCode | null>(null);
  const [running, setRunning] = useState(false);
  const run = async () => {
    setRunning(true);
    setReport(null);
    const r = await api.precheck();
    setRunning(false);
    if ("camera" in r) {
      setReport(r);
      setError(null);
    } else setError(r.code);
  };
  useEffect(() => {
    void run();
  }, []);
  return (
    <Screen label={t.t("check.title")} className="check">
      <header class="bar">
        <button type="button" class="btn btn-quiet" onClick={() => go("home")}>
          {t.t("devices.back")}
        </button>
      </header>
      <h1>{t.t("check.title")}</h1>
      <ErrorText code={error} />
      <ul class="check-list" role="list" aria-busy={running}>
        {checkParts.map((p) => (
          <CheckRow key={p} part={p} item={report ? report[p] : null} />
        ))}
      </ul>
      <button type="button" class="btn btn-primary" disabled={running} onClick={() => void run()}>
        {running ? t.t("check.running") : t.t("check.run")}
      </button>
    </Screen>
  );
}

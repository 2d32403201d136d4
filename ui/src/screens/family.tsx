import { useEffect, useState } from "preact/hooks";
import type { Device, DeviceChoice, DeviceKind } from "../bindings";
import { useApp } from "../context";
import { Icon, Notices, Portrait, PresenceBadge, Screen } from "./common";
import { LanguagePicker } from "./setup";

export type FamilyPage = "home" | "devices";

/** A relative's screen: the residents they may call, with presence; call, devices. */
export function FamilyHome({ go }: { go: (p: FamilyPage) => void }) {
  const { state, t, api, act } = useApp();
  return (
    <Screen label={t.t("home.title")} className="family-home">
      <header class="bar">
        <p class="who">{state.me && t.t("home.signedInAs", { name: state.me.name })}</p>
        <button type="button" class="btn btn-quiet" onClick={() => go("devices")}>
          <Icon name="settings" />
          {t.t("devices.open")}
        </button>
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
        {devices.filter((d) => d.kind === kind).map((d) => (
          <option value={d.id} key={d.id}>{d.name}</option>
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

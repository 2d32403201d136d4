import { useState } from "preact/hooks";
import type { ErrorCode, Language } from "../bindings";
import { useApp } from "../context";
import { ErrorText, Screen } from "./common";

export function LanguagePicker() {
  const { state, t, api, act } = useApp();
  const langs: Language[] = ["en", "ko"];
  return (
    <fieldset class="languages">
      <legend>{t.t("lang.label")}</legend>
      {langs.map((l) => (
        <button
          type="button"
          key={l}
          lang={l}
          class={`btn btn-quiet ${state.language === l ? "selected" : ""}`}
          aria-pressed={state.language === l}
          onClick={() => void act(api.setLanguage(l))}
        >
          {t.t(`lang.${l}`)}
        </button>
      ))}
    </fieldset>
  );
}

/** First start (or a new invitation): paste a link, or a code and its server. */
export function Setup({ reason }: { reason: ErrorCode | null }) {
  const { t, api } = useApp();
  const [input, setInput] = useState("");
  const [server, setServer] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ErrorCode | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    const r = await api.acceptInvitation(input, server.trim() === "" ? null : server);
    setBusy(false);
    setError(r?.code ?? null);
  };
  return (
    <Screen label={t.t("setup.title")} className="setup">
      <h1>{t.t("setup.title")}</h1>
      <ErrorText code={reason} />
      <p class="lead">{t.t("setup.intro")}</p>
      <form onSubmit={submit}>
        <label for="invitation">{t.t("setup.invitation")}</label>
        <textarea
          id="invitation"
          name="invitation"
          rows={3}
          value={input}
          onInput={(e) => setInput((e.target as HTMLTextAreaElement).value)}
          autocomplete="off"
          spellcheck={false}
          required
        />
        <label for="server">{t.t("setup.server")}</label>
        <input
          id="server"
          name="server"
          type="url"
          value={server}
          placeholder="https://calls.example.org"
          onInput={(e) => setServer((e.target as HTMLInputElement).value)}
          autocomplete="off"
        />
        <ErrorText code={error} />
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? t.t("setup.working") : t.t("setup.continue")}
        </button>
      </form>
      <LanguagePicker />
    </Screen>
  );
}

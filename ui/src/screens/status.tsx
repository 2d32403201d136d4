import type { ErrorCode } from "../bindings";
import { useApp } from "../context";
import { ErrorText, Icon, Screen } from "./common";

/** Signing in, or waiting to try again: says what is happening and what to check. */
export function Connecting({ retryInSeconds, error }: { retryInSeconds: number | null; error: ErrorCode | null }) {
  const { t } = useApp();
  const title = retryInSeconds === null ? t.t("conn.connecting") : t.t("conn.retrying", { seconds: retryInSeconds });
  return (
    <Screen label={t.t("conn.connecting")} className="status">
      <div class="status-icon" aria-hidden="true">
        <Icon name="reconnecting" />
      </div>
      <div role="status">
        <h1>{title}</h1>
      </div>
      {error === "server_unreachable" && <p class="lead">{t.t("conn.checkInternet")}</p>}
    </Screen>
  );
}

export function Waiting({ position }: { position: number }) {
  const { t } = useApp();
  return (
    <Screen label={t.t("conn.waiting", { position })} className="status">
      <div role="status">
        <h1>{t.t("conn.waiting", { position })}</h1>
      </div>
    </Screen>
  );
}

/** The server refuses this device's invitation: say why and offer to enter a new one. */
export function Refused({ error }: { error: ErrorCode }) {
  const { t, api, act } = useApp();
  const title = error === "replaced" ? t.t("refused.replacedTitle") : t.t("refused.title");
  return (
    <Screen label={title} className="status">
      <h1>{title}</h1>
      <ErrorText code={error} />
      <button type="button" class="btn btn-primary" onClick={() => void act(api.forgetInvitation())}>
        {t.t("refused.newInvitation")}
      </button>
    </Screen>
  );
}

import type { ClientError, ErrorCode } from "../bindings";
import { useApp } from "../context";
import { retranslate } from "../i18n";
import { CheckBadges, REASONS } from "./clinician";
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
      {error === "room_full" && <p class="lead">{t.t("conn.roomFull")}</p>}
    </Screen>
  );
}

/** A patient in the waiting room: the doctor will come; their check runs meanwhile. With no
 * position they were let in: the doctor's call is coming, or (`over`) the consult ended. */
export function Waiting({ position, over = false }: { position: number | null; over?: boolean }) {
  const { t, state } = useApp();
  const check = state.my_check;
  if (over) {
    return (
      <Screen label={t.t("wait.over")} className="status">
        <div role="status">
          <h1>{t.t("wait.over")}</h1>
        </div>
        <p class="lead">{t.t("wait.overDetail")}</p>
      </Screen>
    );
  }
  const title = position === null ? t.t("wait.admitted") : t.t("wait.title");
  return (
    <Screen label={title} className="status waiting-patient">
      <div role="status">
        <h1>{title}</h1>
        {position !== null && <p class="lead">{t.t("wait.position", { position })}</p>}
      </div>
      <p class="lead">{t.t("wait.stay")}</p>
      <section class="my-check" aria-labelledby="my-check-title">
        <h2 id="my-check-title">{check ? t.t("wait.checked") : t.t("wait.checking")}</h2>
        <CheckBadges check={check} />
        {check && (check.camera === "failed" || check.microphone === "failed") && <p class="warn">{t.t("wait.checkProblem")}</p>}
      </section>
    </Screen>
  );
}

// What the server says when a clinician gave no reason (`ErrorCode::Denied`'s default sentence in
// hearth-proto): the heading and the error already say it, in the patient's language.
const NO_REASON = "The clinician could not let you in this time.";

/** The server refuses this device's invitation: say why and offer to enter a new one. A
 * clinician's own words, when they turned a patient away, are shown as they wrote them. */

export function Refused({ error }: { error: ClientError }) {
  const { t, api, act } = useApp();
  const code: ErrorCode = error.code;
  const title = code === "replaced" ? t.t("refused.replacedTitle") : code === "denied" ? t.t("refused.deniedTitle") : t.t("refused.title");
  return (
    <Screen label={title} className="status">
      <h1>{title}</h1>
      <ErrorText code={code} />
      {code === "denied" && error.message && error.message !== NO_REASON && <blockquote class="lead">{retranslate(error.message, REASONS, t.lang)}</blockquote>}
      <button type="button" class="btn btn-primary" onClick={() => void act(api.forgetInvitation())}>
        {t.t("refused.newInvitation")}
      </button>
    </Screen>
  );
}

import type { Contact } from "../bindings";
import { useApp } from "../context";
import { Notices, Portrait, PresenceBadge, Screen } from "./common";

/** Mrs Kim's screen: big photos of the people she may call; one tap calls. Nothing to read
 *  to go on: the photo is the button, the words only confirm. */
export function ResidentHome() {
  const { state, t, api, act } = useApp();
  const call = (c: Contact) => {
    if (c.presence === "available") void act(api.call(c.key));
  };
  return (
    <Screen label={t.t("home.title")} className="resident-home">
      <h1 class="visually-hidden">{t.t("home.title")}</h1>
      {state.contacts.length === 0 && <p class="lead big">{t.t("home.nobody")}</p>}
      <ul class="tiles" role="list">
        {state.contacts.map((c) => (
          <li key={c.key}>
            <button
              type="button"
              class={`tile presence-${c.presence}`}
              aria-disabled={c.presence !== "available"}
              onClick={() => call(c)}
            >
              <Portrait contact={c} size="tile" />
              <span class="visually-hidden">{t.t("home.callName", { name: c.name })}</span>
              <span class="tile-name" aria-hidden="true">
                {c.name}
              </span>
              <PresenceBadge presence={c.presence} />
            </button>
          </li>
        ))}
      </ul>
      <Notices />
    </Screen>
  );
}

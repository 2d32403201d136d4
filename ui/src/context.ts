import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { Backend, Outcome } from "./api";
import type { AppState } from "./bindings";
import type { I18n } from "./i18n";

export interface Ctx {
  state: AppState;
  api: Backend;
  t: I18n;
  now: number;
  /** Runs an action and shows its error, if any, in words. */
  act: (p: Promise<Outcome>) => Promise<boolean>;
}

export const AppContext = createContext<Ctx>(null as unknown as Ctx);
export const useApp = () => useContext(AppContext);

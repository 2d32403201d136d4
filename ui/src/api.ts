// The page's one door to the app: the generated Tauri bindings inside the app, or a fixture
// backend when the page is opened in a plain browser (accessibility checks and screenshots of
// every screen, `?fixture=<name>`).
import {
  type AppState,
  type CheckReport,
  type ClientError,
  commands,
  type Device,
  type DeviceChoice,
  events,
  type Invitation,
  type Language,
  type NewInvitation,
  type PrecheckReport,
  type Rules,
  type SettingsView,
  type Tablet,
} from "./bindings";

export type Outcome = ClientError | null;
/** A value, or the error that kept it from coming. */
export type Got<T> = { ok: true; value: T } | { ok: false; error: ClientError };

export interface Backend {
  state(): Promise<AppState>;
  onState(cb: (s: AppState) => void): void;
  onVideoMessage(cb: (buf: ArrayBuffer) => void): void;
  /** The page's decoder of `peer`'s video needs a keyframe. */
  requestKeyframe(peer: string): void;
  /** The page cannot decode video: the app decodes it and sends pictures. */
  decodeVideoHere(): void;
  /** The self-view is shown this many device pixels wide. */
  selfViewWidth(pixels: number): void;
  acceptInvitation(input: string, server: string | null): Promise<Outcome>;
  forgetInvitation(): Promise<Outcome>;
  call(key: string): Promise<Outcome>;
  answer(peer: string): Promise<Outcome>;
  decline(peer: string): Promise<Outcome>;
  hangUp(): Promise<Outcome>;
  setMuted(muted: boolean): Promise<Outcome>;
  setCameraOff(off: boolean): Promise<Outcome>;
  setLanguage(lang: Language): Promise<Outcome>;
  devices(): Promise<Device[]>;
  settings(): Promise<SettingsView | null>;
  setDevices(choice: DeviceChoice): Promise<Outcome>;
  photo(key: string): Promise<string | null>;
  precheck(): Promise<PrecheckReport | ClientError>;
  dismissNotice(id: number): Promise<void>;
  // Clinicians.
  admit(peer: string): Promise<Outcome>;
  deny(peer: string, reason: string | null): Promise<Outcome>;
  admitNext(): Promise<Outcome>;
  // Staff (and clinicians, for their own room's invitations).
  createInvitation(ask: NewInvitation): Promise<Got<Invitation>>;
  listInvitations(): Promise<Got<Invitation[]>>;
  revokeInvitation(id: string): Promise<Outcome>;
  listTablets(): Promise<Got<Tablet[]>>;
  setRules(sub: string, rules: Rules): Promise<Outcome>;
  runTabletCheck(sub: string): Promise<Got<CheckReport>>;
  exportAudit(): Promise<Got<string>>;
}

type Res<T> = { status: "ok"; data: T } | { status: "error"; error: ClientError };
const outcome = async (p: Promise<Res<unknown>>): Promise<Outcome> => {
  const r = await p;
  return r.status === "ok" ? null : r.error;
};
const got = async <T>(p: Promise<Res<T>>): Promise<Got<T>> => {
  const r = await p;
  return r.status === "ok" ? { ok: true, value: r.data } : { ok: false, error: r.error };
};

export function tauriBackend(): Backend {
  return {
    state: () => commands.appState(),
    onState(cb) {
      void events.stateChanged.listen((e) => cb(e.payload));
    },
    onVideoMessage(cb) {
      // One call always waiting: each answer is a picture or an encoded frame (or nothing after
      // two seconds).
      const pump = async () => {
        for (;;) {
          const r = await commands.nextPicture();
          if (r.status === "ok" && r.data instanceof ArrayBuffer && r.data.byteLength > 0) cb(r.data);
          else if (r.status === "error") await new Promise((ok) => setTimeout(ok, 500));
        }
      };
      void pump();
    },
    requestKeyframe: (peer) => void commands.requestKeyframe(peer),
    decodeVideoHere: () => void commands.decodeVideoHere(),
    selfViewWidth: (pixels) => void commands.setSelfViewWidth(pixels),
    acceptInvitation: (input, server) => outcome(commands.acceptInvitation(input, server)),
    forgetInvitation: () => outcome(commands.forgetInvitation()),
    call: (key) => outcome(commands.callContact(key)),
    answer: (peer) => outcome(commands.answer(peer)),
    decline: (peer) => outcome(commands.decline(peer)),
    hangUp: () => outcome(commands.hangUp()),
    setMuted: (m) => outcome(commands.setMuted(m)),
    setCameraOff: (o) => outcome(commands.setCameraOff(o)),
    setLanguage: (l) => outcome(commands.setLanguage(l)),
    devices: () => commands.listDevices(),
    async settings() {
      const r = await commands.settings();
      return r.status === "ok" ? r.data : null;
    },
    setDevices: (c) => outcome(commands.setDevices(c)),
    async photo(key) {
      const r = await commands.contactPhoto(key);
      return r.status === "ok" ? r.data : null;
    },
    dismissNotice: (id) => commands.dismissNotice(id),
    async precheck() {
      const r = await commands.precheck();
      return r.status === "ok" ? r.data : r.error;
    },
    admit: (peer) => outcome(commands.admit(peer)),
    deny: (peer, reason) => outcome(commands.deny(peer, reason)),
    admitNext: () => outcome(commands.admitNext()),
    createInvitation: (ask) => got(commands.createInvitation(ask)),
    listInvitations: () => got(commands.listInvitations()),
    revokeInvitation: (id) => outcome(commands.revokeInvitation(id)),
    listTablets: () => got(commands.listTablets()),
    setRules: (sub, rules) => outcome(commands.setRules(sub, rules)),
    runTabletCheck: (sub) => got(commands.runTabletCheck(sub)),
    exportAudit: () => got(commands.exportAudit()),
  };
}

export const inTauri = () => "__TAURI_INTERNALS__" in window;

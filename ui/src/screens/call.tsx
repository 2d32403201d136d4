import type { ComponentChildren } from "preact";
import type { CallPeer, CallView } from "../bindings";
import { useApp } from "../context";
import { qualityKey } from "../logic/connection";
import { Banners, Icon, Notices, Portrait, Screen, VideoCanvas } from "./common";

type Variant = "resident" | "family";

export function IncomingCall({ call, secondsLeft, onAnswer, variant }: {
  call: Extract<CallView, { state: "incoming" }>;
  secondsLeft: number | null;
  onAnswer: () => void;
  variant: Variant;
}) {
  const { t, api, act } = useApp();
  const title = t.t("call.incoming", { name: call.name });
  return (
    <Screen label={title} className={`incoming ${variant}`}>
      <Portrait contact={{ key: call.name, name: call.name, has_photo: true }} size="full" />
      <div role="alert">
        <h1 class="caller">{title}</h1>
      </div>
      {secondsLeft !== null && (
        <p class="countdown" role="timer" aria-live="polite">
          {t.t("call.autoAnswer", { seconds: secondsLeft })}
        </p>
      )}
      <div class="actions">
        <button type="button" class="btn btn-answer" onClick={onAnswer}>
          <Icon name="phone" />
          {t.t("call.answer")}
        </button>
        <button type="button" class="btn btn-decline" onClick={() => void act(api.decline(call.peer))}>
          <Icon name="end" />
          {t.t("call.decline")}
        </button>
      </div>
    </Screen>
  );
}

export function Calling({ call, variant }: { call: Extract<CallView, { state: "calling" }>; variant: Variant }) {
  const { t, api, act } = useApp();
  const title = t.t("call.calling", { name: call.name });
  return (
    <Screen label={title} className={`calling ${variant}`}>
      <Portrait contact={{ key: call.name, name: call.name, has_photo: true }} size="full" />
      <div role="status">
        <h1>{title}</h1>
        {call.ringing && <p class="lead">{t.t("call.ringing")}</p>}
      </div>
      <div class="actions">
        <button type="button" class="btn btn-end" onClick={() => void act(api.hangUp())}>
          <Icon name="end" />
          {variant === "resident" ? t.t("call.end") : t.t("call.cancel")}
        </button>
      </div>
    </Screen>
  );
}

function RemoteTile({ peer }: { peer: CallPeer }) {
  const { t } = useApp();
  const showVideo = peer.their_video === "on";
  return (
    <section class="remote" aria-label={peer.name}>
      <VideoCanvas peer={peer.peer} label={t.t("call.videoOf", { name: peer.name })} className={`video ${showVideo ? "" : "hidden"}`} />
      {!showVideo && <Portrait contact={{ key: peer.name, name: peer.name, has_photo: true }} size="full" />}
      {!peer.connected && (
        <p class="overlay" role="status">
          {t.t("call.connecting")}
        </p>
      )}
      <p class="name-tag">{peer.name}</p>
      <Banners peer={peer} />
    </section>
  );
}

export function InCall({ call, variant, side = null }: {
  call: Extract<CallView, { state: "active" }>;
  variant: Variant;
  /** A clinician's waiting room and consult actions beside the call. */
  side?: ComponentChildren;
}) {
  const { t, api, act, state, now } = useApp();
  const names = call.peers.map((p) => p.name).join(", ");
  const seconds = call.since_ms === null ? 0 : (now - call.since_ms) / 1000;
  const first = call.peers[0];
  return (
    <Screen label={names} className={`in-call ${variant} peers-${call.peers.length}${side ? " with-side" : ""}`}>
      <h1 class="visually-hidden">{names}</h1>
      <div class="remotes">
        {call.peers.map((p) => (
          <RemoteTile peer={p} key={p.peer} />
        ))}
      </div>
      {!state.camera_off && <VideoCanvas peer={null} label={t.t("call.selfView")} className="self-view" />}
      {variant === "family" && first && (
        <p class={`quality quality-${first.quality}`} role="status">
          <Icon name={first.quality} />
          {t.t(qualityKey(first))}
          <span class="numbers">
            {first.rtt_ms !== null && ` · ${t.t("call.rtt", { ms: first.rtt_ms })}`}
            {` · ${t.t("call.rate", { kbps: first.receive_kbps ?? 0 })}`}
          </span>
        </p>
      )}
      {variant === "family" && <p class="duration">{t.t("call.duration", { duration: t.duration(seconds) })}</p>}
      {state.muted && (
        <p class="muted-note" role="status">
          {t.t("controls.muted")}
        </p>
      )}
      <Notices />
      <div class="controls">
        {variant === "family" && (
          <button type="button" class="btn btn-control" aria-pressed={state.muted} onClick={() => void act(api.setMuted(!state.muted))}>
            <Icon name={state.muted ? "micOff" : "mic"} />
            {state.muted ? t.t("controls.unmute") : t.t("controls.mute")}
          </button>
        )}
        {variant === "family" && (
          <button type="button" class="btn btn-control" aria-pressed={state.camera_off} onClick={() => void act(api.setCameraOff(!state.camera_off))}>
            <Icon name={state.camera_off ? "camOff" : "cam"} />
            {state.camera_off ? t.t("controls.cameraOn") : t.t("controls.cameraOff")}
          </button>
        )}
        <button type="button" class="btn btn-end" onClick={() => void act(api.hangUp())}>
          <Icon name="end" />
          {t.t("call.end")}
        </button>
      </div>
      {side}
    </Screen>
  );
}

export function Ended({ call, variant }: { call: Extract<CallView, { state: "ended" }>; variant: Variant }) {
  const { t } = useApp();
  const title = t.t(`ended.${call.reason}`, { name: call.name });
  return (
    <Screen label={title} className={`ended ${variant}`}>
      <Portrait contact={{ key: call.name, name: call.name, has_photo: true }} size="full" />
      <div role="status">
        <h1>{title}</h1>
      </div>
    </Screen>
  );
}

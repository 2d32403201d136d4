import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import type { CallPeer, Contact, Notice, Presence } from "../bindings";
import { type Banner, callBanners } from "../logic/connection";
import { useApp } from "../context";
import type { I18n } from "../i18n";
import { attach } from "../video/registry";

// Simple shapes, drawn inline so nothing needs loading.
const ICONS: Record<string, string> = {
  phone: "M6 3h4l2 5-3 2a11 11 0 0 0 5 5l2-3 5 2v4a2 2 0 0 1-2 2A17 17 0 0 1 4 5a2 2 0 0 1 2-2z",
  end: "M3 14c5-5 13-5 18 0l-2 3-4-1v-3a9 9 0 0 0-6 0v3l-4 1z",
  mic: "M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3zm-7 9a7 7 0 0 0 14 0M12 19v3",
  micOff: "M3 3l18 18M9 9v3a3 3 0 0 0 5 2M15 10V6a3 3 0 0 0-6 0M5 12a7 7 0 0 0 11 5M19 12a7 7 0 0 1-1 3M12 19v3",
  cam: "M3 7h12v10H3zM15 10l6-3v10l-6-3z",
  camOff: "M3 3l18 18M3 7h8M15 11v6H3V7M15 10l6-3v10l-6-3",
  good: "M4 18h3v-4H4zm6 0h3v-8h-3zm6 0h3V6h-3z",
  weak: "M4 18h3v-4H4zm6 0h3v-8h-3z",
  reconnecting: "M20 12a8 8 0 1 1-3-6.3M20 4v5h-5",
  paused: "M7 5h4v14H7zm6 0h4v14h-4z",
  settings: "M12 8a4 4 0 1 0 0 8 4 4 0 0 0 0-8zm9 4-2-1 1-3-3-1-1-3h-3l-1 2-2-2-2 2 1 2-3 1 1 3-2 1v3l2 1-1 3 3 1 1 3h3l1-2 2 2 2-2-1-2 3-1-1-3 2-1z",
  check: "M4 12l5 5L20 6",
  cross: "M5 5l14 14M19 5L5 19",
};

/** An icon, hidden from screen readers (the words next to it say the same). */
export function Icon({ name }: { name: string }) {
  return (
    <svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path d={ICONS[name] ?? ""} />
    </svg>
  );
}

export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const first = parts[0]?.[0] ?? "?";
  const last = parts.length > 1 ? (parts[parts.length - 1]?.[0] ?? "") : "";
  return (first + last).toUpperCase();
}

/** A contact's photo, or their initials on a colour chosen from their name. */
export function Portrait({ contact, size }: { contact: Pick<Contact, "key" | "name" | "has_photo">; size: "tile" | "full" | "small" }) {
  const { api } = useApp();
  const img = useRef<HTMLImageElement>(null);
  useEffect(() => {
    if (!contact.has_photo) return;
    let live = true;
    void api.photo(contact.key).then((url) => {
      if (live && url && img.current) img.current.src = url;
    });
    return () => {
      live = false;
    };
  }, [contact.key, contact.has_photo]);
  let hash = 0;
  for (const ch of contact.name) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  const hues = [210, 150, 20, 280, 340, 190];
  const hue = hues[hash % hues.length] ?? 210;
  return (
    <div class={`portrait portrait-${size}`} style={{ background: `hsl(${hue} 45% 28%)` }} aria-hidden="true">
      <span class="initials">{initials(contact.name)}</span>
      {contact.has_photo && <img ref={img} alt="" />}
    </div>
  );
}

export function PresenceBadge({ presence }: { presence: Presence }) {
  const { t } = useApp();
  return (
    <span class={`presence presence-${presence}`}>
      <span class="dot" aria-hidden="true" />
      {t.t(`presence.${presence}`)}
    </span>
  );
}

export function VideoCanvas({ peer, label, className }: { peer: string | null; label: string; className: string }) {
  const ref = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    attach(peer, ref.current);
    return () => attach(peer, null);
  }, [peer]);
  return <canvas ref={ref} class={className} role="img" aria-label={label} data-peer={peer ?? "self"} width={640} height={480} />;
}

export function Banners({ peer }: { peer: CallPeer }) {
  const { t } = useApp();
  const banners: Banner[] = callBanners(peer);
  if (banners.length === 0) return null;
  return (
    <div class="banners" role="status">
      {banners.map((b) => (
        <p class={`banner banner-${b.icon}`} key={b.key}>
          <Icon name={b.icon} />
          {t.t(b.key, { name: peer.name })}
        </p>
      ))}
    </div>
  );
}

export function Screen({ label, children, className }: { label: string; children: ComponentChildren; className?: string }) {
  return (
    <main class={`screen ${className ?? ""}`} aria-label={label}>
      {children}
    </main>
  );
}

/** What a notice says. About a device: the page's own words. A refusal: the server's sentence,
 *  which is English and says exactly what happened, to English readers; to others the page's
 *  words for its code (for two codes words for a refused request, as their `err.*` sentences
 *  are about signing in). */
function noticeText(n: Notice, t: I18n): string {
  if (n.device) return t.t(`notice.${n.device}`);
  if (!n.code || t.lang === "en") return n.message;
  if (n.code === "forbidden") return t.t("notice.forbidden");
  if (n.code === "server_unreachable") return t.t("notice.notNow");
  return t.t(`err.${n.code}` as never);
}

export function Notices() {
  const { state, t, api } = useApp();
  if (state.notices.length === 0) return null;
  return (
    <aside class="notices" aria-label={t.t("notice.title")}>
      {state.notices.map((n) => (
        <p class="notice" role="alert" key={n.id}>
          <span>{noticeText(n, t)}</span>
          <button type="button" class="btn btn-quiet" onClick={() => void api.dismissNotice(n.id)}>
            {t.t("notice.dismiss")}
          </button>
        </p>
      ))}
    </aside>
  );
}

export function ErrorText({ code }: { code: string | null }) {
  const { t } = useApp();
  if (!code) return null;
  return (
    <p class="error" role="alert">
      {t.t(`err.${code}` as never)}
    </p>
  );
}

// The i18n layer: a typed lookup with `{name}` placeholders, plus the browser's Intl for
// numbers, dates and durations in the device's language. Small enough to keep by hand; the
// type system checks that every language has every key.
import { en, type MessageKey } from "./en";
import { ko } from "./ko";

export type Lang = "en" | "ko";
export type { MessageKey };

const tables: Record<Lang, Record<MessageKey, string>> = { en, ko };

/** A sentence written in any of our languages from one of `keys`, in `lang`; else itself. (A
 *  clinician's chosen reason reaches a patient in the patient's language.) */
export function retranslate(message: string, keys: readonly MessageKey[], lang: Lang): string {
  for (const key of keys) {
    if (Object.values(tables).some((table) => table[key] === message)) return tables[lang][key];
  }
  return message;
}

export interface I18n {
  lang: Lang;
  t(key: MessageKey, params?: Record<string, string | number>): string;
  number(n: number): string;
  date(ms: number): string;
  duration(seconds: number): string;
}

export function i18n(lang: Lang): I18n {
  const table = tables[lang];
  const locale = lang === "ko" ? "ko-KR" : "en-GB";
  const numbers = new Intl.NumberFormat(locale);
  const dates = new Intl.DateTimeFormat(locale, { dateStyle: "long", timeStyle: "short" });
  return {
    lang,
    t(key, params) {
      const text = table[key];
      if (!params) return text;
      return text.replace(/\{(\w+)\}/g, (whole, name: string) => {
        const v = params[name];
        if (v === undefined) return whole;
        return typeof v === "number" ? numbers.format(v) : v;
      });
    },
    number: (n) => numbers.format(n),
    date: (ms) => dates.format(new Date(ms)),
    duration(seconds) {
      const s = Math.max(0, Math.floor(seconds));
      const h = Math.floor(s / 3600);
      const m = Math.floor((s % 3600) / 60);
      const two = (n: number) => String(n).padStart(2, "0");
      return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
    },
  };
}

// The pages' languages (Simplified Chinese and English). Every text people read comes from a catalogue,
// client_web/i18n/<lang>/<namespace>.json (flat key -> string, `{name}` placeholders); a page names its namespaces
// in <html data-i18n-ns="common terminal">. The language: `?lang=`, else the one chosen with the switch (kept in
// localStorage), else the browser's (navigator.languages: zh* -> zh-CN, anything else -> en).
//
// Texts the scripts change later are set with setText(el, msg(key, params)): the element keeps its key and
// parameters (data-i18n, data-i18n-params), so switching the language re-renders it in place, with no reload
// (a live lesson goes on). Plain strings (user and server data) are shown as they are.

export const LANGS = ["zh-CN", "en"];
const STORE_KEY = "liveclass.lang";
const ATTRS = [["i18nPlaceholder", "placeholder"], ["i18nTitle", "title"], ["i18nAriaLabel", "aria-label"]];

let lang = chooseLang();
let namespaces = [];
let strings = {};
const listeners = new Set();

function supported(value) {
  if (!value) return null;
  if (/^zh/i.test(value)) return "zh-CN";
  return /^en/i.test(value) ? "en" : null;
}

function chooseLang() {
  const asked = supported(new URLSearchParams(window.location.search).get("lang"));
  if (asked) return asked;
  let stored = null;
  try { stored = supported(localStorage.getItem(STORE_KEY)); } catch { /* storage disabled */ }
  if (stored) return stored;
  const browser = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  return browser.some((l) => /^zh/i.test(l || "")) ? "zh-CN" : "en";
}

export function currentLang() { return lang; }

const RETRY_MS = [500, 1000, 2000];

async function fetchCatalogues(wanted, names) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const parts = await Promise.all(names.map(async (ns) => {
        const r = await fetch(new URL(`../i18n/${wanted}/${ns}.json`, import.meta.url), { cache: "no-cache" });
        if (!r.ok) throw new Error(`i18n catalogue ${wanted}/${ns}: HTTP ${r.status}`);
        return r.json();
      }));
      return Object.assign({}, ...parts);
    } catch (e) {
      if (attempt >= RETRY_MS.length) throw e;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS[attempt]));
    }
  }
}

/** Load the catalogues of `names` (default: the page's data-i18n-ns) in the current language. Never rejects:
 *  a page whose catalogues cannot be had still runs (a terminal keeps playing the lesson), showing keys. */
export async function loadCatalogues(names = (document.documentElement.dataset.i18nNs || "common").split(/\s+/)) {
  namespaces = names.filter(Boolean);
  try {
    strings = await fetchCatalogues(lang, namespaces);
  } catch (e) {
    console.error("i18n: the catalogues did not load", e);
  }
}

export function has(key) { return Object.prototype.hasOwnProperty.call(strings, key); }

/** A message to translate when shown: what setText() and nested parameters take. */
export function msg(key, params = undefined) { return params ? { key, params } : { key }; }

/** The text of `key` with `{name}` replaced by params.name (itself a msg() or plain text); `{^name}` starts
 *  it with a capital letter (a reason that begins an English sentence). */
export function t(key, params = {}) {
  if (!has(key)) {
    console.warn(`i18n: no "${key}" in ${lang}`);
    return key;
  }
  return strings[key].replace(/\{(\^?)(\w+)\}/g, (all, cap, name) => {
    if (!(name in params)) return all;
    const v = text(params[name]);
    return cap ? v.charAt(0).toUpperCase() + v.slice(1) : v;
  });
}

/** A msg() translated, or plain text as it is. */
export function text(m) {
  return m && typeof m === "object" ? t(m.key, m.params) : String(m ?? "");
}

/** Show a msg() (re-rendered on a language switch) or plain text in `el`. */
export function setText(el, m) {
  if (m && typeof m === "object") {
    el.dataset.i18n = m.key;
    if (m.params) el.dataset.i18nParams = JSON.stringify(m.params);
    else delete el.dataset.i18nParams;
  } else {
    delete el.dataset.i18n;
    delete el.dataset.i18nParams;
  }
  el.textContent = text(m);
}

/** Fill every data-i18n(-placeholder, -title, -aria-label) element under root; set <html lang>. */
export function applyTranslations(root = document) {
  document.documentElement.lang = lang;
  for (const el of within(root, "[data-i18n]")) {
    el.textContent = t(el.dataset.i18n, el.dataset.i18nParams ? JSON.parse(el.dataset.i18nParams) : {});
  }
  for (const [prop, attr] of ATTRS) {
    const sel = `[data-${prop.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}]`;
    for (const el of within(root, sel)) el.setAttribute(attr, t(el.dataset[prop]));
  }
}

function within(root, selector) {
  const all = [...root.querySelectorAll(selector)];
  return root.matches && root.matches(selector) ? [root, ...all] : all;
}

/** Switch language in place: the URL's ?lang= and localStorage remember it; listeners re-render the rest. */
export async function setLang(next) {
  next = supported(next);
  if (!next || next === lang) return;
  strings = await fetchCatalogues(next, namespaces);  // on failure the page stays as it was
  lang = next;
  try { localStorage.setItem(STORE_KEY, lang); } catch { /* storage disabled: the URL still says */ }
  const url = new URL(window.location.href);
  url.searchParams.set("lang", lang);
  history.replaceState(history.state, "", url);
  applyTranslations();
  for (const cb of listeners) {
    try { cb(lang); } catch (e) { console.error("language listener failed", e); }
  }
}

/** Called after every language switch (for texts a page computes rather than keeps in data-i18n). */
export function onLangChange(cb) { listeners.add(cb); }

/** The switch: one button per language, each named in its own language; the current one pressed. */
export function mountLanguageSwitch(container) {
  const box = document.createElement("div");
  box.className = "lang-switch";
  box.setAttribute("role", "group");
  box.dataset.i18nAriaLabel = "common.lang.switch";
  for (const l of LANGS) {
    const b = document.createElement("button");
    b.type = "button";
    b.lang = l;
    b.dataset.lang = l;
    b.dataset.i18n = `common.lang.${l}`;
    b.addEventListener("click", () => setLang(l).catch((e) => console.error("i18n: could not switch language", e)));
    box.append(b);
  }
  const mark = () => {
    for (const b of box.children) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
  };
  onLangChange(mark);
  mark();
  container.append(box);
  applyTranslations(box);
  return box;
}

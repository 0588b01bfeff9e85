// Browsers give a page the camera and microphone only in a secure context: https, or localhost. A page opened
// over plain http on another machine's address has no navigator.mediaDevices at all, so instead of failing
// quietly the pages say why and which address to use.
import { msg, setText } from "./i18n.js";

/** Whether this page may ask for the camera and microphone. */
export function canCapture() {
  return Boolean(window.isSecureContext && navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
}

/** The same page over https (same host, port, path and query): what to open instead. */
export function httpsUrl(href = window.location.href) {
  const u = new URL(href);
  u.protocol = "https:";
  return u.href;
}

/** A plain-language reason (msg()s, i18n.js), with the address to use, for a page that cannot capture; null
 *  when it can. */
export function captureBlockedReason() {
  if (canCapture()) return null;
  if (!window.isSecureContext) {
    return { text: msg("common.capture.plain_http"), url: httpsUrl(), hint: msg("common.capture.plain_http_hint") };
  }
  return { text: msg("common.capture.unsupported"), url: null, hint: null };
}

/** Show `reason` in `el`: the text, the https link and the hint (text only: never markup from the URL). */
export function showCaptureBlocked(el, reason) {
  const text = document.createElement("span");
  setText(text, reason.text);
  el.replaceChildren(text, " ");
  if (reason.url) {
    const a = document.createElement("a");
    a.href = reason.url;
    a.textContent = reason.url;
    a.className = "https-link";
    el.append(a);
  }
  if (reason.hint) {
    const hint = document.createElement("span");
    hint.className = "hint";
    setText(hint, reason.hint);
    el.append(" ", hint);
  }
  el.dataset.blocked = "insecure";
}

/** Thrown by a page's device opening when the context forbids capture (not worth retrying). */
export class CaptureBlocked extends Error {
  constructor(reason) {
    super(reason.text.key);
    this.name = "CaptureBlocked";
    this.reason = reason;
  }
}

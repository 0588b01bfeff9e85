// Browsers give a page the camera and microphone only in a secure context: https, or localhost. A page opened
// over plain http on another machine's address has no navigator.mediaDevices at all, so instead of failing
// quietly the pages say why and which address to use.

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

/** A plain-language reason, with the address to use, for a page that cannot capture; null when it can. */
export function captureBlockedReason() {
  if (canCapture()) return null;
  if (!window.isSecureContext) {
    return {
      text: "This page was opened over plain http on another machine's address, so the browser does not let it " +
        "use the camera or microphone. Open it over https instead:",
      url: httpsUrl(),
      hint: "If that address does not open, the server must be started with https " +
        "(liveclass serve --tls-self-signed, --tls-cert, or behind a TLS front).",
    };
  }
  return { text: "This browser offers no camera or microphone access to pages.", url: null, hint: "" };
}

/** Show `reason` in `el`: the text, the https link and the hint (text only: never markup from the URL). */
export function showCaptureBlocked(el, reason) {
  el.textContent = reason.text + " ";
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
    hint.textContent = " " + reason.hint;
    el.append(hint);
  }
  el.dataset.blocked = "insecure";
}

/** Thrown by a page's device opening when the context forbids capture (not worth retrying). */
export class CaptureBlocked extends Error {
  constructor(reason) {
    super(reason.text + (reason.url ? " " + reason.url : ""));
    this.name = "CaptureBlocked";
    this.reason = reason;
  }
}

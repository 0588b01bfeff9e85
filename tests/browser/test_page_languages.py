"""Every page in Simplified Chinese and in English (client_web/js/i18n.js, client_web/i18n/<lang>/*.json).

The catalogues are checked without a browser: every key the pages and scripts use exists in both languages, both
have the same keys and placeholders, and every room error code has a text. Then the teacher, terminal and replay
pages are opened in real headless Chromium in each language (`?lang=`, and the browser's own language) at 1280x720
and 1920x1080, before and during a lesson, and looked at as people would: no text left in the other language, no
key shown instead of its text, nothing wider than its box or the window. Screenshots go to /tmp/i18n-shots/.

Uses Debian's /usr/bin/chromium through Playwright (never `playwright install`).
"""
from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest

from signaling.lesson.room_protocol import Code
from testkit.chromium import BrowserContexts, browser_marks, headless_chromium
from testkit.server import ServerProcess

WEB = Path(__file__).resolve().parents[2] / "client_web"
LANGS = ("zh-CN", "en")
NAMESPACES = sorted(p.stem for p in (WEB / "i18n" / "en").glob("*.json"))
NS = "|".join(NAMESPACES)
KEY = re.compile(rf"""["'`]((?:{NS})\.[\w.-]+)["'`]""")
# keys a script builds from data (`common.room_error.${code}`): every key under that prefix counts as used
DYNAMIC = re.compile(rf"`((?:{NS})\.[\w.-]*)\$\{{")
PLACEHOLDER = re.compile(r"\{\^?(\w+)\}")
SHOTS = Path("/tmp/i18n-shots")
VIEWPORTS = ((1280, 720), (1920, 1080))
# Latin words a Chinese page may show: units, protocol and key names, the product's name
LATIN_OK = {"fps", "kbit", "Mbit", "RTT", "WebRTC", "ICE", "DTLS", "SDP", "TLS", "Enter", "http", "https", "liveclass",
            "CSV"}
DATA_WORDS = {"local"}  # shown as it is: the node id of a server outside a cluster ("127.0.0.1:8080（节点 local）")
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


def catalogue(lang: str, ns: str) -> dict[str, str]:
    return json.loads((WEB / "i18n" / lang / f"{ns}.json").read_text(encoding="utf-8"))


def keys_in(path: Path) -> set[str]:
    return {k for k in KEY.findall(path.read_text(encoding="utf-8")) if not k.endswith(".html")}


def in_chromium(timeout_s: int):
    def mark(test):
        for m in browser_marks(timeout_s):
            test = m(test)
        return test
    return mark


# --- the catalogues (no browser) ------------------------------------------------------------------------------

def test_both_languages_have_every_key_the_pages_use():
    for lang in LANGS:
        assert sorted(p.stem for p in (WEB / "i18n" / lang).glob("*.json")) == NAMESPACES, f"{lang}: other namespaces"
    merged = {}
    for lang in LANGS:
        merged[lang] = {}
        for ns in NAMESPACES:
            c = catalogue(lang, ns)
            assert all(k.startswith(f"{ns}.") for k in c), f"{lang}/{ns}.json holds another namespace's keys"
            assert all(isinstance(v, str) and v.strip() for v in c.values()), f"{lang}/{ns}.json: an empty text"
            merged[lang].update(c)
    zh, en = merged["zh-CN"], merged["en"]
    assert set(zh) == set(en), f"only in zh-CN: {sorted(set(zh) - set(en))}; only in en: {sorted(set(en) - set(zh))}"
    for k in zh:
        if k.startswith("common.http."):  # English shows the server's words, Chinese what the status means
            assert set(PLACEHOLDER.findall(zh[k] + en[k])) <= {"reason", "status"}, k
        else:
            assert set(PLACEHOLDER.findall(zh[k])) == set(PLACEHOLDER.findall(en[k])), f"placeholders differ in {k}"

    # every key used by a page or script exists (in both, as checked above)
    used: dict[Path, set[str]] = {p: keys_in(p) for p in [*WEB.glob("*.html"), *WEB.glob("js/*.js")]}
    missing = {str(p.relative_to(WEB)): sorted(k - set(en)) for p, k in used.items() if k - set(en)}
    assert not missing, f"keys missing from the catalogues: {missing}"
    every_use = set().union(*used.values())
    built = tuple(set().union(*(DYNAMIC.findall(p.read_text()) for p in WEB.glob("js/*.js"))))
    unused = sorted(k for k in en if k not in every_use and not k.startswith(built))
    assert not unused, f"keys no page uses: {unused}"
    for code in (v for k, v in vars(Code).items() if k.isupper()):
        assert f"common.room_error.{code}" in en, f"no text for the room error code {code}"

    # a page loads the namespaces of every key its scripts (and the modules they import) use
    imports = {p.name: set(re.findall(r'from "\./([\w-]+\.js)"', p.read_text())) for p in WEB.glob("js/*.js")}

    def reach(module: str, seen: set[str]) -> set[str]:
        if module not in seen:
            seen.add(module)
            for m in imports.get(module, ()):
                reach(m, seen)
        return seen

    for page in WEB.glob("*.html"):
        html = page.read_text()
        ns = re.search(r'data-i18n-ns="([^"]+)"', html)
        assert ns, f"{page.name} names no catalogues (<html data-i18n-ns>)"
        declared = set(ns.group(1).split())
        modules = set().union(*(reach(m, set()) for m in re.findall(r'src="js/([\w-]+\.js)"', html)))
        needed = {k.split(".")[0] for k in keys_in(page).union(*(keys_in(WEB / "js" / m) for m in modules))}
        assert needed <= declared, f"{page.name} needs the namespaces {sorted(needed - declared)}"


# --- the pages in Chromium --------------------------------------------------------------------------------------

# What a person sees: visible text (and placeholders, labels, the title), minus text marked as another language
# (the switch's "中文" / "English"); and every text-bearing element wider than its box.
LOOK = """
(lang) => {
  const shown = (el) => el.checkVisibility({ visibilityProperty: true });
  const foreign = (el) => {
    const l = el.closest("[lang]");
    return l && l !== document.documentElement && l.lang !== lang;
  };
  const texts = [document.title];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement, s = n.nodeValue.trim();
    if (s && el && shown(el) && !foreign(el)) texts.push(s);
  }
  for (const el of document.body.querySelectorAll("[placeholder], [aria-label], [title]")) {
    if (!shown(el) || foreign(el)) continue;
    for (const a of ["placeholder", "aria-label", "title"]) if (el.getAttribute(a)) texts.push(el.getAttribute(a));
  }
  const overflow = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (!shown(el) || el.clientWidth === 0 || el.matches("video, pre, svg *")) continue;  // (SVG text has no box)
    const text = [...el.childNodes].some((c) => c.nodeType === 3 && c.nodeValue.trim()) || el.matches("input, button");
    if (text && el.scrollWidth > el.clientWidth + 1) {
      overflow.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className}: ${el.scrollWidth} > ${el.clientWidth}`);
    }
  }
  return { texts, overflow, lang: document.documentElement.lang, width: document.documentElement.scrollWidth,
           innerWidth: window.innerWidth };
}
"""


def look(page, lang: str, shot: str, data: frozenset[str] = frozenset()) -> None:
    """At each viewport size: the page is all in `lang` (but for `data`: user data, shown as it was entered),
    nothing overflows; a screenshot for people to look at."""
    SHOTS.mkdir(exist_ok=True)
    for w, h in VIEWPORTS:
        page.set_viewport_size({"width": w, "height": h})
        seen = page.evaluate(LOOK, lang)
        page.screenshot(path=str(SHOTS / f"{shot}-{w}x{h}.png"), full_page=True)
        where = f"{shot} at {w}x{h}"
        assert seen["lang"] == lang, f"{where}: <html lang={seen['lang']}>"
        texts = [_without(s, data) for s in seen["texts"]]
        keys = [s for s in texts if re.fullmatch(rf"({NS})\.[\w.-]+", s)]
        assert not keys, f"{where}: keys shown instead of their text: {keys}"
        if lang == "en":
            wrong = [s for s in texts if CJK.search(s)]
        else:
            wrong = [s for s in texts if set(re.findall(r"[A-Za-z]{3,}", s)) - LATIN_OK - DATA_WORDS]
        assert not wrong, f"{where}: text not in {lang}: {wrong}"
        assert not seen["overflow"], f"{where}: text wider than its box: {seen['overflow']}"
        assert seen["width"] <= seen["innerWidth"], f"{where}: the page is wider than the window: {seen}"


def _without(text: str, data: frozenset[str]) -> str:
    for d in sorted(data, key=len, reverse=True):
        text = text.replace(d, "")
    return text


# mode -> (the browser's language, ?lang=): ?lang= wins over the browser's language, which chooses without it
MODES = {"en": ("zh-CN", "en"), "zh-CN": ("en-US", "zh-CN"), "browser-zh": ("zh-CN", None)}


def lang_of(mode: str) -> str:
    return MODES[mode][1] or "zh-CN"


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    s = ServerProcess(log_path=tmp_path_factory.mktemp("languages") / "server.log")
    yield s
    s.stop()


class LocalePages(BrowserContexts):
    """Contexts with the browser's language set (what navigator.languages says)."""

    def open(self, url: str, name: str, locale: str = "en-US") -> object:
        ctx = self.browser.new_context(viewport={"width": 1280, "height": 720}, locale=locale)
        return self._go(ctx, ctx.new_page(), name, url, None, 15_000)


@pytest.fixture
def pages(browser, tmp_path):
    p = LocalePages(browser, tmp_path)
    yield p
    p.close_checked()
    untranslated = [line for line in p.console if "i18n:" in line]
    assert not untranslated, untranslated


def page_url(server, page: str, mode: str, **query: str) -> str:
    lang = MODES[mode][1]
    return f"{server.base_url}/{page}.html?" + urllib.parse.urlencode({**query, **({"lang": lang} if lang else {})})


def has_key(page, selector: str, key: str) -> None:
    page.locator(f'{selector}[data-i18n="{key}"]').wait_for(state="attached", timeout=10_000)


@pytest.mark.parametrize("mode", list(MODES))
@in_chromium(120)
def test_teacher_and_terminal_in_each_language(live_server, pages, mode):
    locale, _ = MODES[mode]
    lang = lang_of(mode)
    room = f"{mode[:1]}{len(mode)}"  # user data without Latin words: the room's name is shown on both pages
    terminal = pages.open(page_url(live_server, "terminal", mode, room=room, token=live_server.token(
        room, "terminal", identity="c1", name="7-1")), "terminal", locale)
    teacher = pages.open(page_url(live_server, "teacher", mode, room=room, token=live_server.token(
        room, "teacher", identity="t", name="1")), "teacher", locale)

    has_key(terminal, "#lesson-status", "terminal.lesson.not_started")
    has_key(terminal, "#overlay-detail", "terminal.detail.waiting_teacher")
    has_key(teacher, "#message", "teacher.camera_ready")
    teacher.locator('.tile[data-identity="c1"]').wait_for(timeout=10_000)
    look(terminal, lang, f"terminal-{mode}")
    look(teacher, lang, f"teacher-{mode}")

    # in the lesson: the tile's controls, the classroom's hand, microphone and camera, the chat open
    teacher.locator("#lesson-start").click()
    has_key(teacher, "#lesson-state", "teacher.lesson.live")
    has_key(terminal, "#lesson-status", "terminal.lesson.live")
    terminal.locator("#hand").click()
    teacher.locator("#hands li").wait_for(timeout=5_000)
    terminal.locator("#chat-toggle").click()
    has_key(terminal, "#hand", "terminal.hand_lower_1")
    look(terminal, lang, f"terminal-{mode}-lesson")
    look(teacher, lang, f"teacher-{mode}-lesson")

    # the switch re-renders everything in place, the lesson going on
    other = "en" if lang == "zh-CN" else "zh-CN"
    for page, name in ((terminal, "terminal"), (teacher, "teacher")):
        page.locator(f'.lang-switch button[lang="{other}"]').click()
        page.wait_for_function(f"document.documentElement.lang === '{other}'")
        look(page, other, f"{name}-{mode}-switched")
    teacher.locator("#lesson-end").click()
    has_key(terminal, "#lesson-status", "terminal.lesson.ended")


# the library, answered by the test (the page only reads it): two lessons, one still recording, with chapters;
# no media file (the page says it cannot play it)
LESSON = {
    "id": "0001", "title": "8-3 · 2026", "teacher": "1", "school": "2", "subject": "3", "grade": "7",
    "started_at": "2026-03-02T08:00:00Z", "duration_s": 2700, "state": "ready", "media_url": "/api/library/0001/media",
    "thumbnail_url": None, "screen_url": None, "chapters": [{"t": 0, "title": "1", "thumbnail_url": None},
                                                               {"t": 600, "title": "2", "thumbnail_url": None}],
}
LIBRARY = {"total": 2, "lessons": [LESSON, {**LESSON, "id": "0002", "state": "recording"}]}


@pytest.mark.parametrize("mode", list(MODES))
@in_chromium(60)
def test_replay_in_each_language(live_server, pages, mode):
    locale, _ = MODES[mode]
    lang = lang_of(mode)
    ctx_page = pages.open("about:blank", "replay", locale)
    ctx_page.route("**/api/library?*", lambda r: r.fulfill(json=LIBRARY))
    ctx_page.route("**/api/library/0001", lambda r: r.fulfill(json=LESSON))
    ctx_page.route("**/api/library/0001/media", lambda r: r.fulfill(status=404))
    ctx_page.goto(page_url(live_server, "replay", mode))
    has_key(ctx_page, "#list-status", "replay.count_other")
    look(ctx_page, lang, f"replay-{mode}")
    ctx_page.locator(".lesson-card .open").first.click()
    has_key(ctx_page, "#resume-note", "replay.unplayable")
    look(ctx_page, lang, f"replay-{mode}-lesson")


@in_chromium(60)
def test_the_switch_changes_the_language_in_place_and_is_remembered(live_server, pages):
    room = "s1"
    url = page_url(live_server, "terminal", "browser-zh", room=room, token=live_server.token(room, "terminal"))
    page = pages.open(url, "terminal", "zh-CN")
    has_key(page, "#lesson-status", "terminal.lesson.not_started")
    assert page.locator("#overlay-title").text_content() == catalogue("zh-CN", "terminal")["terminal.state.waiting"]
    page.locator('.lang-switch button[lang="en"]').click()
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert page.locator("#overlay-title").text_content() == "Waiting for the lesson…"
    assert page.locator("#lesson-status").text_content() == "The lesson has not started yet"
    assert page.locator('.lang-switch button[lang="en"]').get_attribute("aria-pressed") == "true"
    assert "lang=en" in page.url
    # remembered in this browser: the page without ?lang= stays English, ?lang= still wins
    page.goto(url)
    has_key(page, "#lesson-status", "terminal.lesson.not_started")
    assert page.evaluate("document.documentElement.lang") == "en"
    page.goto(url + "&lang=zh-CN")
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")

// The lesson's chat panel, shared by the teacher and terminal pages. Names and text are user data: they are
// only ever put into the page as text (textContent), never as HTML.
import { msg, setText } from "./i18n.js";
import { lessonErrorText } from "./lesson-socket.js";

const SHOWN = 200;

export function renderChatEntry(entry, youIdentity) {
  const li = document.createElement("li");
  li.className = "chat-entry";
  li.dataset.role = String(entry.role || "");
  if (entry.from === youIdentity) li.classList.add("mine");
  const who = document.createElement("span");
  who.className = "chat-name";
  who.textContent = String(entry.name || entry.from || "?");
  const text = document.createElement("span");
  text.className = "chat-text";
  text.textContent = String(entry.text ?? "");
  li.append(who, text);
  return li;
}

/**
 * Wire a chat list and form to a LessonSocket.
 * @param {import("./lesson-socket.js").LessonSocket} lesson
 * @param {{list: HTMLElement, form: HTMLFormElement, input: HTMLInputElement, note?: HTMLElement}} els
 */
export function attachChat(lesson, { list, form, input, note }) {
  const seen = new Set();
  const add = (entry) => {
    if (entry.id != null && seen.has(entry.id)) return;
    if (entry.id != null) seen.add(entry.id);
    list.append(renderChatEntry(entry, lesson.identity));
    while (list.children.length > SHOWN) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  };
  lesson.addEventListener("connection", (e) => {
    if (!e.detail.connected) return;
    for (const entry of lesson.state.chat) add(entry);  // history for a late joiner (deduplicated on resume)
  });
  lesson.addEventListener("chat", (e) => add(e.detail));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    try {
      await lesson.request("chat", { text: text.slice(0, 1000) });
      input.value = "";
      if (note) setText(note, "");
    } catch (err) {
      if (note) setText(note, msg("common.chat.not_sent", { reason: lessonErrorText(err) }));
    }
  });
}

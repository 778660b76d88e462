// The playground's memory in this browser (localStorage): the mode, each mode's parameters and
// the chat conversations, one per endpoint selection, so that a reload picks up where the user
// was. Nothing is written before the user does something in the playground, and Log out forgets
// it all. Only what the user typed and the answers are kept: never the
// session, which the page's scripts cannot read anyway.

const KEY = "modelport.playground";
/** Conversations kept (the most recently used): older ones are forgotten. */
const MAX_CONVERSATIONS = 20;

function read() {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || "null");
    return v && typeof v === "object" ? v : {};
  } catch { return {}; }
}

/** Image parts of a message become a short text: a data URL may weigh megabytes, more than a
 * page's storage holds. */
function withoutImages(messages) {
  return messages.map((m) => (Array.isArray(m.content)
    ? { ...m, content: m.content.map((p) => (p.type === "image_url" ? { type: "text", text: "[image not kept]" } : p)) }
    : m));
}

function write(state) {
  try {
    localStorage.setItem(KEY, JSON.stringify(state));
  } catch {
    // over the quota: keep the settings and the latest conversation only, without images
    const convs = Object.entries(state.conversations || {}).sort((a, b) => (b[1].at || 0) - (a[1].at || 0)).slice(0, 1)
      .map(([k, c]) => [k, { ...c, histories: Object.fromEntries(Object.entries(c.histories || {}).map(([n, ms]) => [n, withoutImages(ms)])) }]);
    try { localStorage.setItem(KEY, JSON.stringify({ ...state, conversations: Object.fromEntries(convs) })); } catch { /* nothing to keep */ }
  }
}

/** The kept value of `key` (mode, or a mode's parameters), undefined when there is none. */
export function recall(key) {
  return read()[key];
}

/** Keep `value` under `key` (the user did something: from now on the playground remembers). */
export function keep(key, value) {
  const state = read();
  state[key] = value;
  write(state);
}

/** The conversation of an endpoint selection: {endpoint name: [messages]} (empty when none). */
export function recallConversation(selection) {
  const c = (read().conversations || {})[selection];
  return c && c.histories && typeof c.histories === "object" ? c.histories : {};
}

/** Keep the conversation of a selection (an empty one is forgotten). */
export function keepConversation(selection, histories) {
  const state = read();
  const convs = state.conversations || {};
  const empty = !Object.values(histories).some((ms) => ms.length);
  if (empty) {
    if (!(selection in convs)) return;
    delete convs[selection];
  } else convs[selection] = { at: Date.now(), histories };
  const kept = Object.entries(convs).sort((a, b) => (b[1].at || 0) - (a[1].at || 0)).slice(0, MAX_CONVERSATIONS);
  state.conversations = Object.fromEntries(kept);
  write(state);
}

/** Forget everything (Log out). */
export function forgetPlayground() {
  try { localStorage.removeItem(KEY); } catch { /* storage off */ }
}

// Log out forgets the conversations: the button is in the page's header (app.js signs out).
const logout = document.getElementById("logout");
if (logout) logout.addEventListener("click", forgetPlayground);

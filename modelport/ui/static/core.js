// The console's shared helpers: elements (h, field, select), the API client (api, rawFetch:
// the session cookie and its CSRF value), the endpoint classification every page shows, and the
// page state (ui) with every(), which stops polling when the page changes. No page lives here.

const CSRF_COOKIE = "modelport_csrf";
export const SESSION = "/api/2.0/modelport/session";
/** The page's shared state: the view the current page draws into (each render gets a fresh one:
 * a page still awaiting the API after the user moved on appends to its own detached view, never
 * to the next page), what to stop when the page changes, and whether the user is signed in
 * (null: not asked yet). */
export const ui = { view: document.getElementById("main"), cleanups: [], signedIn: null };

// ---------- helpers ----------

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    // Through the CSSOM: the Content-Security-Policy (style-src 'self') refuses style attributes.
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let idSeq = 0;
export const uid = (p = "f") => `${p}-${++idSeq}`;

/** A labelled input: returns {wrap, input}. */
export function field(labelText, input, hint) {
  if (!input.id) input.id = uid();
  const wrap = h("div", {}, h("label", { for: input.id }, labelText), input);
  if (hint) {
    const hid = uid("hint");
    input.setAttribute("aria-describedby", hid);
    wrap.append(h("div", { class: "muted", id: hid }, hint));
  }
  return { wrap, input };
}

export function select(options, value) {
  const s = h("select");
  for (const o of options) {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    s.append(h("option", { value: v }, label));
  }
  if (value !== undefined) s.value = value;
  return s;
}

export function toast(text) {
  const t = h("div", {}, text);
  document.getElementById("toast").append(t);
  setTimeout(() => t.remove(), 4000);
}

export function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err));
}

export function fmtTime(ms) {
  if (!ms) return "–";
  return new Date(Number(ms)).toLocaleString();
}

export function pretty(v) {
  if (typeof v === "string") {
    try { return JSON.stringify(JSON.parse(v), null, 2); } catch { return v; }
  }
  return JSON.stringify(v, null, 2);
}

export function sqlString(s) {
  return "'" + String(s).replace(/'/g, "''") + "'";
}

/** Arrow keys move between the tabs of a tablist (and select them), as WAI-ARIA describes. */
export function arrowTabs(buttons) {
  buttons.forEach((b, i) => b.addEventListener("keydown", (ev) => {
    const step = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    ev.preventDefault();
    const next = buttons[(i + step + buttons.length) % buttons.length];
    next.focus();
    next.click();
  }));
}

// ---------- API ----------

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Signed in = the server set the HttpOnly session cookie (POST /api/2.0/modelport/session); this
// script never sees the session itself, only the CSRF value it must echo on writes.

export function csrfToken() {
  const found = document.cookie.split(";").map((c) => c.trim()).find((c) => c.startsWith(`${CSRF_COOKIE}=`));
  return found ? decodeURIComponent(found.slice(CSRF_COOKIE.length + 1)) : "";
}

export async function rawFetch(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...headers }, signal, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    ui.signedIn = false;
    sessionStorage.setItem("modelport.loginMessage", await errorMessage(res));
    location.hash = "#/login";
    throw new ApiError(401, "UNAUTHENTICATED", "Your session has ended: sign in again.");
  }
  if (!res.ok) {
    const msg = await errorMessage(res);
    let code = "";
    throw Object.assign(new ApiError(res.status, code, msg));
  }
  return res;
}

export async function errorMessage(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (body.message) return body.message;
    if (body.error && body.error.message) return body.error.message;
  } catch { /* not JSON */ }
  return text || `${res.status} ${res.statusText}`;
}

export async function api(path, opts) {
  const res = await rawFetch(path, opts);
  const text = await res.text();
  if (!text) return {};
  try { return JSON.parse(text); } catch { return text; }
}

export async function apiText(path) {
  return (await rawFetch(path)).text();
}

export const EP = "/api/2.0/serving-endpoints";
export const enc = encodeURIComponent;

// ---------- endpoint classification ----------

export function stateOf(ep) {
  const s = ep.state || {};
  if (s.config_update === "IN_PROGRESS") return ["updating", "Updating"];
  if (s.config_update === "UPDATE_FAILED") return s.ready === "READY" ? ["failed", "Ready, update failed"] : ["failed", "Failed"];
  if (s.config_update === "UPDATE_CANCELED") return s.ready === "READY" ? ["updating", "Ready, update canceled"] : ["notready", "Update canceled"];
  if (s.ready === "READY") return ["ready", "Ready"];
  return ["notready", "Not ready"];
}

export function stateBadge(ep) {
  const [cls, text] = stateOf(ep);
  return h("span", { class: `badge state-${cls}`, "data-state": cls }, text);
}

export function entitiesOf(ep) {
  const cfg = ep.config || ep.pending_config || {};
  return cfg.served_entities || cfg.served_models || [];
}

export function entityDesc(e) {
  if (e.external_model) return `${e.external_model.provider} · ${e.external_model.name}`;
  if (e.foundation_model) return `${e.foundation_model.display_name || e.entity_name} (foundation)`;
  if (e.entity_name) return `${e.entity_name} v${e.entity_version}`;
  if (e.model_name) return `${e.model_name} v${e.model_version}`;
  return "";
}

/** The task of an endpoint: the API's `task`, else guessed from its served entities. */
export function taskOf(ep) {
  if (ep.task) return ep.task;
  for (const e of entitiesOf(ep)) {
    if (e.external_model && e.external_model.task) return e.external_model.task;
    const n = (e.entity_name || "").toLowerCase();
    if (n.startsWith("system.ai.")) return /minilm|embed|bge|gte/.test(n) ? "llm/v1/embeddings" : "llm/v1/chat";
  }
  return null;
}

const trafficCache = new Map();

/** The traffic split: the listing has none, so it comes from the detail (cached per update). */
export function trafficText(ep) {
  let routes = ((ep.config || {}).traffic_config || {}).routes || [];
  if (!routes.length) {
    const ents = entitiesOf(ep);
    if (ents.length === 1) return `${ents[0].name} 100%`;
    const cached = trafficCache.get(ep.name);
    if (!cached || cached.at !== ep.last_updated_timestamp) {
      trafficCache.set(ep.name, { at: ep.last_updated_timestamp, routes: null });
      api(`${EP}/${enc(ep.name)}`).then((d) => {
        trafficCache.set(ep.name, { at: ep.last_updated_timestamp, routes: ((d.config || {}).traffic_config || {}).routes || [] });
        const cell = document.querySelector(`tr[data-endpoint="${CSS.escape(ep.name)}"] td[data-label="Traffic"]`);
        if (cell) cell.textContent = trafficText(ep);
      }).catch(() => {});
      return "…";
    }
    routes = cached.routes || [];
  }
  if (!routes.length) return "–";
  return routes.map((r) => `${r.served_entity_name || r.served_model_name} ${r.traffic_percentage}%`).join(", ");
}


export function every(ms, fn, el) {
  let stopped = false;
  let timer;
  const tick = async () => {
    if (stopped || !el.isConnected) return;
    try { await fn(); } catch (err) { console.warn(err); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  ui.cleanups.push(() => { stopped = true; clearTimeout(timer); });
}

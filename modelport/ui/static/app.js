// modelport serving console and AI playground: hand-written, no build step.
// Every page calls the same REST API as any client, with the token the user logged in with.
// The feature-table pages live in features.js, which imports the helpers exported here.

import { endpointFeatures, featureTablePage, featureTablesPage } from "./features.js";
import { jobPage, jobsPage, sqlBox } from "./jobs.js";
import { endpointMonitor, monitorPage, monitorsPage } from "./monitors.js";
import { endpointRollouts } from "./rollouts.js";
import { agentPlayground, imageAttach, isAgentTask, userContent } from "./agents.js";

const CSRF_COOKIE = "modelport_csrf";
export const SESSION = "/api/2.0/modelport/session";
// MLflow's own UI routes (its run links are <server>/#/experiments/...): shown by /mlflow/.
const MLFLOW_HASH = /^#\/(experiments|models|compare-runs|compare-experiments|metric|prompts|logged-models)(\/|\?|$)/;
const root = document.getElementById("main");
let cleanups = [];
/** Each render gets a fresh view: a page still awaiting the API after the user moved on
 * appends to its own detached view, never to the next page. */
let currentView = root;

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

function pretty(v) {
  if (typeof v === "string") {
    try { return JSON.stringify(JSON.parse(v), null, 2); } catch { return v; }
  }
  return JSON.stringify(v, null, 2);
}

function sqlString(s) {
  return "'" + String(s).replace(/'/g, "''") + "'";
}

/** Arrow keys move between the tabs of a tablist (and select them), as WAI-ARIA describes. */
function arrowTabs(buttons) {
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
let signedIn = null; // null: not asked yet

function csrfToken() {
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
    signedIn = false;
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

async function errorMessage(res) {
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

async function apiText(path) {
  return (await rawFetch(path)).text();
}

const EP = "/api/2.0/serving-endpoints";
export const enc = encodeURIComponent;

// ---------- endpoint classification ----------

function stateOf(ep) {
  const s = ep.state || {};
  if (s.config_update === "IN_PROGRESS") return ["updating", "Updating"];
  if (s.config_update === "UPDATE_FAILED") return s.ready === "READY" ? ["failed", "Ready, update failed"] : ["failed", "Failed"];
  if (s.config_update === "UPDATE_CANCELED") return s.ready === "READY" ? ["updating", "Ready, update canceled"] : ["notready", "Update canceled"];
  if (s.ready === "READY") return ["ready", "Ready"];
  return ["notready", "Not ready"];
}

function stateBadge(ep) {
  const [cls, text] = stateOf(ep);
  return h("span", { class: `badge state-${cls}`, "data-state": cls }, text);
}

function entitiesOf(ep) {
  const cfg = ep.config || ep.pending_config || {};
  return cfg.served_entities || cfg.served_models || [];
}

function entityDesc(e) {
  if (e.external_model) return `${e.external_model.provider} · ${e.external_model.name}`;
  if (e.foundation_model) return `${e.foundation_model.display_name || e.entity_name} (foundation)`;
  if (e.entity_name) return `${e.entity_name} v${e.entity_version}`;
  if (e.model_name) return `${e.model_name} v${e.model_version}`;
  return "";
}

/** The task of an endpoint: the API's `task`, else guessed from its served entities. */
function taskOf(ep) {
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
function trafficText(ep) {
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

// ---------- router ----------

const routes = [
  [/^#\/login$/, loginPage],
  [/^#\/endpoints$/, endpointsPage],
  [/^#\/endpoints\/([^/]+)$/, endpointPage],
  [/^#\/create$/, createPage],
  [/^#\/playground$/, playgroundPage],
  [/^#\/tables$/, tablesPage],
  [/^#\/tables\/([^/]+)$/, tablesPage],
  [/^#\/audit$/, auditPage],
  [/^#\/features$/, () => featureTablesPage(currentView)],
  [/^#\/features\/([^/]+)$/, (name) => featureTablePage(currentView, name)],
  [/^#\/jobs$/, () => jobsPage(currentView)],
  [/^#\/jobs\/([^/]+)$/, (id) => jobPage(currentView, id)],
  [/^#\/monitors$/, () => monitorsPage(currentView)],
  [/^#\/monitors\/([^/]+)$/, (table) => monitorPage(currentView, table)],
];

// Where to go instead of this UI: MLflow's UI for one of its links, or after signing in there.
function mlflowTarget() {
  if (MLFLOW_HASH.test(location.hash)) return `/mlflow/${location.hash}`;
  const bare = !location.hash || location.hash === "#/";
  if (bare && new URLSearchParams(location.search).get("next") === "/mlflow/") return `/mlflow/${location.hash}`;
  return null;
}

async function render() {
  for (const c of cleanups) c();
  cleanups = [];
  let hash = location.hash || "#/endpoints";
  if (signedIn === null) {
    const res = await fetch(SESSION, { credentials: "same-origin" });
    signedIn = res.ok;
    // a session that has expired or was revoked (its cookies are still here): say why
    if (res.status === 401 && csrfToken()) sessionStorage.setItem("modelport.loginMessage", await errorMessage(res));
  }
  const mlflow = mlflowTarget();
  if (mlflow && signedIn) {
    location.replace(mlflow);
    return;
  }
  if (!signedIn && hash !== "#/login") {
    if (mlflow) sessionStorage.setItem("modelport.next", mlflow);
    location.hash = "#/login";
    return;
  }
  document.getElementById("nav").hidden = !signedIn;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (hash.startsWith(`#/${a.dataset.nav}`)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (m) {
      const view = h("div", { class: "view" });
      root.replaceChildren(view);
      currentView = view;
      try {
        await page(...m.slice(1).map(decodeURIComponent));
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) view.append(errorBox(err));
      }
      return;
    }
  }
  location.hash = "#/endpoints";
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
  cleanups.push(() => { stopped = true; clearTimeout(timer); });
}

// ---------- login ----------

function loginPage() {
  const main = currentView;
  document.title = "Log in · modelport";
  const input = h("input", { type: "password", id: "token", autocomplete: "current-password", required: true });
  const err = h("div");
  const pending = sessionStorage.getItem("modelport.loginMessage");
  if (pending) {
    err.append(errorBox(pending));
    sessionStorage.removeItem("modelport.loginMessage");
  }
  const form = h("form", { class: "card login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to modelport"),
    field("Access token", input, "A personal access token (dapi…) or the admin token.").wrap,
    err,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Log in")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const value = input.value.trim();
    try {
      const res = await fetch(SESSION, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: value }),
      });
      if (!res.ok) throw new Error(await errorMessage(res));
      signedIn = true;
      const next = sessionStorage.getItem("modelport.next");
      sessionStorage.removeItem("modelport.next");
      if (next && next.startsWith("/mlflow/")) location.assign(next);
      else location.hash = "#/endpoints";
    } catch (e) {
      err.append(errorBox(e));
    }
  });
  main.append(form);
  input.focus();
}

// ---------- endpoints list ----------

async function endpointsPage() {
  const main = currentView;
  document.title = "Endpoints · modelport";
  const search = h("input", { type: "search", id: "ep-search", placeholder: "name, model, creator" });
  const stateSel = select([["", "All states"], ["ready", "Ready"], ["updating", "Updating"], ["failed", "Failed"], ["notready", "Not ready"]]);
  stateSel.id = "ep-state";
  const body = h("tbody");
  const count = h("p", { class: "muted", "aria-live": "polite" });
  const err = h("div");
  let all = [];
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const st = stateSel.value;
    const rows = all.filter((ep) => {
      if (st && stateOf(ep)[0] !== st) return false;
      if (!q) return true;
      const hay = [ep.name, ep.creator, ...entitiesOf(ep).map((e) => `${e.name} ${entityDesc(e)}`)].join(" ").toLowerCase();
      return hay.includes(q);
    });
    count.textContent = `${rows.length} of ${all.length} endpoints`;
    body.replaceChildren(...rows.map((ep) => h("tr", { "data-endpoint": ep.name },
      h("td", { "data-label": "Name" }, h("a", { href: `#/endpoints/${enc(ep.name)}` }, ep.name)),
      h("td", { "data-label": "State" }, stateBadge(ep)),
      h("td", { "data-label": "Served entities" }, entitiesOf(ep).map((e) => h("div", {}, h("strong", {}, e.name || ""), " ", h("span", { class: "muted" }, entityDesc(e))))),
      h("td", { "data-label": "Traffic" }, trafficText(ep)),
      h("td", { "data-label": "Creator" }, ep.creator || "–"),
      h("td", { "data-label": "Last update" }, fmtTime(ep.last_updated_timestamp)))));
  };
  search.addEventListener("input", draw);
  stateSel.addEventListener("change", draw);
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Serving endpoints"), h("a", { href: "#/create", class: "button" }, "Create endpoint")),
    h("section", { class: "card" },
      h("div", { class: "row" }, field("Search", search).wrap, field("State", stateSel).wrap),
      count, err,
      h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "endpoints" },
        h("thead", {}, h("tr", {}, ["Name", "State", "Served entities", "Traffic", "Creator", "Last update"].map((t) => h("th", { scope: "col" }, t)))),
        body))));
  every(3000, async () => {
    try {
      all = ((await api(EP)).endpoints || []).sort((a, b) => a.name.localeCompare(b.name));
      err.replaceChildren();
      draw();
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
  }, main);
}

// ---------- endpoint page ----------

function cleanEntity(e) {
  const out = { ...e };
  for (const k of ["state", "creator", "creation_timestamp", "foundation_model", "entity_version_display"]) delete out[k];
  if (out.external_model) out.external_model = JSON.parse(JSON.stringify(out.external_model));
  return out;
}

function editableConfig(detail) {
  const cfg = detail.config || detail.pending_config || {};
  return {
    served_entities: (cfg.served_entities || []).map(cleanEntity),
    traffic_config: { routes: ((cfg.traffic_config || {}).routes || []).map((r) => ({ served_entity_name: r.served_entity_name || r.served_model_name, traffic_percentage: r.traffic_percentage })) },
  };
}

function entityName(e) {
  if (e.name) return e.name;
  if (e.external_model) return e.external_model.name;
  if (e.entity_name) return `${e.entity_name.split(".").pop()}-${e.entity_version}`;
  return "";
}

/** Client-side checks before PUT .../config; returns a list of problems. */
export function validateConfig(cfg) {
  const problems = [];
  if (!cfg || typeof cfg !== "object") return ["The config must be a JSON object."];
  const ents = cfg.served_entities;
  if (!Array.isArray(ents) || !ents.length) return ["served_entities must list at least one served entity."];
  const names = ents.map(entityName);
  const seen = new Set();
  ents.forEach((e, i) => {
    if (!e.entity_name && !e.external_model) problems.push(`served_entities[${i}] needs entity_name (a registered or foundation model) or external_model.`);
    if (e.entity_name && !e.entity_version && !e.entity_name.startsWith("system.ai.")) problems.push(`served_entities[${i}] (${e.entity_name}) needs entity_version.`);
    if (seen.has(names[i])) problems.push(`Served entity name '${names[i]}' is used twice.`);
    seen.add(names[i]);
  });
  const routes = ((cfg.traffic_config || {}).routes) || [];
  if (routes.length) {
    let total = 0;
    for (const r of routes) {
      if (!seen.has(r.served_entity_name)) problems.push(`Traffic route '${r.served_entity_name}' names no served entity (have: ${[...seen].join(", ")}).`);
      const p = Number(r.traffic_percentage);
      if (!Number.isInteger(p) || p < 0 || p > 100) problems.push(`Traffic for '${r.served_entity_name}' must be a whole number from 0 to 100.`);
      total += p;
    }
    if (total !== 100) problems.push(`Traffic must add up to 100% (now ${total}%).`);
  } else if (ents.length > 1) {
    problems.push("With several served entities, traffic_config.routes must split the traffic.");
  }
  return problems;
}

/** What the page offers to change. A system endpoint (the server marks it `modelport_system`)
 * refuses config updates, permission changes and deletion; its AI gateway and tags may change. */
function allowed(detail) {
  const manage = detail.permission_level === "CAN_MANAGE";
  return { manage, reconfigure: manage && !detail.modelport_system };
}

async function endpointPage(name) {
  const main = currentView;
  document.title = `${name} · modelport`;
  const url = `${EP}/${enc(name)}`;
  let detail = await api(url);
  const header = h("div");
  const progress = h("div", { "aria-live": "polite" });
  const configBox = h("div");
  const gatewayBox = h("div");
  let lastVersionKey = "";
  let lastGatewayKey = JSON.stringify(detail.ai_gateway || {});
  let cacheCounts = null; // the response cache's lookups, from the metrics the charts poll
  let updateLogs = () => {};
  let updateSnippets = () => {};
  let updateRollouts = () => {};

  const drawHeader = () => {
    header.replaceChildren(
      h("p", {}, h("a", { href: "#/endpoints" }, "← Endpoints")),
      h("h1", {}, name, " ", stateBadge(detail)),
      h("p", { class: "muted" }, `Creator ${detail.creator || "–"} · last update ${fmtTime(detail.last_updated_timestamp)} · your permission ${detail.permission_level || "–"}${detail.task ? ` · task ${detail.task}` : ""}`),
      detail.modelport_system ? h("p", { class: "notice", id: "system-endpoint" }, "A system endpoint, managed by modelport: its configuration, permissions and existence cannot be changed. To configure this model, create an endpoint of your own that serves it.") : "");
  };
  const drawProgress = () => {
    progress.replaceChildren();
    const st = detail.state || {};
    const pend = detail.pending_config;
    if (st.config_update === "IN_PROGRESS") {
      const cancel = allowed(detail).reconfigure ? h("button", { type: "button", class: "danger", id: "cancel-update" }, "Cancel update") : h("span");
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try { await api(`${url}/cancel-update`, { method: "POST", body: {} }); toast("Update canceled"); await refresh(); } catch (e) { progress.append(errorBox(e)); cancel.disabled = false; }
      });
      progress.append(h("div", { class: "notice", id: "update-progress" },
        h("strong", {}, `Updating to config version ${pend ? pend.config_version : "?"}…`),
        h("ul", {}, ((pend || {}).served_entities || []).map((e) => h("li", {}, `${e.name}: ${(e.state || {}).deployment || ""} ${(e.state || {}).deployment_state_message || ""}`))),
        cancel));
    } else if (pend && (st.config_update === "UPDATE_FAILED" || st.config_update === "UPDATE_CANCELED")) {
      progress.append(h("div", { class: st.config_update === "UPDATE_FAILED" ? "error" : "notice", id: "update-progress" },
        h("strong", {}, st.config_update === "UPDATE_FAILED" ? `Update to config version ${pend.config_version} failed` : `Update to config version ${pend.config_version} was canceled`),
        h("ul", {}, (pend.served_entities || []).map((e) => h("li", {}, `${e.name}: ${(e.state || {}).deployment_state_message || (e.state || {}).deployment || ""}`)))));
    }
  };
  const refresh = async () => {
    detail = await api(url);
    drawHeader();
    drawProgress();
    updateRollouts(detail);
    const key = `${(detail.config || {}).config_version}/${detail.state.config_update}`;
    const gatewayKey = JSON.stringify(detail.ai_gateway || {});
    if (key !== lastVersionKey) {
      lastVersionKey = key;
      drawConfig(configBox, detail, url, refresh);
      drawGateway(gatewayBox, detail, url, refresh, cacheCounts);
      updateLogs(detail);
      updateSnippets();
    } else if (gatewayKey !== lastGatewayKey) {
      // PUT .../ai-gateway changes it without a new config version
      drawGateway(gatewayBox, detail, url, refresh, cacheCounts);
    }
    lastGatewayKey = gatewayKey;
  };
  drawHeader();
  drawProgress();
  const charts = h("section", { class: "card", "aria-labelledby": "charts-title" }, h("h2", { id: "charts-title" }, "Live metrics"));
  const logs = h("section", { class: "card", "aria-labelledby": "logs-title" }, h("h2", { id: "logs-title" }, "Logs"));
  const openapi = h("section", { class: "card", "aria-labelledby": "openapi-title" }, h("h2", { id: "openapi-title" }, "OpenAPI"));
  const snippets = h("section", { class: "card", "aria-labelledby": "snip-title" }, h("h2", { id: "snip-title" }, "Query this endpoint"));
  const perms = h("section", { class: "card", "aria-labelledby": "perm-title" }, h("h2", { id: "perm-title" }, "Permissions"));
  const features = h("section", { class: "card", "aria-labelledby": "features-title", id: "endpoint-features", hidden: true });
  const monitorBox = h("section", { class: "card", "aria-labelledby": "monitor-title", id: "endpoint-monitor", hidden: true });
  const rollouts = h("div", { id: "endpoint-rollouts" });
  const danger = h("section", { class: "card", "aria-labelledby": "delete-title" }, h("h2", { id: "delete-title" }, "Delete"));
  main.append(header, progress,
    h("section", { class: "card", "aria-labelledby": "cfg-title" }, h("h2", { id: "cfg-title" }, "Configuration"), configBox),
    rollouts,
    features,
    monitorBox,
    charts,
    h("div", { class: "grid2" }, logs, snippets),
    h("section", { class: "card", "aria-labelledby": "gw-title" }, h("h2", { id: "gw-title" }, "AI gateway"), gatewayBox),
    perms, openapi, allowed(detail).reconfigure ? danger : "");
  lastVersionKey = `${(detail.config || {}).config_version}/${detail.state.config_update}`;
  drawConfig(configBox, detail, url, refresh);
  drawGateway(gatewayBox, detail, url, refresh, cacheCounts);
  setupCharts(charts, url, (s) => {
    cacheCounts = s.cache;
    const out = gatewayBox.querySelector("#cache-hit-rate");
    if (out) out.textContent = cacheText(cacheCounts);
  });
  updateLogs = setupLogs(logs, detail, url);
  setupOpenapi(openapi, url);
  updateSnippets = setupSnippets(snippets, detail, url);
  setupPermissions(perms, detail);
  endpointFeatures(features, name);
  endpointMonitor(monitorBox, detail);
  updateRollouts = endpointRollouts(rollouts, detail);
  const del = h("button", { type: "button", class: "danger", id: "delete-endpoint" }, `Delete ${name}`);
  del.addEventListener("click", async () => {
    if (!confirm(`Delete endpoint ${name}? Queries to it will fail.`)) return;
    try { await api(url, { method: "DELETE" }); toast(`Deleted ${name}`); location.hash = "#/endpoints"; } catch (e) { danger.append(errorBox(e)); }
  });
  danger.append(h("p", { class: "muted" }, "Stops its replicas and removes the endpoint."), del);
  every(2000, refresh, main);
}

function drawConfig(box, detail, url, refresh) {
  const cfg = editableConfig(detail);
  const ents = cfg.served_entities;
  const err = h("div", { "aria-live": "assertive" });
  box.replaceChildren();
  box.append(h("p", { class: "muted" }, `Config version ${(detail.config || {}).config_version ?? "–"}`));
  const served = ((detail.config || detail.pending_config || {}).served_entities) || [];
  const current = {};
  for (const r of cfg.traffic_config.routes) current[r.served_entity_name] = r.traffic_percentage;
  const inputs = {};
  const editable = allowed(detail).reconfigure;
  const tbody = h("tbody", {}, served.map((e) => {
    const inp = h("input", { type: "number", min: 0, max: 100, step: 1, value: current[e.name] ?? 0, id: uid("traffic"), "data-entity": e.name, style: "max-width:110px" });
    if (editable) inputs[e.name] = inp;
    const st = e.state || {};
    return h("tr", {},
      h("td", { "data-label": "Served entity" }, h("strong", {}, e.name)),
      h("td", { "data-label": "Model" }, entityDesc(e)),
      h("td", { "data-label": "Size" }, [e.workload_size, e.scale_to_zero_enabled ? "scale to zero" : ""].filter(Boolean).join(", ") || "–"),
      h("td", { "data-label": "Deployment" }, st.deployment || "–", st.deployment_state_message && st.deployment_state_message !== "Ready" ? h("div", { class: "muted" }, st.deployment_state_message) : null),
      h("td", { "data-label": "Traffic %" }, editable ? [h("label", { for: inp.id, class: "sr-only" }, `Traffic for ${e.name} (%)`), inp] : `${current[e.name] ?? (served.length === 1 ? 100 : 0)}%`));
  }));
  const totalOut = h("span", { class: "muted", id: "traffic-total" });
  const sumTraffic = () => Object.values(inputs).reduce((a, i) => a + Number(i.value || 0), 0);
  const showTotal = () => { totalOut.textContent = `Total ${sumTraffic()}%`; };
  Object.values(inputs).forEach((i) => i.addEventListener("input", showTotal));
  showTotal();
  const saveTraffic = h("button", { type: "button", id: "save-traffic" }, "Save traffic");
  const send = async (newCfg) => {
    err.replaceChildren();
    const problems = validateConfig(newCfg);
    if (problems.length) {
      err.append(h("div", { class: "error", role: "alert" }, h("strong", {}, "Not sent: "), h("ul", {}, problems.map((p) => h("li", {}, p)))));
      return false;
    }
    try {
      await api(`${url}/config`, { method: "PUT", body: newCfg });
      toast("Config update started");
      await refresh();
      return true;
    } catch (e) {
      err.append(errorBox(e));
      return false;
    }
  };
  saveTraffic.addEventListener("click", () => {
    const newCfg = editableConfig(detail);
    newCfg.traffic_config = { routes: served.map((e) => ({ served_entity_name: e.name, traffic_percentage: Number(inputs[e.name].value) })) };
    send(newCfg);
  });
  const text = h("textarea", { id: uid("cfg"), rows: 14, spellcheck: "false" });
  text.value = JSON.stringify(cfg, null, 2);
  const saveJson = h("button", { type: "button", id: "save-config" }, "Validate and update");
  saveJson.addEventListener("click", () => {
    let parsed;
    try { parsed = JSON.parse(text.value); } catch (e) {
      err.replaceChildren(h("div", { class: "error", role: "alert" }, `Not sent: the config is not valid JSON (${e.message}).`));
      return;
    }
    send(parsed);
  });
  const busy = detail.state.config_update === "IN_PROGRESS";
  if (busy) { saveTraffic.disabled = true; saveJson.disabled = true; }
  const table = h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "served-entities" },
    h("thead", {}, h("tr", {}, ["Served entity", "Model", "Size", "Deployment", "Traffic %"].map((t) => h("th", { scope: "col" }, t)))), tbody));
  if (!editable) {
    box.append(table);
    return;
  }
  box.append(table,
    h("div", { class: "actions" }, totalOut, saveTraffic),
    h("details", { id: "config-editor" }, h("summary", {}, "Edit the whole config (JSON: served_entities and traffic_config)"),
      h("label", { for: text.id }, "Config JSON"), text, h("div", { class: "actions" }, saveJson)),
    err);
}

function fmtBytes(n) {
  if (n >= 1048576 && n % 1048576 === 0) return `${n / 1048576} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

/** An enabled ai_gateway.response_cache in words (the server fills in its defaults). */
function describeCache(rc) {
  const parts = [
    rc.scope === "endpoint" ? "shared by every caller" : "per user",
    `TTL ${rc.ttl_seconds} s`,
    rc.semantic_similarity !== undefined && rc.semantic_similarity !== null ? `exact and semantic matches (similarity ≥ ${rc.semantic_similarity})` : "exact matches",
    `answers up to ${fmtBytes(rc.max_entry_bytes)}`,
  ];
  if (rc.cache_non_deterministic) parts.push("non-deterministic requests too");
  return parts.join(", ");
}

function drawGateway(box, detail, url, refresh, cacheCounts) {
  const gw = detail.ai_gateway || {};
  const helpId = uid("gw-help");
  const text = h("textarea", { id: uid("gw"), rows: 10, spellcheck: "false", "aria-describedby": helpId });
  text.value = JSON.stringify(gw, null, 2);
  const err = h("div");
  const save = h("button", { type: "button", class: "secondary", id: "save-gateway" }, "Save AI gateway");
  save.addEventListener("click", async () => {
    err.replaceChildren();
    let body;
    try { body = JSON.parse(text.value || "{}"); } catch (e) { err.append(errorBox(`Not sent: not valid JSON (${e.message}).`)); return; }
    try { await api(`${url}/ai-gateway`, { method: "PUT", body }); toast("AI gateway saved"); await refresh(); } catch (e) { err.append(errorBox(e)); }
  });
  const itc = gw.inference_table_config;
  const summary = [];
  if (itc && itc.enabled) summary.push(h("li", {}, "Inference table ", h("a", { href: `#/tables/${enc(detail.name)}` }, `${itc.catalog_name}.${itc.schema_name}.${itc.table_name_prefix}_payload`)));
  if ((gw.usage_tracking_config || {}).enabled) summary.push(h("li", {}, "Usage tracking on"));
  if ((gw.rate_limits || []).length) summary.push(h("li", {}, `${gw.rate_limits.length} rate limit(s): `, gw.rate_limits.map((r) => `${r.calls ?? r.tokens} ${r.calls !== undefined ? "calls" : "tokens"}/${r.renewal_period} per ${r.key || "endpoint"}`).join("; ")));
  if (gw.guardrails) summary.push(h("li", {}, "Guardrails: ", Object.keys(gw.guardrails).join(", ")));
  if ((gw.fallback_config || {}).enabled) summary.push(h("li", {}, "Fallbacks on"));
  const rc = gw.response_cache;
  if (rc && rc.enabled) {
    summary.push(h("li", { id: "response-cache" }, `Response cache: ${describeCache(rc)} · `,
      h("span", { id: "cache-hit-rate", title: "hits / (hits + misses) since the server started; not cacheable: non-deterministic requests" }, cacheText(cacheCounts))));
  }
  const help = h("p", { class: "muted", id: helpId },
    "The whole ai_gateway, replaced on save: usage_tracking_config, inference_table_config, rate_limits, guardrails, fallback_config and modelport's response_cache, e.g. ",
    h("code", {}, '"response_cache": {"enabled": true, "ttl_seconds": 300, "scope": "user", "semantic_similarity": 0.95, "max_entry_bytes": 1048576, "cache_non_deterministic": false}'),
    ". Cache fields: ttl_seconds 1 to 604800 (default 300); scope user (each caller their own answers, the default) or endpoint (shared by every caller); semantic_similarity above 0 and at most 1 (absent: exact matches only); max_entry_bytes up to 67108864 (default 1 MiB); cache_non_deterministic (default false). Any change starts the cache afresh. See docs/cache.md.");
  box.replaceChildren(
    summary.length ? h("ul", {}, summary) : h("p", { class: "muted" }, "No AI gateway features are enabled."),
    allowed(detail).manage ? h("details", {}, h("summary", {}, "Edit the AI gateway (JSON)"), h("label", { for: text.id }, "AI gateway JSON"), help, text, h("div", { class: "actions" }, save)) : "",
    err);
}

// ---------- metrics ----------

export function parseProm(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const p of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function summarize(samples) {
  const s = { total: 0, errors: 0, buckets: new Map(), replicas: 0, inflight: 0, queued: 0, cache: { hit: 0, miss: 0, bypass: 0 } };
  for (const x of samples) {
    if (x.name === "modelport_response_cache_lookups_total") {
      if (Object.hasOwn(s.cache, x.labels.result)) s.cache[x.labels.result] += x.value;
    } else if (x.name === "modelport_endpoint_requests_total") {
      s.total += x.value;
      if (!/^2/.test(x.labels.status || "")) s.errors += x.value;
    } else if (x.name === "modelport_endpoint_request_duration_seconds_bucket" || x.name === "modelport_endpoint_latency_seconds_bucket") {
      const le = x.labels.le === "+Inf" ? Infinity : Number(x.labels.le);
      s.buckets.set(le, (s.buckets.get(le) || 0) + x.value);
    } else if (x.name === "modelport_endpoint_replicas") s.replicas += x.value;
    else if (x.name === "modelport_endpoint_in_flight_requests") s.inflight += x.value;
    else if (x.name === "modelport_endpoint_queued") s.queued += x.value;
  }
  return s;
}

/** The response cache's hit rate, hits / (hits + misses), from the lookup counters (lookups of
 * requests that could not be cached, ``bypass``, are left out); null before the first lookup. */
export function hitRate(cache) {
  const looked = cache.hit + cache.miss;
  return looked > 0 ? cache.hit / looked : null;
}

/** "hit rate 50% (1 hit, 1 miss, 0 not cacheable)", since the server started. */
function cacheText(cache) {
  if (!cache) return "hit rate –";
  const rate = hitRate(cache);
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  return `hit rate ${rate === null ? "–" : `${Math.round(rate * 100)}%`} (${plural(cache.hit, "hit", "hits")}, ${plural(cache.miss, "miss", "misses")}, ${cache.bypass} not cacheable)`;
}

/** Quantile from the deltas of cumulative histogram buckets (linear inside a bucket). */
export function quantile(prevBuckets, buckets, q) {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  const counts = les.map((le) => (buckets.get(le) || 0) - ((prevBuckets && prevBuckets.get(le)) || 0));
  const total = counts[counts.length - 1];
  if (!total || total <= 0) return null;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (let i = 0; i < les.length; i++) {
    if (counts[i] >= rank) {
      if (les[i] === Infinity) return prevLe;
      const inBucket = counts[i] - prevCount;
      return prevLe + (les[i] - prevLe) * (inBucket > 0 ? (rank - prevCount) / inBucket : 1);
    }
    prevLe = les[i];
    prevCount = counts[i];
  }
  return prevLe;
}

function lineChart(series, colors) {
  const W = 300, H = 60;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const all = series.flat().filter((v) => v !== null && Number.isFinite(v));
  const max = Math.max(1e-9, ...all);
  const n = Math.max(2, ...series.map((s) => s.length));
  series.forEach((s, k) => {
    const pts = [];
    s.forEach((v, i) => { if (v !== null && Number.isFinite(v)) pts.push(`${((i + (n - s.length)) / (n - 1)) * W},${H - 2 - (v / max) * (H - 6)}`); });
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("points", pts.join(" "));
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", colors[k]);
    pl.setAttribute("stroke-width", "2");
    pl.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(pl);
  });
  return svg;
}

function fmtNum(v, unit = "") {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (unit === "ms") return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ms`;
  return `${Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2).replace(/\.?0+$/, "")}${unit}`;
}

/** The live charts; ``onSummary`` gets every poll's summary (the page shows the cache's hit rate). */
function setupCharts(section, url, onSummary) {
  const defs = [
    ["rps", "Requests/s", ["#1f5fbf"], ""],
    ["latency", "Latency p50 / p99", ["#1f5fbf", "#b35c00"], "ms"],
    ["errors", "Errors/s", ["#a40e26"], ""],
    ["replicas", "Replicas", ["#146c2e"], ""],
    ["concurrency", "Concurrency (in flight + queued)", ["#6b3fa0"], ""],
  ];
  const hist = Object.fromEntries(defs.map(([k, , colors]) => [k, colors.map(() => [])]));
  const boxes = {};
  const grid = h("div", { class: "charts" });
  for (const [k, title] of defs) {
    const value = h("div", { class: "value", "data-chart-value": k }, "–");
    const box = h("figure", { class: "chart", id: `chart-${k}`, style: "margin:0" }, h("figcaption", { class: "muted" }, title), value, h("div"));
    boxes[k] = box;
    grid.append(box);
  }
  const err = h("div");
  section.append(h("p", { class: "muted" }, "From this endpoint's Prometheus metrics, polled every 2 s; rates and percentiles over each interval."), grid, err);
  let prev = null;
  const push = (k, vals) => {
    vals.forEach((v, i) => { hist[k][i].push(v); if (hist[k][i].length > 60) hist[k][i].shift(); });
  };
  every(2000, async () => {
    let text;
    try { text = await apiText(`${url}/metrics`); err.replaceChildren(); } catch (e) { err.replaceChildren(errorBox(e)); return; }
    const now = performance.now();
    const s = summarize(parseProm(text));
    if (onSummary) onSummary(s);
    if (prev) {
      const dt = (now - prev.t) / 1000;
      const rps = Math.max(0, (s.total - prev.s.total) / dt);
      const eps = Math.max(0, (s.errors - prev.s.errors) / dt);
      const p50 = quantile(prev.s.buckets, s.buckets, 0.5);
      const p99 = quantile(prev.s.buckets, s.buckets, 0.99);
      push("rps", [rps]);
      push("errors", [eps]);
      push("latency", [p50 === null ? null : p50 * 1000, p99 === null ? null : p99 * 1000]);
      push("replicas", [s.replicas]);
      push("concurrency", [s.inflight + s.queued]);
      const last = (k, i = 0) => { const a = hist[k][i]; for (let j = a.length - 1; j >= 0; j--) if (a[j] !== null) return a[j]; return null; };
      const values = {
        rps: fmtNum(rps), errors: fmtNum(eps), replicas: fmtNum(s.replicas), concurrency: fmtNum(s.inflight + s.queued),
        latency: `${fmtNum(last("latency", 0), "ms")} / ${fmtNum(last("latency", 1), "ms")}`,
      };
      for (const [k, , colors] of defs) {
        const box = boxes[k];
        box.querySelector("[data-chart-value]").textContent = values[k];
        box.dataset.points = String(hist[k][0].length);
        box.dataset.max = String(Math.max(0, ...hist[k][0].filter((v) => v !== null)));
        const peak = Math.max(0, ...hist[k].flat().filter((v) => v !== null && Number.isFinite(v)));
        box.lastChild.replaceChildren(lineChart(hist[k], colors), h("div", { class: "muted axis" }, `peak ${fmtNum(peak, defs.find((d) => d[0] === k)[3])} · last 2 min`));
      }
    }
    prev = { t: now, s };
  }, section);
}

// ---------- logs, openapi, snippets, permissions ----------

function setupLogs(section, detail, url) {
  const sel = select([]);
  sel.id = "logs-entity";
  const update = (d) => {
    const keep = sel.value;
    const names = [...new Set([...entitiesOf(d), ...((d.pending_config || {}).served_entities || [])].map((e) => e.name))];
    sel.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
    if (names.includes(keep)) sel.value = keep;
  };
  update(detail);
  const out = h("pre", { id: "logs-output", tabindex: "0", "aria-label": "Log output" }, "Choose a served entity and a log.");
  const err = h("div");
  const load = (kind) => async () => {
    err.replaceChildren();
    out.textContent = "Loading…";
    try {
      const body = await api(`${url}/served-models/${enc(sel.value)}/${kind}`);
      out.textContent = body.logs || "(empty)";
    } catch (e) { out.textContent = ""; err.append(errorBox(e)); }
  };
  section.append(field("Served entity", sel).wrap,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", id: "show-logs", onclick: load("logs") }, "Logs"),
      h("button", { type: "button", class: "secondary", id: "show-build-logs", onclick: load("build-logs") }, "Build logs")),
    err, out);
  return update;
}

function setupOpenapi(section, url) {
  const out = h("pre", { id: "openapi-output", tabindex: "0", "aria-label": "OpenAPI document", hidden: true });
  const btn = h("button", { type: "button", class: "secondary", id: "show-openapi" }, "Show the OpenAPI document");
  btn.addEventListener("click", async () => {
    try { out.textContent = JSON.stringify(await api(`${url}/openapi`), null, 2); out.hidden = false; } catch (e) { out.replaceChildren(); section.append(errorBox(e)); }
  });
  section.append(h("p", { class: "muted" }, "OpenAPI 3.1 description of this endpoint's query routes."), btn, out);
}

// ----- the endpoint's OpenAPI document: what a query looks like -----

/** The request of `POST /serving-endpoints/{name}/invocations` in the endpoint's OpenAPI
 * document: its schema, its example body, what the server says about the model, the task. */
export function invocationRequest(doc, name) {
  const op = ((doc.paths || {})[`/serving-endpoints/${name}/invocations`] || {}).post || {};
  const media = ((op.requestBody || {}).content || {})["application/json"] || {};
  return { schema: media.schema || {}, example: media.example ?? null, about: op.description || "", task: doc["x-modelport-task"] || null };
}

/** The rows of a dataframe request body as records; null for other bodies. */
export function recordsOf(body) {
  if (!body || typeof body !== "object") return null;
  if (Array.isArray(body.dataframe_records)) return body.dataframe_records;
  const split = body.dataframe_split;
  if (split && Array.isArray(split.columns) && Array.isArray(split.data)) {
    return split.data.map((row) => Object.fromEntries(split.columns.map((c, i) => [c, row[i]])));
  }
  const isRecord = (r) => r && typeof r === "object" && !Array.isArray(r);
  if (Array.isArray(body.instances) && body.instances.length && body.instances.every(isRecord)) return body.instances;
  return null;
}

function columnKind(s) {
  if (s.type === "number" || s.type === "integer") return "number";
  if (s.type === "boolean" || s.type === "string") return s.type;
  return "json";
}

/** The columns of a custom model's form: the signature's (from the request schema), else the
 * keys of the input example's first record; null when neither names any column. */
export function formColumns(schema, example) {
  const record = ((schema.properties || {}).dataframe_records || {}).items || {};
  if (record.properties && Object.keys(record.properties).length) {
    const required = new Set(record.required || []);
    return Object.entries(record.properties).map(([name, s]) => ({
      name, kind: columnKind(s), integer: s.type === "integer", label: s.format || s.type || "any", required: required.has(name),
    }));
  }
  const first = (recordsOf(example) || [])[0];
  if (!first || typeof first !== "object" || !Object.keys(first).length) return null;
  return Object.entries(first).map(([name, v]) => {
    const kind = typeof v === "number" ? "number" : typeof v === "boolean" ? "boolean" : typeof v === "string" ? "string" : "json";
    return { name, kind, integer: false, label: kind === "json" ? "JSON" : kind, required: true };
  });
}

/** A body to show when the model saved no input example: one record of placeholder values
 * in the signature's columns, or null when the signature names none. */
function sampleBody(schema) {
  const cols = formColumns(schema, null);
  if (!cols) return null;
  const sample = { number: 0.5, boolean: true, string: "text" };
  return { dataframe_records: [Object.fromEntries(cols.map((c) => [c.name, c.integer ? 1 : sample[c.kind] ?? null]))] };
}

/** A JSON value as a Python literal. */
export function pyLiteral(v) {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return Number.isFinite(v) ? JSON.stringify(v) : "None";
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(pyLiteral).join(", ")}]`;
  return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyLiteral(x)}`).join(", ")}}`;
}

const kwargs = (args) => args.map((a) => `    ${a},`).join("\n");

/** The snippets of an endpoint, built from the request of its OpenAPI document, with the
 * README's variables: MODELPORT_HOST and MODELPORT_TOKEN. Returns [[label, code], ...]. */
export function snippetsFor(name, req, origin) {
  const task = req.task;
  let body = req.example ?? sampleBody(req.schema);
  const missing = body === null
    ? "# The model has no signature or input example: put its input in the body.\n" : "";
  if (body === null) body = { dataframe_records: [] };
  const env = `# export MODELPORT_HOST=${origin} MODELPORT_TOKEN=<your access token>\n`;
  const curl = `${env}${missing}curl -s -H "Authorization: Bearer $MODELPORT_TOKEN" -H "Content-Type: application/json" \\\n` +
    `  $MODELPORT_HOST/serving-endpoints/${name}/invocations \\\n  -d '${JSON.stringify(body).replace(/'/g, "'\\''")}'`;

  const imports = [];
  const sdkArgs = [`name=${JSON.stringify(name)}`];
  const notes = [];
  for (const [k, v] of Object.entries(body)) {
    if (k === "messages" && Array.isArray(v)) {
      imports.push("ChatMessage", "ChatMessageRole");
      sdkArgs.push(`messages=[${v.map((m) => `ChatMessage(role=ChatMessageRole.${String(m.role).toUpperCase()}, content=${pyLiteral(m.content)})`).join(", ")}]`);
    } else if (k === "dataframe_split" && v && typeof v === "object") {
      imports.push("DataframeSplitInput");
      sdkArgs.push(`dataframe_split=DataframeSplitInput(${Object.entries(v).map(([sk, sv]) => `${sk}=${pyLiteral(sv)}`).join(", ")})`);
    } else if (k === "params") {
      notes.push("# query() has no params argument: send them with requests (see that snippet).");
    } else sdkArgs.push(`${k}=${pyLiteral(v)}`);
  }
  const sdk = `${env}${missing}import os\n\nfrom databricks.sdk import WorkspaceClient\n` +
    (imports.length ? `from databricks.sdk.service.serving import ${imports.join(", ")}\n` : "") +
    `\nw = WorkspaceClient(host=os.environ["MODELPORT_HOST"], token=os.environ["MODELPORT_TOKEN"])\n${notes.join("\n")}${notes.length ? "\n" : ""}` +
    `response = w.serving_endpoints.query(\n${kwargs(sdkArgs)}\n)\nprint(response)`;
  const requests = `${env}${missing}import os\n\nimport requests\n\nresponse = requests.post(\n` +
    `    f"{os.environ['MODELPORT_HOST']}/serving-endpoints/${name}/invocations",\n` +
    `    headers={"Authorization": f"Bearer {os.environ['MODELPORT_TOKEN']}"},\n    json=${pyLiteral(body)},\n)\nprint(response.json())`;
  const snippets = [["curl", curl], ["Python (databricks-sdk)", sdk], ["Python (requests)", requests]];
  const call = { "llm/v1/chat": "chat.completions", "llm/v1/completions": "completions", "llm/v1/embeddings": "embeddings", "agent/v1/responses": "responses" }[task];
  if (call) {
    // the Responses route takes the agent's input, not its custom_inputs or context
    const fields = Object.entries(body).filter(([k]) => call !== "responses" || k === "input");
    const args = [`model=${JSON.stringify(name)}`, ...fields.map(([k, v]) => `${k}=${pyLiteral(v)}`)];
    snippets.push(["Python (openai)", `${env}import os\n\nfrom openai import OpenAI\n\n` +
      `client = OpenAI(base_url=os.environ["MODELPORT_HOST"] + "/serving-endpoints", api_key=os.environ["MODELPORT_TOKEN"])\n` +
      `response = client.${call}.create(\n${kwargs(args)}\n)\nprint(response)`]);
  }
  return snippets;
}

/** The snippets section; returns a function that draws it again (after a config update: the
 * served model, so its example, may have changed). */
function setupSnippets(section, detail, url) {
  const box = h("div");
  section.append(box);
  let drawn = 0;
  const draw = async () => {
    const mine = ++drawn;
    let req;
    try { req = invocationRequest(await api(`${url}/openapi`), detail.name); } catch (e) {
      if (mine === drawn) box.replaceChildren(errorBox(e));
      return;
    }
    if (mine !== drawn) return;
    const snippets = snippetsFor(detail.name, { ...req, task: req.task || detail.task || null }, location.origin);
    const shown = box.querySelector("[data-snippet][aria-selected=true]");
    const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Snippet language" });
    const pre = h("pre", { id: "snippet", tabindex: "0", role: "tabpanel" });
    const buttons = snippets.map(([label, code]) => {
      const b = h("button", { type: "button", role: "tab", "aria-selected": "false", "data-snippet": label }, label);
      b.addEventListener("click", () => {
        buttons.forEach((x) => x.setAttribute("aria-selected", x === b ? "true" : "false"));
        pre.textContent = code;
      });
      return b;
    });
    tabs.append(...buttons);
    arrowTabs(buttons);
    const i = Math.max(0, snippets.findIndex(([label]) => shown && label === shown.dataset.snippet));
    buttons[i].setAttribute("aria-selected", "true");
    pre.textContent = snippets[i][1];
    const copy = h("button", { type: "button", class: "secondary" }, "Copy");
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(pre.textContent); toast("Copied"); } catch { toast("Copy failed: select the text instead"); }
    });
    box.replaceChildren(req.about ? h("p", { class: "muted", id: "snippet-about" }, req.about) : "", tabs, pre, copy);
  };
  draw();
  return draw;
}

async function setupPermissions(section, detail) {
  const url = `/api/2.0/permissions/serving-endpoints/${enc(detail.id)}`;
  const body = h("tbody");
  const err = h("div");
  const load = async () => {
    try {
      const acl = (await api(url)).access_control_list || [];
      body.replaceChildren(...acl.map((a) => h("tr", {},
        h("td", { "data-label": "Principal" }, a.user_name || a.group_name || a.service_principal_name || "–", " ", h("span", { class: "muted" }, a.user_name ? "user" : a.group_name ? "group" : "service principal")),
        h("td", { "data-label": "Permission" }, (a.all_permissions || []).map((p) => `${p.permission_level}${p.inherited ? " (inherited)" : ""}`).join(", ")))));
    } catch (e) { err.replaceChildren(errorBox(e)); }
  };
  const kind = select([["user_name", "User"], ["group_name", "Group"], ["service_principal_name", "Service principal"]]);
  const who = h("input", { type: "text", placeholder: "alice@example.com" });
  const level = select(["CAN_QUERY", "CAN_VIEW", "CAN_MANAGE"]);
  const add = h("button", { type: "button", class: "secondary", id: "grant" }, "Grant");
  add.addEventListener("click", async () => {
    err.replaceChildren();
    if (!who.value.trim()) { err.append(errorBox("Name a principal first.")); return; }
    try {
      await api(url, { method: "PATCH", body: { access_control_list: [{ [kind.value]: who.value.trim(), permission_level: level.value }] } });
      who.value = "";
      toast("Permission granted");
      await load();
    } catch (e) { err.append(errorBox(e)); }
  });
  section.append(
    h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "permissions" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Principal"), h("th", { scope: "col" }, "Permission"))), body)),
    allowed(detail).reconfigure ? h("div", { class: "row" }, field("Principal type", kind).wrap, field("Principal", who).wrap, field("Permission", level).wrap, h("div", { style: "flex:0" }, add)) : "",
    err);
  await load();
}

// ---------- create ----------

const PROVIDERS = {
  openai: { block: "openai_config", fields: [
    ["openai_api_key", "API key", "secret"], ["openai_api_base", "API base URL (optional)"], ["openai_organization", "Organization (optional)"],
    ["openai_api_type", "API type", ["", "azure", "azuread"]], ["openai_deployment_name", "Azure deployment name (Azure only)"], ["openai_api_version", "Azure API version (Azure only)"]] },
  custom: { block: "custom_provider_config", fields: [
    ["custom_provider_url", "Provider URL (OpenAI-compatible API base, e.g. http://vllm:8000/v1)", "required"], ["bearer_token_auth.token", "Bearer token", "secret"]] },
  anthropic: { block: "anthropic_config", fields: [["anthropic_api_key", "API key", "secret"]] },
  cohere: { block: "cohere_config", fields: [["cohere_api_key", "API key", "secret"], ["cohere_api_base", "API base URL (optional)"]] },
  "google-cloud-vertex-ai": { block: "google_cloud_vertex_ai_config", fields: [["project_id", "Project id", "required"], ["region", "Region", "required"], ["private_key", "Service-account key (JSON)", "secret"]] },
  palm: { block: "palm_config", fields: [["palm_api_key", "API key", "secret"]] },
  ai21labs: { block: "ai21labs_config", fields: [["ai21labs_api_key", "API key", "secret"]] },
  "amazon-bedrock": { block: "amazon_bedrock_config", fields: [["aws_region", "AWS region", "required"], ["bedrock_provider", "Bedrock provider", ["anthropic", "amazon", "cohere", "ai21labs"]],
    ["aws_access_key_id", "Access key id", "secret"], ["aws_secret_access_key", "Secret access key", "secret"]] },
  "databricks-model-serving": { block: "databricks_model_serving_config", fields: [["databricks_workspace_url", "Workspace URL", "required"], ["databricks_api_token", "API token", "secret"]] },
};

function setPath(obj, path, value) {
  const parts = path.split(".");
  let o = obj;
  for (const p of parts.slice(0, -1)) o = o[p] = o[p] || {};
  o[parts[parts.length - 1]] = value;
}

/** A credential: a secret chosen from a scope ({{secrets/scope/key}}) or typed in (sent as *_plaintext). */
function secretPicker(path, label, scopes) {
  const key = path.replace(/\./g, "-");
  const mode = select([["secret", "Secret reference"], ["plain", "Type it in (stored by the server as a secret)"], ["none", "None"]]);
  mode.id = `cred-mode-${key}`;
  const scopeSel = select([["", "Choose a scope"], ...scopes.map((s) => s.name)]);
  scopeSel.id = `cred-scope-${key}`;
  const keySel = select([["", "Choose a scope first"]]);
  keySel.id = `cred-key-${key}`;
  const plain = h("input", { type: "password", id: `cred-plain-${key}`, autocomplete: "off" });
  const err = h("div");
  const secretRow = h("div", { class: "row" }, field("Secret scope", scopeSel).wrap, field("Secret key", keySel).wrap);
  const plainRow = field(`${label} (value)`, plain).wrap;
  const sync = () => { secretRow.hidden = mode.value !== "secret"; plainRow.hidden = mode.value !== "plain"; };
  mode.addEventListener("change", sync);
  scopeSel.addEventListener("change", async () => {
    err.replaceChildren();
    keySel.replaceChildren(h("option", { value: "" }, "Loading…"));
    if (!scopeSel.value) return;
    try {
      const secrets = (await api(`/api/2.0/secrets/list?scope=${enc(scopeSel.value)}`)).secrets || [];
      keySel.replaceChildren(h("option", { value: "" }, secrets.length ? "Choose a key" : "No keys in this scope"), ...secrets.map((s) => h("option", { value: s.key }, s.key)));
    } catch (e) { keySel.replaceChildren(); err.append(errorBox(e)); }
  });
  if (!scopes.length) mode.value = "plain";
  sync();
  const wrap = h("fieldset", {}, h("legend", {}, label), field("Credential", mode).wrap, secretRow, plainRow, err);
  return {
    wrap,
    apply(block) {
      if (mode.value === "secret") {
        if (!scopeSel.value || !keySel.value) throw new Error(`${label}: choose a secret scope and key.`);
        setPath(block, path, `{{secrets/${scopeSel.value}/${keySel.value}}}`);
      } else if (mode.value === "plain") {
        if (!plain.value) throw new Error(`${label}: type the value, or choose a secret.`);
        setPath(block, `${path}_plaintext`, plain.value);
      }
    },
  };
}

async function createPage() {
  const main = currentView;
  document.title = "Create endpoint · modelport";
  const name = h("input", { type: "text", id: "create-name", required: true, pattern: "[A-Za-z0-9_-]+", autocomplete: "off" });
  const kindTabs = h("fieldset", {}, h("legend", {}, "What does it serve?"));
  const kinds = [["registered", "A registered model"], ["foundation", "A foundation model"], ["external", "An external model"]];
  const radios = kinds.map(([v, label], i) => {
    const r = h("input", { type: "radio", name: "kind", value: v, id: `kind-${v}`, checked: i === 0 });
    kindTabs.append(h("label", { class: "inline", for: r.id }, r, label));
    return r;
  });
  const panel = h("div");
  const err = h("div", { "aria-live": "assertive" });
  const submit = h("button", { type: "submit", id: "create-submit" }, "Create endpoint");
  const form = h("form", { class: "card", id: "create-form", novalidate: true },
    field("Endpoint name", name, "Letters, digits, - and _.").wrap, kindTabs, panel,
    h("fieldset", {}, h("legend", {}, "Options"),
      h("label", { class: "inline", for: "create-inference" }, h("input", { type: "checkbox", id: "create-inference" }), "Log requests and responses to an inference table (main.serving.<name>_payload)")),
    err, h("div", { class: "actions" }, submit));
  main.append(h("h1", {}, "Create a serving endpoint"), form);

  // One builder per kind: a kind's panel that finishes loading late must not replace another's.
  const builders = {};
  const sizeSel = () => { const s = select(["Small", "Medium", "Large"]); return s; };

  const drawRegistered = async () => {
    const model = select([["", "Loading…"]]);
    model.id = "create-model";
    const version = select([["", "Choose a model first"]]);
    version.id = "create-version";
    const ename = h("input", { type: "text", id: "create-entity-name", placeholder: "model-version (default)" });
    const size = sizeSel(); size.id = "create-size";
    const s2z = h("input", { type: "checkbox", id: "create-s2z" });
    const perr = h("div");
    panel.replaceChildren(h("div", { class: "row" }, field("Registered model", model).wrap, field("Version", version).wrap),
      h("div", { class: "row" }, field("Served entity name (optional)", ename).wrap, field("Workload size", size).wrap),
      h("label", { class: "inline", for: s2z.id }, s2z, "Scale to zero when idle"), perr);
    try {
      const models = (await api("/api/2.0/mlflow/registered-models/search?max_results=1000")).registered_models || [];
      model.replaceChildren(h("option", { value: "" }, models.length ? "Choose a model" : "No registered models"), ...models.map((m) => h("option", { value: m.name }, m.name)));
    } catch (e) { perr.append(errorBox(e)); }
    model.addEventListener("change", async () => {
      version.replaceChildren(h("option", { value: "" }, "Loading…"));
      if (!model.value) return;
      try {
        const vs = ((await api(`/api/2.0/mlflow/model-versions/search?filter=${enc(`name='${model.value.replace(/'/g, "\\'")}'`)}`)).model_versions || [])
          .sort((a, b) => Number(b.version) - Number(a.version));
        version.replaceChildren(...vs.map((v) => h("option", { value: v.version }, `Version ${v.version}${v.aliases && v.aliases.length ? ` (@${v.aliases.join(", @")})` : ""} · ${fmtTime(v.creation_timestamp)}`)));
      } catch (e) { perr.append(errorBox(e)); }
    });
    builders.registered = () => {
      if (!model.value) throw new Error("Choose a registered model.");
      if (!version.value) throw new Error("Choose a version.");
      const e = { entity_name: model.value, entity_version: version.value, workload_size: size.value, scale_to_zero_enabled: s2z.checked };
      if (ename.value.trim()) e.name = ename.value.trim();
      return e;
    };
  };

  const drawFoundation = () => {
    const model = select([["system.ai.smollm2-135m-instruct", "SmolLM2 135M Instruct (chat)"], ["system.ai.all-minilm-l6-v2", "all-MiniLM-L6-v2 (embeddings)"]]);
    model.id = "create-foundation";
    const size = sizeSel(); size.id = "create-size";
    const s2z = h("input", { type: "checkbox", id: "create-s2z", checked: true });
    panel.replaceChildren(field("Foundation model", model, "Served on this machine (llama.cpp / onnxruntime).").wrap, field("Workload size", size).wrap,
      h("label", { class: "inline", for: s2z.id }, s2z, "Scale to zero when idle"));
    builders.foundation = () => ({ entity_name: model.value, entity_version: "1", workload_size: size.value, scale_to_zero_enabled: s2z.checked });
  };

  const drawExternal = async () => {
    let scopes = [];
    const perr = h("div");
    try { scopes = (await api("/api/2.0/secrets/scopes/list")).scopes || []; } catch (e) { perr.append(errorBox(e)); }
    if (!document.getElementById("kind-external").checked) return; // the user chose another kind meanwhile
    const provider = select(Object.keys(PROVIDERS), "openai");
    provider.id = "create-provider";
    const task = select([["llm/v1/chat", "Chat (llm/v1/chat)"], ["llm/v1/completions", "Completions (llm/v1/completions)"], ["llm/v1/embeddings", "Embeddings (llm/v1/embeddings)"]]);
    task.id = "create-task";
    const mname = h("input", { type: "text", id: "create-external-name", placeholder: "gpt-4o-mini" });
    const ename = h("input", { type: "text", id: "create-entity-name", placeholder: "the model name (default)" });
    const fieldsBox = h("div");
    let appliers = [];
    const drawFields = () => {
      appliers = [];
      fieldsBox.replaceChildren();
      for (const [path, label, kind] of PROVIDERS[provider.value].fields) {
        if (kind === "secret") {
          const p = secretPicker(path, label, scopes);
          fieldsBox.append(p.wrap);
          appliers.push(p.apply);
        } else if (Array.isArray(kind)) {
          const s = select(kind.map((k) => [k, k || "(default)"]));
          s.id = `ext-${path}`;
          fieldsBox.append(field(label, s).wrap);
          appliers.push((block) => { if (s.value) setPath(block, path, s.value); });
        } else {
          const inp = h("input", { type: "text", id: `ext-${path}`, required: kind === "required" });
          fieldsBox.append(field(label, inp).wrap);
          appliers.push((block) => {
            if (inp.value.trim()) setPath(block, path, inp.value.trim());
            else if (kind === "required") throw new Error(`${label} is required.`);
          });
        }
      }
    };
    provider.addEventListener("change", drawFields);
    drawFields();
    panel.replaceChildren(h("div", { class: "row" }, field("Provider", provider).wrap, field("Task", task).wrap),
      h("div", { class: "row" }, field("Provider's model name", mname).wrap, field("Served entity name (optional)", ename).wrap),
      h("h3", {}, "Provider settings"), fieldsBox, perr,
      scopes.length ? "" : h("p", { class: "muted" }, "No secret scopes yet: create one with `modelport secrets` or the secrets API to pick credentials from it."));
    builders.external = () => {
      if (!mname.value.trim()) throw new Error("Name the provider's model.");
      const block = {};
      for (const a of appliers) a(block);
      const e = { name: ename.value.trim() || mname.value.trim().replace(/[^A-Za-z0-9_-]/g, "-"), external_model: { provider: provider.value, name: mname.value.trim(), task: task.value, [PROVIDERS[provider.value].block]: block } };
      return e;
    };
  };

  const draw = () => {
    const kind = radios.find((r) => r.checked).value;
    err.replaceChildren();
    ({ registered: drawRegistered, foundation: drawFoundation, external: drawExternal })[kind]();
  };
  radios.forEach((r) => r.addEventListener("change", draw));
  draw();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const n = name.value.trim();
    try {
      if (!/^[A-Za-z0-9_-]{1,63}$/.test(n)) throw new Error("The endpoint name must be 1-63 letters, digits, - or _.");
      const kind = radios.find((r) => r.checked).value;
      if (!builders[kind]) throw new Error("The form is still loading: try again in a moment.");
      const entity = builders[kind]();
      const body = { name: n, config: { served_entities: [entity] } };
      if (document.getElementById("create-inference").checked) {
        body.ai_gateway = { inference_table_config: { catalog_name: "main", schema_name: "serving", table_name_prefix: n.replace(/-/g, "_"), enabled: true } };
      }
      submit.disabled = true;
      await api(EP, { method: "POST", body });
      toast(`Creating ${n}`);
      location.hash = `#/endpoints/${enc(n)}`;
    } catch (e) {
      err.append(errorBox(e));
    } finally {
      submit.disabled = false;
    }
  });
  name.focus();
}

// ---------- playground ----------

async function playgroundPage() {
  const main = currentView;
  document.title = "Playground · modelport";
  const eps = ((await api(EP)).endpoints || []).sort((a, b) => a.name.localeCompare(b.name));
  const chatEps = eps.filter((e) => taskOf(e) === "llm/v1/chat");
  const customEps = eps.filter((e) => !taskOf(e));
  const agentEps = eps.filter((e) => isAgentTask(taskOf(e)));
  const tabChat = h("button", { type: "button", role: "tab", id: "tab-chat", "aria-selected": "true" }, "Chat");
  const tabAgents = h("button", { type: "button", role: "tab", id: "tab-agents", "aria-selected": "false" }, "Agents");
  const tabCustom = h("button", { type: "button", role: "tab", id: "tab-custom", "aria-selected": "false" }, "Custom models");
  const chatPanel = h("div", { role: "tabpanel", "aria-labelledby": "tab-chat" });
  const agentPanel = h("div", { role: "tabpanel", "aria-labelledby": "tab-agents", hidden: true });
  const customPanel = h("div", { role: "tabpanel", "aria-labelledby": "tab-custom", hidden: true });
  const tabs = [[tabChat, chatPanel], [tabCustom, customPanel], [tabAgents, agentPanel]];
  const show = (tab) => { for (const [t, p] of tabs) { t.setAttribute("aria-selected", String(t === tab)); p.hidden = t !== tab; } };
  for (const [t] of tabs) t.addEventListener("click", () => show(t));
  arrowTabs(tabs.map(([t]) => t));
  main.append(h("h1", {}, "AI playground"), h("div", { class: "tabs", role: "tablist", "aria-label": "Playground mode" }, tabChat, tabCustom, tabAgents), chatPanel, customPanel, agentPanel);
  chatPlayground(chatPanel, chatEps);
  agentPlayground(agentPanel, agentEps);
  customPlayground(customPanel, customEps);
}

function chatPlayground(panel, chatEps) {
  const opts = chatEps.map((e) => e.name);
  const sels = [0, 1, 2].map((i) => {
    const s = select([["", i === 0 ? "Choose an endpoint" : "None"], ...opts], i === 0 ? opts[0] || "" : "");
    s.id = `pg-endpoint-${i}`;
    return s;
  });
  const system = h("textarea", { id: "pg-system", rows: 2, class: "prompt", placeholder: "You are a helpful assistant." });
  const temp = h("input", { type: "number", id: "pg-temperature", min: 0, max: 2, step: 0.1, value: 0.7 });
  const maxTok = h("input", { type: "number", id: "pg-max-tokens", min: 1, max: 4096, step: 1, value: 128 });
  const stop = h("input", { type: "text", id: "pg-stop", placeholder: "comma-separated" });
  const prompt = h("textarea", { id: "pg-prompt", rows: 3, class: "prompt", placeholder: "Ask something… (Ctrl+Enter sends)" });
  const send = h("button", { type: "submit", id: "pg-send" }, "Send");
  const clear = h("button", { type: "button", class: "secondary", id: "pg-clear" }, "New conversation");
  const columns = h("div", { class: "compare", id: "pg-answers" });
  const err = h("div");
  const attach = imageAttach("pg");
  const histories = new Map();
  const form = h("form", { class: "card", id: "pg-form" },
    h("div", { class: "row" }, field("Endpoint", sels[0]).wrap, field("Compare with", sels[1]).wrap, field("And with", sels[2]).wrap),
    field("System prompt", system).wrap,
    h("div", { class: "row" }, field("Temperature", temp).wrap, field("Max tokens", maxTok).wrap, field("Stop sequences", stop).wrap),
    field("Message", prompt).wrap, attach.wrap, err,
    h("div", { class: "actions" }, send, clear));
  if (!chatEps.length) panel.append(h("p", { class: "notice" }, "No chat endpoints yet: create one (a foundation model or an external chat model)."));
  panel.append(form, columns);

  const colFor = new Map();
  const ensureColumns = (names) => {
    for (const [n, c] of colFor) if (!names.includes(n)) { c.remove(); colFor.delete(n); }
    for (const n of names) {
      if (!colFor.has(n)) {
        const c = h("section", { class: "answer", "data-endpoint": n, "aria-label": `Answers from ${n}` }, h("h2", {}, n), h("div", { class: "log" }));
        colFor.set(n, c);
      }
      columns.append(colFor.get(n));
    }
  };
  clear.addEventListener("click", () => { histories.clear(); for (const c of colFor.values()) c.querySelector(".log").replaceChildren(); });
  prompt.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); } });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const names = [...new Set(sels.map((s) => s.value).filter(Boolean))];
    if (!names.length) { err.append(errorBox("Choose an endpoint.")); return; }
    const text = prompt.value.trim();
    if (!text) { err.append(errorBox("Type a message.")); return; }
    ensureColumns(names);
    const content = attach.content(text);
    attach.clear();
    prompt.value = "";
    send.disabled = true;
    const params = { temperature: Number(temp.value), max_tokens: Number(maxTok.value) };
    const stops = stop.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (stops.length) params.stop = stops;
    await Promise.all(names.map((n) => {
      const hist = histories.get(n) || [];
      hist.push({ role: "user", content });
      histories.set(n, hist);
      const messages = [...(system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []), ...hist];
      return streamChat(n, messages, params, colFor.get(n).querySelector(".log")).then((answer) => { if (answer !== null) hist.push({ role: "assistant", content: answer }); else hist.pop(); });
    }));
    send.disabled = false;
    prompt.focus();
  });
}

/** POST /serving-endpoints/chat/completions with stream: true, read the SSE with a ReadableStream. */
async function streamChat(name, messages, params, log) {
  log.append(h("div", { class: "msg user" }, h("strong", {}, "You: "), userContent(messages[messages.length - 1].content)));
  const out = h("span", { class: "content" });
  const stats = h("div", { class: "stats" }, "waiting…");
  const msg = h("div", { class: "msg assistant", "aria-live": "polite" }, h("strong", {}, "Assistant: "), out, stats);
  log.append(msg);
  const t0 = performance.now();
  let first = null;
  let usage = null;
  let text = "";
  try {
    const res = await rawFetch("/serving-endpoints/chat/completions", { method: "POST", body: { model: name, messages, stream: true, stream_options: { include_usage: true }, ...params } });
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    let done = false;
    while (!done) {
      const r = await reader.read();
      if (r.done) break;
      buf += dec.decode(r.value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") { done = true; break; }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
        if (chunk.usage) usage = chunk.usage;
        for (const c of chunk.choices || []) {
          const d = (c.delta && c.delta.content) || "";
          if (d) {
            if (first === null) first = performance.now() - t0;
            text += d;
            out.textContent = text;
          }
        }
      }
    }
    const total = performance.now() - t0;
    stats.textContent = `${(total / 1000).toFixed(2)} s total · first token ${first === null ? "–" : (first / 1000).toFixed(2) + " s"} · ` +
      (usage ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens` : "no usage reported");
    msg.dataset.done = "true";
    msg.dataset.latencyMs = String(Math.round(total));
    if (usage) msg.dataset.completionTokens = String(usage.completion_tokens);
    return text;
  } catch (e) {
    stats.replaceChildren(errorBox(e));
    msg.dataset.done = "error";
    return null;
  }
}

// ----- custom models: a form from the endpoint's OpenAPI document -----

/** Read the endpoint's OpenAPI document (the server resolved the model, whatever form its
 * entity name takes, and read its signature and input example) and build the form from it. */
function customPlayground(panel, customEps) {
  const sel = select([["", "Choose an endpoint"], ...customEps.map((e) => e.name)], customEps[0] ? customEps[0].name : "");
  sel.id = "pg-custom-endpoint";
  const formBox = h("div", { "aria-live": "polite" });
  const result = h("div", { id: "pg-predictions", "aria-live": "polite" });
  panel.append(h("section", { class: "card" }, field("Custom-model endpoint", sel).wrap, formBox), result);
  let loading = 0;
  const load = async () => {
    const mine = ++loading; // a slow answer for an endpoint chosen before must not draw over this one
    formBox.replaceChildren();
    result.replaceChildren();
    const name = sel.value;
    if (!name) return;
    formBox.append(h("p", { class: "muted" }, "Loading the model's inputs…"));
    let req;
    try { req = invocationRequest(await api(`${EP}/${enc(name)}/openapi`), name); } catch (e) {
      if (mine === loading) formBox.replaceChildren(errorBox(e));
      return;
    }
    if (mine === loading) formBox.replaceChildren(customForm(name, req, result));
  };
  sel.addEventListener("change", load);
  load();
}

function customForm(name, req, result) {
  const form = h("form", { id: "pg-custom-form" });
  if (req.about) form.append(h("p", { class: "muted", id: "pg-custom-about" }, req.about));
  const columns = formColumns(req.schema, req.example);
  const first = (recordsOf(req.example) || [])[0] || {};
  let readBody;
  if (columns) {
    const inputs = columns.map((c) => {
      const v = first[c.name];
      const attrs = { id: `col-${c.name}`, "data-column": c.name };
      let inp;
      if (c.kind === "boolean") inp = h("input", { type: "checkbox", ...attrs, checked: v === true });
      else if (c.kind === "number") inp = h("input", { type: "number", step: c.integer ? 1 : "any", required: c.required, ...attrs, value: typeof v === "number" ? String(v) : undefined });
      else inp = h("input", { type: "text", required: c.required, ...attrs, value: v === undefined || v === null ? undefined : c.kind === "json" ? JSON.stringify(v) : String(v) });
      return [c, inp];
    });
    const source = req.schema.properties && req.schema.properties.dataframe_records && (req.schema.properties.dataframe_records.items || {}).properties
      ? (req.example ? "Columns of the model signature, filled in with its input example." : "Columns of the model signature.")
      : "Columns of the model's input example.";
    form.append(h("p", { class: "muted" }, source),
      h("div", { class: "row" }, inputs.map(([c, inp]) => field(`${c.name} (${c.label}${c.required ? "" : ", optional"})`, inp).wrap)));
    readBody = () => {
      const rec = {};
      for (const [c, inp] of inputs) {
        if (c.kind === "boolean") rec[c.name] = inp.checked;
        else if (inp.value === "") { if (c.required) throw new Error(`Fill in ${c.name}.`); }
        else if (c.kind === "number") rec[c.name] = Number(inp.value);
        else if (c.kind === "json") {
          try { rec[c.name] = JSON.parse(inp.value); } catch { throw new Error(`${c.name} must be JSON.`); }
        } else rec[c.name] = inp.value;
      }
      const body = { dataframe_records: [rec] };
      if (req.example && req.example.params) body.params = req.example.params;
      return body;
    };
  } else {
    const ta = h("textarea", { id: "pg-custom-json", rows: 8, spellcheck: "false" });
    if (req.example) ta.value = JSON.stringify(req.example, null, 2);
    form.append(h("p", { class: "muted" }, req.example
      ? "The model's input example as a request body: edit it, then predict."
      : "There is no signature or input example to build a form from: type the request body (dataframe_records, dataframe_split, instances or inputs)."),
    field("Request body (JSON)", ta).wrap);
    readBody = () => {
      if (!ta.value.trim()) throw new Error("Type the request body first.");
      try { return JSON.parse(ta.value); } catch (e) { throw new Error(`The request body is not valid JSON (${e.message}).`); }
    };
  }
  form.append(h("div", { class: "actions" }, h("button", { type: "submit", id: "pg-predict" }, "Predict")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    result.replaceChildren();
    try {
      const body = readBody();
      const t0 = performance.now();
      const res = await api(`/serving-endpoints/${enc(name)}/invocations`, { method: "POST", body });
      const ms = performance.now() - t0;
      result.append(h("section", { class: "card" }, h("h2", {}, "Predictions"), h("p", { class: "muted" }, `${ms.toFixed(0)} ms`), predictionsTable(recordsOf(body) || [], res.predictions)));
    } catch (e) { result.append(errorBox(e)); }
  });
  return form;
}

function predictionsTable(records, preds) {
  const rows = Array.isArray(preds) ? preds : preds && typeof preds === "object" ? Object.keys(preds).length && Array.isArray(Object.values(preds)[0]) ? Object.values(preds)[0].map((_, i) => Object.fromEntries(Object.entries(preds).map(([k, v]) => [k, v[i]]))) : [preds] : [preds];
  const inCols = records.length ? Object.keys(records[0]) : [];
  const outCols = rows.length && rows[0] && typeof rows[0] === "object" && !Array.isArray(rows[0]) ? Object.keys(rows[0]) : ["prediction"];
  const cell = (v) => (typeof v === "object" ? JSON.stringify(v) : String(v));
  return h("div", { class: "table-wrap" }, h("table", { id: "predictions-table" },
    h("thead", {}, h("tr", {}, inCols.map((c) => h("th", { scope: "col" }, c)), outCols.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r, i) => h("tr", {}, inCols.map((c) => h("td", {}, cell((records[i] || {})[c] ?? ""))),
      outCols.map((c) => h("td", { class: "prediction" }, cell(outCols[0] === "prediction" && outCols.length === 1 ? r : r[c]))))))));
}

// ---------- inference tables ----------

async function tablesPage(selected) {
  const main = currentView;
  document.title = "Inference tables · modelport";
  const eps = ((await api(EP)).endpoints || []).filter((e) => ((e.ai_gateway || {}).inference_table_config || {}).enabled || (((e.config || {}).auto_capture_config) || {}).enabled);
  main.append(h("h1", {}, "Inference tables"));
  const sql = h("section", { class: "card", id: "sql", "aria-labelledby": "sql-title" });
  if (!eps.length) {
    main.append(h("p", { class: "notice" }, "No endpoint logs to an inference table yet: enable one in an endpoint's AI gateway (inference_table_config)."), sql);
    sqlBox(sql, "SELECT endpoint_name, count(*) AS requests FROM system.serving.endpoint_usage GROUP BY 1 ORDER BY 2 DESC");
    return;
  }
  const epSel = select(eps.map((e) => e.name), selected && eps.some((e) => e.name === selected) ? selected : eps[0].name);
  epSel.id = "tables-endpoint";
  const status = select([["", "Any status"], ["ok", "Success (2xx)"], ["error", "Errors (not 2xx)"], ["4xx", "4xx"], ["5xx", "5xx"]]);
  status.id = "tables-status";
  const entity = select([["", "Any served entity"]]);
  entity.id = "tables-entity";
  const since = select([["", "Any time"], ["900", "Last 15 minutes"], ["3600", "Last hour"], ["86400", "Last 24 hours"], ["604800", "Last 7 days"]]);
  since.id = "tables-since";
  const limit = select(["25", "100", "500"]);
  limit.id = "tables-limit";
  const run = h("button", { type: "submit", id: "tables-run" }, "Show requests");
  const info = h("p", { class: "muted", "aria-live": "polite" });
  const err = h("div");
  const tbody = h("tbody");
  const detailBox = h("div", { id: "row-detail" });
  const form = h("form", { class: "card", id: "tables-form" },
    h("div", { class: "row" }, field("Endpoint", epSel).wrap, field("Status", status).wrap, field("Served entity", entity).wrap, field("Time", since).wrap, field("Rows", limit).wrap, h("div", { style: "flex:0" }, run)),
    info, err);
  main.append(form, detailBox,
    h("section", { class: "card" }, h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "inference-rows" },
      h("thead", {}, h("tr", {}, ["Time", "Status", "Latency", "Served entity", "Requester", "Request id", ""].map((t) => h("th", { scope: "col" }, t)))), tbody))), sql);
  const tableName = () => {
    const ep = eps.find((e) => e.name === epSel.value);
    const c = (ep.ai_gateway || {}).inference_table_config || (ep.config || {}).auto_capture_config;
    return `${c.catalog_name}.${c.schema_name}.${c.table_name_prefix}_payload`;
  };
  const fillEntities = () => {
    const ep = eps.find((e) => e.name === epSel.value);
    entity.replaceChildren(h("option", { value: "" }, "Any served entity"), ...entitiesOf(ep).map((e) => h("option", { value: e.name }, e.name)));
  };
  const query = async () => {
    err.replaceChildren();
    detailBox.replaceChildren();
    const where = [];
    if (status.value === "ok") where.push("status_code BETWEEN 200 AND 299");
    if (status.value === "error") where.push("(status_code < 200 OR status_code > 299)");
    if (status.value === "4xx") where.push("status_code BETWEEN 400 AND 499");
    if (status.value === "5xx") where.push("status_code >= 500");
    if (entity.value) where.push(`served_entity_name = ${sqlString(entity.value)}`);
    if (since.value) where.push(`timestamp_ms >= ${Date.now() - Number(since.value) * 1000}`);
    const sql = `SELECT databricks_request_id, timestamp_ms, status_code, execution_time_ms, served_entity_name, requester, error_code, request, response FROM ${tableName()}` +
      (where.length ? ` WHERE ${where.join(" AND ")}` : "") + ` ORDER BY timestamp_ms DESC LIMIT ${Number(limit.value)}`;
    info.textContent = "Querying…";
    try {
      const res = await api("/api/2.0/modelport/tables/query", { method: "POST", body: { sql } });
      const cols = res.columns;
      const rows = (res.rows || []).map((r) => Object.fromEntries(cols.map((c, i) => [c, r[i]])));
      info.textContent = `${rows.length} request(s) from ${tableName()}${res.truncated ? " (truncated)" : ""}. Rows reach the table within a few seconds.`;
      tbody.replaceChildren(...rows.map((r) => {
        const open = h("button", { type: "button", class: "secondary", "data-request-id": r.databricks_request_id }, "Open");
        open.addEventListener("click", () => showRow(r));
        const ok = r.status_code >= 200 && r.status_code < 300;
        return h("tr", { class: "clickable" },
          h("td", { "data-label": "Time" }, fmtTime(r.timestamp_ms)),
          h("td", { "data-label": "Status" }, h("span", { class: `badge state-${ok ? "ready" : "failed"}` }, String(r.status_code)), r.error_code ? ` ${r.error_code}` : ""),
          h("td", { "data-label": "Latency" }, `${r.execution_time_ms ?? "–"} ms`),
          h("td", { "data-label": "Served entity" }, r.served_entity_name || "–"),
          h("td", { "data-label": "Requester" }, r.requester || "–"),
          h("td", { "data-label": "Request id" }, h("code", {}, r.databricks_request_id || "")),
          h("td", {}, open));
      }));
    } catch (e) {
      info.textContent = "";
      err.append(errorBox(e));
    }
  };
  const showRow = (r) => {
    detailBox.replaceChildren(h("section", { class: "card", "aria-labelledby": "row-title" },
      h("h2", { id: "row-title", tabindex: "-1" }, `Request ${r.databricks_request_id}`),
      h("p", { class: "muted" }, `${fmtTime(r.timestamp_ms)} · status ${r.status_code} · ${r.execution_time_ms} ms · ${r.served_entity_name || ""} · ${r.requester || ""}`),
      h("div", { class: "grid2" },
        h("div", {}, h("h3", {}, "Request"), h("pre", { id: "row-request", tabindex: "0" }, pretty(r.request))),
        h("div", {}, h("h3", {}, "Response"), h("pre", { id: "row-response", tabindex: "0" }, pretty(r.response))))));
    detailBox.querySelector("#row-title").focus();
  };
  epSel.addEventListener("change", () => { fillEntities(); query(); });
  form.addEventListener("submit", (ev) => { ev.preventDefault(); query(); });
  fillEntities();
  sqlBox(sql, `SELECT served_entity_name, status_code, count(*) AS requests FROM ${tableName()} GROUP BY 1, 2 ORDER BY 3 DESC`);
  await query();
}

// ---------- audit log ----------

const AUDIT_SERVICES = ["serving", "permissions", "secrets", "tokens", "scim", "mlflow", "tables", "unityCatalog", "ui", "modelport"];

async function auditPage() {
  const main = currentView;
  document.title = "Audit log · modelport";
  main.append(h("h1", {}, "Audit log"),
    h("p", { class: "muted" }, "Control-plane writes and refused requests, from system.access.audit (admins, or a SELECT grant on it). Identifiers only: no request bodies, secret values or tokens."));
  const outcome = select([["", "Any outcome"], ["denied", "Refused (401, 403)"], ["error", "Errors (4xx, 5xx)"], ["ok", "Success"]]);
  outcome.id = "audit-outcome";
  const service = select([["", "Any service"], ...AUDIT_SERVICES]);
  service.id = "audit-service";
  const who = h("input", { type: "text", id: "audit-who", placeholder: "user or service principal" });
  const since = select([["", "Any time"], ["3600", "Last hour"], ["86400", "Last 24 hours"], ["604800", "Last 7 days"]], "86400");
  since.id = "audit-since";
  const limit = select(["50", "200", "1000"]);
  limit.id = "audit-limit";
  const run = h("button", { type: "submit", id: "audit-run" }, "Show events");
  const info = h("p", { class: "muted", "aria-live": "polite" });
  const err = h("div");
  const tbody = h("tbody");
  const detailBox = h("div", { id: "audit-detail" });
  const form = h("form", { class: "card", id: "audit-form" },
    h("div", { class: "row" }, field("Outcome", outcome).wrap, field("Service", service).wrap, field("Who", who).wrap, field("Time", since).wrap, field("Rows", limit).wrap, h("div", { style: "flex:0" }, run)),
    info, err);
  main.append(form, detailBox,
    h("section", { class: "card" }, h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "audit-rows" },
      h("thead", {}, h("tr", {}, ["Time", "Who", "Service", "Action", "Status", "From", "Request id", ""].map((t) => h("th", { scope: "col" }, t)))), tbody))));
  const query = async () => {
    err.replaceChildren();
    detailBox.replaceChildren();
    const where = [];
    if (outcome.value === "denied") where.push("response.status_code IN (401, 403)");
    if (outcome.value === "error") where.push("response.status_code >= 400");
    if (outcome.value === "ok") where.push("response.status_code < 400");
    if (service.value) where.push(`service_name = ${sqlString(service.value)}`);
    if (who.value.trim()) where.push(`user_identity.email = ${sqlString(who.value.trim())}`);
    if (since.value) where.push(`event_time >= to_timestamp(${Math.floor(Date.now() / 1000) - Number(since.value)})`);
    const sql = "SELECT epoch_ms(event_time) AS time_ms, request_id, user_identity.email AS who, service_name, action_name, " +
      "response.status_code AS status_code, response.error_code AS error_code, response.error_message AS error_message, " +
      "source_ip_address, user_agent, http_method, path, request_params FROM system.access.audit" +
      (where.length ? ` WHERE ${where.join(" AND ")}` : "") + ` ORDER BY event_time DESC LIMIT ${Number(limit.value)}`;
    info.textContent = "Querying…";
    try {
      const res = await api("/api/2.0/modelport/tables/query", { method: "POST", body: { sql } });
      const cols = res.columns;
      const rows = (res.rows || []).map((r) => Object.fromEntries(cols.map((c, i) => [c, r[i]])));
      info.textContent = `${rows.length} event(s)${res.truncated ? " (truncated)" : ""}. Events reach the table within a few seconds.`;
      tbody.replaceChildren(...rows.map((r) => {
        const open = h("button", { type: "button", class: "secondary", "data-request-id": r.request_id }, "Open");
        open.addEventListener("click", () => showEvent(r));
        const ok = r.status_code < 400;
        return h("tr", { class: "clickable" },
          h("td", { "data-label": "Time" }, fmtTime(r.time_ms)),
          h("td", { "data-label": "Who" }, r.who || "(not signed in)"),
          h("td", { "data-label": "Service" }, r.service_name),
          h("td", { "data-label": "Action" }, h("code", {}, r.action_name)),
          h("td", { "data-label": "Status" }, h("span", { class: `badge state-${ok ? "ready" : "failed"}` }, String(r.status_code)), r.error_code ? ` ${r.error_code}` : ""),
          h("td", { "data-label": "From" }, r.source_ip_address || "–"),
          h("td", { "data-label": "Request id" }, h("code", {}, r.request_id || "")),
          h("td", {}, open));
      }));
    } catch (e) {
      info.textContent = "";
      err.append(errorBox(e));
    }
  };
  const showEvent = (r) => {
    detailBox.replaceChildren(h("section", { class: "card", "aria-labelledby": "audit-title" },
      h("h2", { id: "audit-title", tabindex: "-1" }, `${r.http_method} ${r.path}`),
      h("p", { class: "muted" }, `${fmtTime(r.time_ms)} · ${r.who || "not signed in"} · ${r.source_ip_address || ""} · ${r.user_agent || ""} · request ${r.request_id}`),
      r.error_message ? h("p", { id: "audit-message" }, `${r.error_code || ""}: ${r.error_message}`) : "",
      h("h3", {}, "Request parameters"), h("pre", { id: "audit-params", tabindex: "0" }, pretty(r.request_params || {}))));
    detailBox.querySelector("#audit-title").focus();
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); query(); });
  await query();
}

// ---------- start ----------

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await fetch(SESSION, { method: "DELETE", credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken() } });
  } finally {
    signedIn = false;
    location.hash = "#/login";
  }
});
window.addEventListener("hashchange", render);
render();

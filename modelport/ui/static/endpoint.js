// One endpoint's page (#/endpoints/NAME): header and update progress, the configuration and
// traffic editor, the AI gateway, and the cards of the other modules (charts.js,
// endpoint_cards.js, rollouts.js, features.js, monitors.js).

import { cacheText, setupCharts } from "./charts.js";
import { api, enc, entityDesc, EP, errorBox, every, fmtTime, h, stateBadge, toast, ui, uid } from "./core.js";
import { setupLogs, setupOpenapi, setupPermissions, setupSnippets } from "./endpoint_cards.js";
import { extensionForm } from "./extension_form.js";
import { endpointFeatures } from "./features.js";
import { gatewayForm, putGateway } from "./gateway_form.js";
import { endpointHistory } from "./history.js";
import { endpointMonitor } from "./monitors.js";
import { endpointEvents } from "./events.js";
import { endpointRollouts } from "./rollouts.js";

// ---------- endpoint page ----------

function cleanEntity(e) {
  const out = { ...e };
  for (const k of ["state", "creator", "creation_timestamp", "foundation_model", "entity_version_display"]) delete out[k];
  if (out.external_model) out.external_model = JSON.parse(JSON.stringify(out.external_model));
  return out;
}

/** The config as PUT .../config takes it: served entities, traffic and the shadow (kept, so
 * that a traffic change does not drop it; a rollout policy is per update: the extension form
 * sends one when asked). */
function editableConfig(detail) {
  const cfg = detail.config || detail.pending_config || {};
  const out = {
    served_entities: (cfg.served_entities || []).map(cleanEntity),
    traffic_config: { routes: ((cfg.traffic_config || {}).routes || []).map((r) => ({ served_entity_name: r.served_entity_name || r.served_model_name, traffic_percentage: r.traffic_percentage })) },
  };
  if (cfg.shadow) out.shadow = { ...cfg.shadow };
  return out;
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
export function allowed(detail) {
  const manage = detail.permission_level === "CAN_MANAGE";
  return { manage, reconfigure: manage && !detail.modelport_system };
}

export async function endpointPage(name) {
  const main = ui.view;
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
  let updateEvents = () => {};

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
    updateEvents(detail);
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
  const historyCard = h("section", { class: "card", "aria-labelledby": "history-title", id: "endpoint-history" }, h("h2", { id: "history-title" }, "Metrics history"));
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
    historyCard,
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
  endpointHistory(historyCard, detail);
  updateLogs = setupLogs(logs, detail, url);
  setupOpenapi(openapi, url);
  updateSnippets = setupSnippets(snippets, detail, url);
  setupPermissions(perms, detail);
  endpointFeatures(features, name);
  endpointMonitor(monitorBox, detail);
  updateRollouts = endpointRollouts(rollouts, detail);
  updateEvents = endpointEvents(rollouts, detail); // the Events card, after the rollout cards
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
  let ext = null; // the shadow and rollout form, whose shadow choices follow the traffic
  Object.values(inputs).forEach((i) => i.addEventListener("input", () => { showTotal(); if (ext) ext.onTraffic(); }));
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
  const extBox = h("div", { id: "config-extensions" });
  const trafficNow = () => {
    const base = editableConfig(detail);
    delete base.shadow;
    base.traffic_config = { routes: served.map((e) => ({ served_entity_name: e.name, traffic_percentage: Number(inputs[e.name].value) })) };
    return base;
  };
  const table = h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "served-entities" },
    h("thead", {}, h("tr", {}, ["Served entity", "Model", "Size", "Deployment", "Traffic %"].map((t) => h("th", { scope: "col" }, t)))), tbody));
  if (!editable) {
    box.append(table);
    return;
  }
  box.append(table,
    h("div", { class: "actions" }, totalOut, saveTraffic),
    h("details", { id: "config-editor" }, h("summary", {}, "Advanced: edit the whole config as JSON (served_entities, traffic_config, shadow, rollout)"),
      h("label", { for: text.id }, "Config JSON"), text, h("div", { class: "actions" }, saveJson)),
    err, extBox);
  ext = extensionForm(extBox, { cfg: detail.config || detail.pending_config || {}, baseConfig: trafficNow, problemsOf: validateConfig, trafficInputs: inputs, url, refresh });
  if (busy) ext.buttons.forEach((b) => { b.disabled = true; });
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
  const itc = gw.inference_table_config;
  const summary = [];
  if (itc && itc.enabled) summary.push(h("li", {}, "Inference table ", h("a", { href: `#/tables/${enc(detail.name)}` }, `${itc.catalog_name}.${itc.schema_name}.${itc.table_name_prefix}_payload`)));
  if ((gw.usage_tracking_config || {}).enabled) summary.push(h("li", {}, "Usage tracking on"));
  if ((gw.rate_limits || []).length) summary.push(h("li", {}, `${gw.rate_limits.length} rate limit(s): `, gw.rate_limits.map((r) => `${r.calls ?? r.tokens} ${r.calls !== undefined ? "calls" : "tokens"}/${r.renewal_period} per ${r.key || "endpoint"}${r.principal ? ` ${r.principal}` : ""}`).join("; ")));
  if (gw.guardrails) summary.push(h("li", {}, "Guardrails: ", Object.entries(gw.guardrails).map(([side, g]) => `${side} (${Object.keys(g || {}).join(", ")})`).join("; ")));
  if ((gw.fallback_config || {}).enabled) summary.push(h("li", {}, "Fallbacks on"));
  const rc = gw.response_cache;
  if (rc && rc.enabled) {
    summary.push(h("li", { id: "response-cache" }, `Response cache: ${describeCache(rc)} · `,
      h("span", { id: "cache-hit-rate", title: "hits / (hits + misses) since the server started; not cacheable: non-deterministic requests" }, cacheText(cacheCounts))));
  }
  box.replaceChildren(summary.length ? h("ul", { id: "gateway-summary" }, summary) : h("p", { class: "muted" }, "No AI gateway features are enabled."));
  if (allowed(detail).manage) {
    gatewayForm(box, gw, async (body) => { await putGateway(url, body); await refresh(); });
  }
}

// Registered models (#/registry, #/registry/<name>): the MLflow registry this server embeds, read
// through its REST API with the session (registered-models/search, model-versions/search), each
// version's status and aliases, who may read the model (/api/2.0/permissions/registered-models)
// and which endpoints serve each version (joined here with the serving-endpoints listing).
// (#/models is MLflow's own UI route: app.js sends it to /mlflow/, so this page is #/registry.)

import { api, EP, enc, errorBox, field, fmtTime, h, select, sqlString, toast, ui } from "./core.js";

const MLFLOW = "/api/2.0/mlflow";
const PERMS = "/api/2.0/permissions/registered-models";
const LEVELS = ["CAN_READ", "CAN_EDIT", "CAN_MANAGE"];

function table(id, columns, rows, empty) {
  return h("div", { class: "table-wrap" }, h("table", { class: "responsive", id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)))));
}

/** Every page of a paginated MLflow search. */
async function searchAll(path, key, params = {}) {
  const out = [];
  let token = "";
  for (let i = 0; i < 50; i++) {
    const q = new URLSearchParams({ ...params, max_results: "1000" });
    if (token) q.set("page_token", token);
    const res = await api(`${MLFLOW}/${path}?${q}`);
    out.push(...(res[key] || []));
    token = res.next_page_token;
    if (!token) break;
  }
  return out;
}

/** The registered model an endpoint's entity_name names, as the server resolves it: the name,
 * models:/name, or catalog.schema.name (the last part). */
function registeredName(entityName, known) {
  const raw = String(entityName || "").replace(/^models:\//, "").replace(/^\/+|\/+$/g, "");
  if (known.has(raw)) return raw;
  const parts = raw.split(".");
  if (parts.length === 3 && parts.every(Boolean) && known.has(parts[2])) return parts[2];
  return raw;
}

/** name → version → [{endpoint, entity, via}] for every endpoint the caller may see. */
async function servingIndex(models) {
  const known = new Set(models.map((m) => m.name));
  const aliases = new Map(models.map((m) => [m.name, new Map((m.aliases || []).map((a) => [a.alias, String(a.version)]))]));
  const index = new Map();
  const { endpoints = [] } = await api(EP);
  for (const ep of endpoints) {
    const cfg = ep.config || ep.pending_config || {};
    for (const e of cfg.served_entities || []) {
      if (!e.entity_name || e.external_model || e.foundation_model) continue;
      const name = registeredName(e.entity_name, known);
      let version = String(e.entity_version || "");
      let via = "";
      if (version.startsWith("@")) {
        via = version;
        version = (aliases.get(name) || new Map()).get(version.slice(1)) || version;
      }
      if (!index.has(name)) index.set(name, new Map());
      const byVersion = index.get(name);
      if (!byVersion.has(version)) byVersion.set(version, []);
      byVersion.get(version).push({ endpoint: ep.name, entity: e.name, via });
    }
  }
  return index;
}

function servedBy(uses) {
  if (!uses || !uses.length) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "plain-list" }, uses.map((u) => h("li", { "data-endpoint": u.endpoint },
    h("a", { href: `#/endpoints/${enc(u.endpoint)}` }, u.endpoint),
    h("span", { class: "muted" }, ` (${u.entity}${u.via ? `, ${u.via}` : ""})`))));
}

const aliasBadges = (names) => names.length
  ? names.map((a) => h("span", { class: "badge alias", "data-alias": a }, `@${a}`))
  : h("span", { class: "muted" }, "–");

export async function modelsPage() {
  const main = ui.view;
  document.title = "Registered models · modelport";
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Registered models"),
    h("a", { href: "/mlflow/#/models", class: "button" }, "Open the MLflow UI")),
  h("p", { class: "muted" }, "Models of the MLflow registry this server serves from (only those you may read), with the endpoints that serve them."));
  const search = h("input", { type: "search", id: "model-search", placeholder: "model name" });
  const err = h("div");
  const box = h("div");
  main.append(h("div", { class: "row" }, field("Search", search).wrap), err, h("section", { class: "card", "aria-labelledby": "models-title" },
    h("h2", { id: "models-title" }, "Models"), box));
  let models = [];
  let index = new Map();
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = models.filter((m) => !q || m.name.toLowerCase().includes(q));
    box.replaceChildren(table("models", ["Model", "Latest version", "Aliases", "Served by", "Updated"], shown.map((m) => {
      const latest = (m.latest_versions || []).map((v) => Number(v.version)).sort((a, b) => b - a)[0];
      const uses = [...(index.get(m.name) || new Map()).values()].flat();
      return h("tr", { "data-model": m.name },
        h("td", { "data-label": "Model" }, h("a", { href: `#/registry/${enc(m.name)}` }, m.name)),
        h("td", { "data-label": "Latest version" }, latest ? String(latest) : "–"),
        h("td", { "data-label": "Aliases" }, aliasBadges((m.aliases || []).map((a) => `${a.alias} → v${a.version}`))),
        h("td", { "data-label": "Served by" }, servedBy(uses)),
        h("td", { "data-label": "Updated" }, fmtTime(m.last_updated_timestamp)));
    }), q ? "No model matches the search." : "No registered models you may read."));
  };
  search.addEventListener("input", draw);
  try {
    models = (await searchAll("registered-models/search", "registered_models")).sort((a, b) => a.name.localeCompare(b.name));
    index = await servingIndex(models);
  } catch (e) { err.append(errorBox(e)); }
  draw();
}

export async function modelPage(name) {
  const main = ui.view;
  document.title = `${name} · Registered models · modelport`;
  main.append(h("p", {}, h("a", { href: "#/registry" }, "← Registered models")),
    h("div", { class: "page-head" }, h("h1", {}, name),
      h("a", { href: `/mlflow/#/models/${enc(name)}`, class: "button", id: "model-mlflow-link" }, "Open in MLflow")));
  const model = (await api(`${MLFLOW}/registered-models/get?name=${enc(name)}`)).registered_model;
  const versions = (await searchAll("model-versions/search", "model_versions", { filter: `name=${sqlString(name)}` }))
    .sort((a, b) => Number(b.version) - Number(a.version));
  const versionAliases = new Map();
  for (const a of model.aliases || []) {
    const v = String(a.version);
    if (!versionAliases.has(v)) versionAliases.set(v, []);
    versionAliases.get(v).push(a.alias);
  }
  const servingErr = h("div");
  let index = new Map();
  try { index = await servingIndex([model]); } catch (e) { servingErr.append(errorBox(e)); }
  const byVersion = index.get(name) || new Map();
  main.append(h("dl", { class: "facts" },
    h("dt", {}, "Description"), h("dd", {}, model.description || "–"),
    h("dt", {}, "Created"), h("dd", {}, fmtTime(model.creation_timestamp)),
    h("dt", {}, "Updated"), h("dd", {}, fmtTime(model.last_updated_timestamp)),
    h("dt", {}, "Serve it as"), h("dd", {}, h("code", {}, `"entity_name": "${name}"`))));
  main.append(h("section", { class: "card", "aria-labelledby": "versions-title" },
    h("h2", { id: "versions-title" }, "Versions"), servingErr,
    table("versions", ["Version", "Status", "Aliases", "Served by", "Created", "Source run", ""], versions.map((v) => {
      const st = v.status || "READY";
      const cls = st === "READY" ? "ready" : st === "FAILED_REGISTRATION" ? "failed" : "updating";
      return h("tr", { "data-version": String(v.version) },
        h("td", { "data-label": "Version" }, `v${v.version}`),
        h("td", { "data-label": "Status" }, h("span", { class: `badge state-${cls}`, "data-status": st }, st), v.current_stage && v.current_stage !== "None" ? ` ${v.current_stage}` : ""),
        h("td", { "data-label": "Aliases" }, aliasBadges(versionAliases.get(String(v.version)) || v.aliases || [])),
        h("td", { "data-label": "Served by" }, servedBy(byVersion.get(String(v.version)))),
        h("td", { "data-label": "Created" }, fmtTime(v.creation_timestamp)),
        h("td", { "data-label": "Source run" }, v.run_id ? h("code", {}, v.run_id.slice(0, 12)) : "–"),
        h("td", {}, h("a", { href: `/mlflow/#/models/${enc(name)}/versions/${enc(v.version)}`, "aria-label": `Version ${v.version} in MLflow` }, "MLflow")));
    }), "No versions.")));
  const perms = h("section", { class: "card", "aria-labelledby": "model-perms-title", id: "model-permissions" },
    h("h2", { id: "model-perms-title" }, "Who may use it"));
  main.append(perms);
  await drawPermissions(perms, name);
}

async function drawPermissions(section, name) {
  const url = `${PERMS}/${enc(name)}`;
  const err = h("div", { id: "model-perms-error" });
  const box = h("div");
  const readers = h("p", { id: "model-readers" });
  const kind = select([["user_name", "User"], ["group_name", "Group"], ["service_principal_name", "Service principal"]]);
  kind.id = "model-grant-kind";
  const who = h("input", { type: "text", id: "model-grant-who", required: true, autocomplete: "off" });
  const level = select(LEVELS, "CAN_READ");
  level.id = "model-grant-level";
  const formErr = h("div", { id: "model-grant-error" });
  const form = h("form", { id: "model-grant-form", "aria-labelledby": "model-grant-title" },
    h("h3", { id: "model-grant-title" }, "Grant a permission"),
    h("div", { class: "row" }, field("Principal type", kind).wrap, field("Principal", who).wrap, field("Permission", level).wrap,
      h("div", { style: "flex:0" }, h("button", { type: "submit", id: "model-grant" }, "Grant"))), formErr);
  section.append(h("p", { class: "muted" }, "CAN_READ: see the model and its versions, and serve them; CAN_EDIT: add versions, aliases and tags; CAN_MANAGE: change these permissions, rename or delete."),
    readers, err, box, form);
  const load = async () => {
    err.replaceChildren();
    try {
      const acl = (await api(url)).access_control_list || [];
      const who = (a) => a.user_name || a.group_name || a.service_principal_name || "–";
      readers.replaceChildren(h("strong", {}, "May read: "), acl.map(who).join(", ") || "admins only");
      box.replaceChildren(table("model-acl", ["Principal", "Kind", "Permission"], acl.map((a) => h("tr", { "data-principal": who(a) },
        h("td", { "data-label": "Principal" }, who(a)),
        h("td", { "data-label": "Kind" }, a.user_name ? "user" : a.group_name ? "group" : "service principal"),
        h("td", { "data-label": "Permission" }, (a.all_permissions || []).map((p) => `${p.permission_level}${p.inherited ? " (inherited)" : ""}`).join(", ")))), "No grants."));
    } catch (e) { box.replaceChildren(); readers.replaceChildren(); form.hidden = true; err.append(errorBox(e)); }
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    formErr.replaceChildren();
    try {
      await api(url, { method: "PATCH", body: { access_control_list: [{ [kind.value]: who.value.trim(), permission_level: level.value }] } });
      toast(`Granted ${level.value} to ${who.value.trim()}`);
      who.value = "";
      await load();
    } catch (e) { formErr.append(errorBox(e)); }
  });
  await load();
}

// Feature tables: the list, one table (columns, keys, online state, publish, a lookup by key),
// and the endpoint page's "Features" section (what each served entity looks up, what is broken).
// app.js imports these pages and calls them only after both modules have run, so the helpers
// imported from it (a module cycle) are defined by then.

import { SESSION, api, enc, errorBox, every, field, fmtTime, h, select, toast } from "./core.js";

const FT = "/api/2.0/feature-engineering/tables";
const PUBLISH_MODES = ["snapshot", "triggered", "continuous"];

/** Where a table stands in the online store: [state class, badge text, detail]. */
function onlineOf(t) {
  const o = t.online;
  if (!o) return ["notready", "Not published", "lookups of it fail until it is published"];
  const detail = `${o.mode} · version ${o.published_version} · ${o.rows} row(s) · ${fmtTime(o.published_ms)}`;
  if (o.published_version < t.version) return ["updating", "Online, behind", `${detail} (the table is at version ${t.version})`];
  return ["ready", "Online", detail];
}

function onlineBadge(t) {
  const [cls, text] = onlineOf(t);
  return h("span", { class: `badge state-${cls}`, "data-online": cls }, text);
}

function keysText(t) {
  const ts = (t.timestamp_keys || []).length ? ` · time ${t.timestamp_keys.join(", ")}` : "";
  return `${(t.primary_keys || []).join(", ")}${ts}`;
}

function cell(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "null");
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

// ---------- the list ----------

export async function featureTablesPage(main) {
  document.title = "Feature tables · modelport";
  const search = h("input", { type: "search", id: "ft-search", placeholder: "name, key, column, description" });
  const count = h("p", { class: "muted", "aria-live": "polite" });
  const body = h("tbody");
  main.append(h("h1", {}, "Feature tables"),
    h("p", { class: "muted" }, "The feature tables you may read: Delta tables with a primary key, published to the online store for lookups by key (docs/features.md)."));
  const tables = ((await api(FT)).tables || []).sort((a, b) => a.name.localeCompare(b.name));
  if (!tables.length) {
    main.append(h("p", { class: "notice", id: "ft-empty" }, "No feature table you may read yet: create one with FeatureEngineeringClient().create_table(...) or modelport features create."));
    return;
  }
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const rows = tables.filter((t) => !q || [t.name, t.description, ...(t.primary_keys || []), ...(t.columns || []).map((c) => c.name)].join(" ").toLowerCase().includes(q));
    count.textContent = `${rows.length} of ${tables.length} feature tables`;
    body.replaceChildren(...rows.map((t) => h("tr", { "data-table": t.name },
      h("td", { "data-label": "Name" }, h("a", { href: `#/features/${enc(t.name)}` }, t.name), t.description ? h("div", { class: "muted" }, t.description) : null),
      h("td", { "data-label": "Keys" }, keysText(t)),
      h("td", { "data-label": "Columns" }, String((t.columns || []).length)),
      h("td", { "data-label": "Version" }, String(t.version)),
      h("td", { "data-label": "Last write" }, fmtTime(t.updated_ms)),
      h("td", { "data-label": "Online store" }, onlineBadge(t), h("div", { class: "muted" }, onlineOf(t)[2])))));
  };
  search.addEventListener("input", draw);
  main.append(h("section", { class: "card" },
    field("Search", search).wrap, count,
    h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "feature-tables" },
      h("thead", {}, h("tr", {}, ["Name", "Keys", "Columns", "Version", "Last write", "Online store"].map((c) => h("th", { scope: "col" }, c)))),
      body))));
  draw();
}

// ---------- one table ----------

/** Whether the signed-in principal holds MANAGE on the table (publishing needs it). */
async function mayManage(name) {
  const me = await api(SESSION);
  if (me.is_admin) return true;
  let acl;
  try { acl = await api(`/api/2.0/permissions/tables/${enc(name)}`); } catch { return false; }
  const groups = new Set(me.groups || []);
  return (acl.access_control_list || []).some((e) =>
    (e.user_name === me.user_name || e.service_principal_name === me.user_name || (e.group_name && groups.has(e.group_name))) &&
    (e.all_permissions || []).some((p) => p.permission_level === "MANAGE"));
}

/** A key typed into the lookup form, as the column's type reads it (an error names the column). */
function keyValue(text, column) {
  const type = String(column.type || "").toLowerCase();
  if (/^u?int\d*$/.test(type) || ["bigint", "smallint", "tinyint", "int"].includes(type)) {
    if (!/^-?\d+$/.test(text)) throw new Error(`${column.name} is a whole number (${column.type}).`);
    return Number(text);
  }
  if (/^(float|double|halffloat)\d*$/.test(type) || type.startsWith("decimal")) {
    const n = Number(text);
    if (text === "" || !Number.isFinite(n)) throw new Error(`${column.name} is a number (${column.type}).`);
    return n;
  }
  if (type === "bool" || type === "boolean") {
    if (!["true", "false"].includes(text.toLowerCase())) throw new Error(`${column.name} is true or false.`);
    return text.toLowerCase() === "true";
  }
  return text;
}

export async function featureTablePage(main, name) {
  document.title = `${name} · Feature tables · modelport`;
  const url = `${FT}/${enc(name)}`;
  let table = await api(url);
  const header = h("div");
  const online = h("section", { class: "card", "aria-labelledby": "ft-online-title", id: "ft-online" });
  const columns = h("section", { class: "card", "aria-labelledby": "ft-columns-title" });
  const lookup = h("section", { class: "card", "aria-labelledby": "ft-lookup-title", id: "ft-lookup" });
  const lookupNote = h("p", { class: "muted" });
  const canPublish = await mayManage(name).catch(() => false);

  const drawHeader = () => {
    header.replaceChildren(
      h("p", {}, h("a", { href: "#/features" }, "← Feature tables")),
      h("h1", {}, table.name, " ", onlineBadge(table)),
      table.description ? h("p", { id: "ft-description" }, table.description) : null,
      h("p", { class: "muted" }, `Primary key ${table.primary_keys.join(", ")}${(table.timestamp_keys || []).length ? ` · timestamp key ${table.timestamp_keys.join(", ")}` : ""} · version ${table.version} · last write ${fmtTime(table.updated_ms)} · created ${fmtTime(table.created_ms)}`));
  };
  const drawColumns = () => {
    const published = new Set(((table.online || {}).columns) || []);
    const role = (c) => table.primary_keys.includes(c.name) ? "primary key" : (table.timestamp_keys || []).includes(c.name) ? "timestamp key" : "feature";
    columns.replaceChildren(h("h2", { id: "ft-columns-title" }, "Columns"),
      h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "ft-columns" },
        h("thead", {}, h("tr", {}, ["Column", "Type", "Role", "In the online copy"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, (table.columns || []).map((c) => h("tr", { "data-column": c.name },
          h("td", { "data-label": "Column" }, h("code", {}, c.name)),
          h("td", { "data-label": "Type" }, c.type, c.nullable === false ? " (not null)" : ""),
          h("td", { "data-label": "Role" }, role(c)),
          h("td", { "data-label": "In the online copy" }, table.online ? (published.has(c.name) ? "yes" : "no") : "–")))))));
  };
  const drawOnline = () => {
    const o = table.online;
    const [cls, text, detail] = onlineOf(table);
    online.replaceChildren(h("h2", { id: "ft-online-title" }, "Online store"));
    if (o) {
      online.append(h("dl", { class: "facts" },
        h("dt", {}, "State"), h("dd", {}, h("span", { class: `badge state-${cls}` }, text)),
        h("dt", {}, "Mode"), h("dd", { id: "ft-mode" }, o.mode),
        h("dt", {}, "Published version"), h("dd", { id: "ft-published-version" }, `${o.published_version}${o.published_version < table.version ? ` (the table is at ${table.version})` : ""}`),
        h("dt", {}, "Rows"), h("dd", { id: "ft-rows" }, String(o.rows)),
        h("dt", {}, "Published"), h("dd", {}, fmtTime(o.published_ms))));
    } else {
      online.append(h("p", { class: "notice", id: "ft-not-published" }, `Not published: ${detail}.`));
    }
    if (!canPublish) {
      online.append(h("p", { class: "muted" }, "Publishing needs MANAGE on the table."));
      return;
    }
    const mode = select(PUBLISH_MODES, (o && o.mode) || "snapshot");
    mode.id = "ft-publish-mode";
    const err = h("div");
    const button = h("button", { type: "submit", id: "ft-publish" }, o ? "Publish again" : "Publish");
    const form = h("form", { id: "ft-publish-form" }, h("div", { class: "row" }, field("Publish mode", mode).wrap, h("div", { style: "flex:0" }, button)),
      h("p", { class: "muted", id: "ft-publish-help" }, "snapshot and triggered copy the current version; continuous also follows every new version."), err);
    mode.setAttribute("aria-describedby", "ft-publish-help");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      err.replaceChildren();
      button.disabled = true;
      try {
        await api(`${url}/publish`, { method: "POST", body: { mode: mode.value } });
        table = await api(url);
        toast(`Published ${name} (${mode.value})`);
        drawAll();
        online.querySelector("#ft-publish").focus();
      } catch (e) {
        err.append(errorBox(e));
        button.disabled = false;
      }
    });
    online.append(form);
  };
  const drawLookup = () => {
    lookup.replaceChildren(h("h2", { id: "ft-lookup-title" }, "Look up a row"));
    const byName = Object.fromEntries((table.columns || []).map((c) => [c.name, c]));
    const inputs = table.primary_keys.map((k) => [byName[k] || { name: k, type: "string" }, h("input", { type: "text", id: `ft-key-${k}`, required: true, autocomplete: "off" })]);
    const ts = (table.timestamp_keys || [])[0];
    const asOf = ts ? h("input", { type: "text", id: "ft-as-of", autocomplete: "off", placeholder: "2024-05-01T12:00:00Z" }) : null;
    const result = h("div", { id: "ft-lookup-result", "aria-live": "polite" });
    const form = h("form", { id: "ft-lookup-form" },
      lookupNote,
      h("div", { class: "row" },
        inputs.map(([c, inp]) => field(`${c.name} (${c.type})`, inp).wrap),
        asOf ? field(`${ts} as of (optional)`, asOf, "ISO 8601 or epoch milliseconds; empty: the latest row.").wrap : null),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "ft-lookup-submit" }, "Look up")),
      result);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      result.replaceChildren();
      try {
        const key = {};
        for (const [c, inp] of inputs) key[c.name] = keyValue(inp.value.trim(), c);
        if (asOf && asOf.value.trim()) key[ts] = /^-?\d+$/.test(asOf.value.trim()) ? Number(asOf.value.trim()) : asOf.value.trim();
        const res = await api(`${url}/lookup`, { method: "POST", body: { keys: [key] } });
        const row = (res.rows || [])[0];
        if (!row) {
          result.append(h("p", { class: "notice", id: "ft-no-row" }, "No row for this key."));
          return;
        }
        const asked = Object.entries(key).map(([k, v]) => `${k} = ${v}`).join(", ");
        result.append(h("h3", {}, `Row for ${asked}`), h("div", { class: "table-wrap" }, h("table", { id: "ft-row" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Feature"), h("th", { scope: "col" }, "Value"))),
          h("tbody", {}, Object.entries(row).map(([k, v]) => h("tr", { "data-feature": k }, h("td", {}, h("code", {}, k)), h("td", {}, cell(v))))))));
      } catch (e) {
        result.append(errorBox(e));
      }
    });
    lookup.append(form);
  };
  const drawAll = () => {
    drawHeader();
    drawOnline();
    drawColumns();
    lookupNote.textContent = table.online ? "From the online copy, as an endpoint's lookups read it." : "The table is not published: a lookup says so.";
  };
  drawLookup();
  drawAll();
  main.append(header, h("div", { class: "grid2" }, online, lookup), columns);
}

// ---------- the endpoint page's section ----------

/** Which features each served entity looks up and what stops a lookup, polled every 5 s;
 * the section stays hidden while no entity looks anything up. */
export function endpointFeatures(section, name) {
  let last = "";
  const box = h("div");
  section.append(h("h2", { id: "features-title" }, "Features"), box);
  every(5000, async () => {
    const got = await api(`/api/2.0/feature-engineering/serving-endpoints/${enc(name)}/features`);
    const text = JSON.stringify(got);
    if (text === last) return;
    last = text;
    const shown = (got.served_entities || []).filter((e) => e.features.length || e.functions.length || e.problems.length);
    section.hidden = !shown.length;
    box.replaceChildren(
      h("p", { class: "muted" }, "Looked up in the online store by each query's keys; a feature sent with the query overrides its lookup."),
      ...shown.map(entityFeatures));
  }, section);
}

function entityFeatures(e) {
  const broken = (f) => e.problems.some((p) => p.table_name === f.table_name && (!p.feature_name || p.feature_name === f.feature_name));
  const about = e.entity_name ? ` ${e.entity_name}${e.entity_version ? ` v${e.entity_version}` : ""}` : "";
  return h("div", { class: "entity-features", "data-entity": e.name },
    h("h3", {}, e.name, h("span", { class: "muted" }, about)),
    e.problems.length ? h("div", { class: "error", role: "alert", "data-problems": e.name },
      h("strong", {}, "Queries fail now: "),
      h("ul", {}, e.problems.map((p) => h("li", {}, p.message)))) : null,
    e.features.length ? h("div", { class: "table-wrap" }, h("table", { class: "responsive", "data-features": e.name },
      h("caption", { class: "sr-only" }, `Features ${e.name} looks up`),
      h("thead", {}, h("tr", {}, ["Feature", "Table", "Column", "Lookup key", "Type", "Default", "Online"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, e.features.map((f) => h("tr", { "data-feature": f.output_name },
        h("td", { "data-label": "Feature" }, h("code", {}, f.output_name)),
        h("td", { "data-label": "Table" }, h("a", { href: `#/features/${enc(f.table_name)}` }, f.table_name)),
        h("td", { "data-label": "Column" }, f.feature_name),
        h("td", { "data-label": "Lookup key" }, f.lookup_key.join(", "), f.timestamp_lookup_key.length ? ` · as of ${f.timestamp_lookup_key.join(", ")}` : ""),
        h("td", { "data-label": "Type" }, f.data_type || "–"),
        h("td", { "data-label": "Default" }, f.default_value ?? "–"),
        h("td", { "data-label": "Online" }, broken(f) ? h("span", { class: "badge state-failed" }, "Failing") : h("span", { class: "badge state-ready" }, "OK"))))))) : null,
    e.functions.length ? h("div", { class: "table-wrap" }, h("table", { class: "responsive", "data-functions": e.name },
      h("caption", { class: "sr-only" }, `Feature functions of ${e.name}`),
      h("thead", {}, h("tr", {}, ["Output", "Function", "Inputs", "Type"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, e.functions.map((f) => h("tr", { "data-function": f.output_name },
        h("td", { "data-label": "Output" }, h("code", {}, f.output_name)),
        h("td", { "data-label": "Function" }, f.udf_name),
        h("td", { "data-label": "Inputs" }, Object.entries(f.input_bindings).map(([p, c]) => `${p} ← ${c}`).join(", ")),
        h("td", { "data-label": "Type" }, f.data_type || "–")))))) : null);
}

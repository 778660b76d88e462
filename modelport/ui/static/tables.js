// Inference tables (#/tables): the payload table of each endpoint, filtered, one row opened.

import { api, entitiesOf, EP, errorBox, field, fmtTime, h, pretty, select, sqlString, ui } from "./core.js";
import { sqlBox } from "./jobs.js";

// ---------- inference tables ----------

export async function tablesPage(selected) {
  const main = ui.view;
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

// The audit log (#/audit): system.access.audit, filtered.

import { api, errorBox, field, fmtTime, h, pretty, select, sqlString, ui } from "./core.js";

// ---------- audit log ----------

const AUDIT_SERVICES = ["serving", "permissions", "secrets", "tokens", "scim", "mlflow", "tables", "unityCatalog", "ui", "modelport"];

export async function auditPage() {
  const main = ui.view;
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

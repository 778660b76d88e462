// The AI gateway's usage dashboard (#/usage): system.serving.endpoint_usage totalled by endpoint,
// user, group, principal type, served entity, day or hour, filtered, with a per-day chart and a
// CSV export. One request draws the page: GET /api/2.0/modelport/usage?group_by=...&series=day.
// Non-admins (without SELECT on the table) are answered their own requests only (scope "own").

import { api, errorBox, field, h, select, ui } from "./core.js";

const USAGE = "/api/2.0/modelport/usage";
const KEYS = [
  ["endpoint", "Endpoint"],
  ["user", "User"],
  ["group", "Group"],
  ["principal_type", "Principal type"],
  ["served_entity", "Served entity"],
  ["day", "Day"],
  ["hour", "Hour"],
];
const KEY_LABEL = Object.fromEntries(KEYS);
const METRICS = [
  ["requests", "Requests"],
  ["input_tokens", "Input tokens"],
  ["output_tokens", "Output tokens"],
  ["total_tokens", "Total tokens"],
  ["errors", "Errors"],
  ["estimated", "Estimated"],
  ["latency_p50_ms", "p50 ms"],
  ["latency_avg_ms", "Avg ms"],
  ["latency_max_ms", "Max ms"],
];
const RANGES = [["1", "Last 24 hours"], ["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"], ["all", "All time"], ["custom", "Custom dates"]];
const SVG = "http://www.w3.org/2000/svg";

const fmt = (v) => (v === null || v === undefined ? "–" : typeof v === "number" ? v.toLocaleString("en-US") : String(v));

/** A key's cell as shown: days and hours in UTC, an empty user or group named. */
function keyText(key, v) {
  if (v === null || v === undefined) return key === "group" ? "(no group)" : "–";
  if (v === "") return key === "user" ? "(anonymous)" : "(none)";
  if (key === "hour") return `${String(v).slice(0, 13).replace("T", " ")}:00 UTC`;
  return String(v);
}

/** The route's parameters for the form's current values (also the CSV link's). */
export function usageParams(form) {
  const p = new URLSearchParams();
  const keys = [form.groupBy.value, form.thenBy.value].filter((k, i, all) => k && all.indexOf(k) === i);
  p.set("group_by", keys.join(","));
  const range = form.range.value;
  if (range === "custom") {
    if (form.since.value) p.set("since", form.since.value);
    if (form.until.value) p.set("until", form.until.value);
  } else if (range !== "all") {
    const since = new Date(Date.now() - Number(range) * 86400000);
    p.set("since", since.toISOString().slice(0, 19) + "Z");
  }
  for (const name of ["endpoint", "user", "group", "served_entity"]) {
    const v = form[name].value.trim();
    if (v) p.set(name, v);
  }
  return p;
}

/** Requests per day as SVG bars (errors stacked in red), with a text alternative. */
function dayChart(series) {
  const wrap = h("figure", { class: "usage-chart", id: "usage-chart" });
  const caption = h("figcaption", {}, "Requests per day (UTC); errors in red");
  if (!series.length) {
    wrap.append(caption, h("p", { class: "muted" }, "No requests in this range."));
    return wrap;
  }
  const W = 640, H = 160, pad = 24;
  const max = Math.max(...series.map((s) => s.requests), 1);
  const bw = Math.min((W - pad) / series.length, 48);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 18}`);
  svg.setAttribute("role", "img");
  const total = series.reduce((a, s) => a + s.requests, 0);
  svg.setAttribute("aria-label", `Requests per day: ${series.length} day(s), ${total.toLocaleString("en-US")} requests, at most ${max.toLocaleString("en-US")} a day.`);
  const axis = document.createElementNS(SVG, "text");
  axis.setAttribute("x", "0");
  axis.setAttribute("y", "12");
  axis.setAttribute("class", "usage-axis");
  axis.textContent = max.toLocaleString("en-US");
  svg.append(axis);
  series.forEach((s, i) => {
    const x = pad + i * bw;
    const bh = (s.requests / max) * (H - 16);
    const eh = (s.errors / max) * (H - 16);
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("x", String(x + 1));
    bar.setAttribute("y", String(H - bh));
    bar.setAttribute("width", String(Math.max(bw - 2, 1)));
    bar.setAttribute("height", String(bh));
    bar.setAttribute("class", "usage-bar");
    bar.setAttribute("data-day", s.day);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${s.day}: ${s.requests} requests, ${s.errors} errors`;
    bar.append(title);
    svg.append(bar);
    if (eh > 0) {
      const err = document.createElementNS(SVG, "rect");
      err.setAttribute("x", String(x + 1));
      err.setAttribute("y", String(H - eh));
      err.setAttribute("width", String(Math.max(bw - 2, 1)));
      err.setAttribute("height", String(eh));
      err.setAttribute("class", "usage-bar-error");
      svg.append(err);
    }
    if (series.length <= 14 || i % Math.ceil(series.length / 10) === 0) {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", String(x + bw / 2));
      label.setAttribute("y", String(H + 14));
      label.setAttribute("class", "usage-axis");
      label.setAttribute("text-anchor", "middle");
      label.textContent = String(s.day).slice(5);
      svg.append(label);
    }
  });
  wrap.append(caption, svg);
  return wrap;
}

function totalsBox(totals) {
  const items = [
    ["requests", "Requests"], ["input_tokens", "Input tokens"], ["output_tokens", "Output tokens"],
    ["errors", "Errors"], ["latency_p50_ms", "Latency p50 (ms)"], ["latency_max_ms", "Latency max (ms)"],
  ];
  return h("dl", { class: "usage-totals", id: "usage-totals" },
    items.map(([k, label]) => h("div", { "data-metric": k }, h("dt", {}, label), h("dd", {}, fmt(totals[k])))));
}

function rowsTable(res) {
  const keys = res.group_by;
  const head = [...keys.map((k) => KEY_LABEL[k]), ...METRICS.map(([, l]) => l)];
  const tbody = h("tbody", {}, res.rows.map((r) => h("tr", {},
    keys.map((k) => h("td", { "data-label": KEY_LABEL[k], "data-key": k }, keyText(k, r[k]))),
    METRICS.map(([m, l]) => h("td", { "data-label": l, "data-metric": m, class: "num" }, fmt(r[m]))))));
  return h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "usage-rows" },
    h("caption", { class: "muted" }, `Usage by ${keys.map((k) => KEY_LABEL[k].toLowerCase()).join(" and ")}${res.truncated ? " (first 10,000 rows)" : ""}`),
    h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))), tbody));
}

export async function usagePage() {
  const main = ui.view;
  document.title = "Usage · modelport";
  const note = h("p", { class: "notice", id: "usage-scope", hidden: true },
    "You see your own usage only: an admin (or a SELECT grant on system.serving.endpoint_usage) shows everyone's.");
  main.append(h("h1", {}, "Usage"),
    h("p", { class: "muted" }, "Calls, tokens, errors and latency through the AI gateway, from system.serving.endpoint_usage (endpoints with usage tracking on). Times in UTC."),
    note);
  const f = {
    range: select(RANGES, "7"),
    since: h("input", { type: "date", id: "usage-since", disabled: true }),
    until: h("input", { type: "date", id: "usage-until", disabled: true }),
    endpoint: h("input", { type: "text", id: "usage-endpoint", list: "usage-endpoints", autocomplete: "off" }),
    user: h("input", { type: "text", id: "usage-user", list: "usage-users", autocomplete: "off" }),
    group: h("input", { type: "text", id: "usage-group", autocomplete: "off" }),
    served_entity: h("input", { type: "text", id: "usage-entity", autocomplete: "off" }),
    groupBy: select(KEYS, "endpoint"),
    thenBy: select([["", "Nothing"], ...KEYS], ""),
  };
  f.range.id = "usage-range";
  f.groupBy.id = "usage-group-by";
  f.thenBy.id = "usage-then-by";
  const lists = { endpoint: h("datalist", { id: "usage-endpoints" }), user: h("datalist", { id: "usage-users" }) };
  const run = h("button", { type: "submit", id: "usage-run" }, "Show usage");
  const csv = h("a", { class: "button secondary", id: "usage-csv", href: USAGE, download: "usage.csv" }, "Export CSV");
  const info = h("p", { class: "muted", "aria-live": "polite", id: "usage-info" });
  const err = h("div");
  const form = h("form", { class: "card", id: "usage-form", "aria-label": "Usage filters" },
    h("div", { class: "row" }, field("Time range", f.range).wrap, field("From (UTC)", f.since).wrap, field("Until (UTC, inclusive)", f.until).wrap),
    h("div", { class: "row" }, field("Endpoint", f.endpoint).wrap, field("User", f.user).wrap, field("Group", f.group).wrap, field("Served entity", f.served_entity).wrap),
    h("div", { class: "row" }, field("Group by", f.groupBy).wrap, field("Then by", f.thenBy).wrap),
    h("div", { class: "actions" }, run, csv), lists.endpoint, lists.user, info, err);
  const totals = h("section", { class: "card", "aria-labelledby": "usage-totals-title" }, h("h2", { id: "usage-totals-title" }, "Totals"));
  const chart = h("section", { class: "card", "aria-labelledby": "usage-chart-title" }, h("h2", { id: "usage-chart-title" }, "Per day"));
  const table = h("section", { class: "card", "aria-labelledby": "usage-table-title" }, h("h2", { id: "usage-table-title" }, "Breakdown"));
  main.append(form, totals, chart, table);
  f.range.addEventListener("change", () => {
    const custom = f.range.value === "custom";
    f.since.disabled = !custom;
    f.until.disabled = !custom;
    if (custom && !f.since.value) f.since.value = new Date(Date.now() - 7 * 86400000).toISOString().slice(0, 10);
  });
  const remember = (list, values) => {
    const known = new Set([...list.options].map((o) => o.value));
    for (const v of values) if (v && !known.has(v)) { known.add(v); list.append(h("option", { value: v })); }
  };
  let seq = 0;
  const query = async () => {
    const mine = ++seq;
    err.replaceChildren();
    const params = usageParams(f);
    const csvParams = new URLSearchParams(params);
    csvParams.set("format", "csv");
    csv.href = `${USAGE}?${csvParams}`;
    csv.setAttribute("download", `usage-${params.get("group_by").replace(/,/g, "-")}.csv`);
    params.set("series", "day");
    info.textContent = "Querying…";
    try {
      const res = await api(`${USAGE}?${params}`);
      if (mine !== seq) return;
      note.hidden = res.scope !== "own";
      info.textContent = `${res.rows.length} row(s)${res.truncated ? " (truncated)" : ""}. Requests reach the table within a few seconds.`;
      totals.replaceChildren(totals.firstChild, totalsBox(res.totals));
      chart.replaceChildren(chart.firstChild, dayChart(res.series || []));
      table.replaceChildren(table.firstChild, res.rows.length ? rowsTable(res) : h("p", { class: "muted", id: "usage-empty" }, "No requests match."));
      if (res.group_by.includes("endpoint")) remember(lists.endpoint, res.rows.map((r) => r.endpoint));
      if (res.group_by.includes("user")) remember(lists.user, res.rows.map((r) => r.user));
      main.dataset.ready = String(mine);
      performance.mark("usage-drawn");
    } catch (e) {
      if (mine !== seq) return;
      info.textContent = "";
      err.append(errorBox(e));
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); query(); });
  await query();
}

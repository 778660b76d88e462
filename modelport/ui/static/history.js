// The endpoint page's "Metrics history" card: request rate, latency p50/p99, errors by status,
// replicas and concurrency over the last hour, 24 hours, 7 or 14 days, from
// GET /api/2.0/serving-endpoints/{name}/metrics/history (kept in the store by every server
// process: it survives restarts). Charts for the eye, a table of the same values for screen
// readers and keyboard users.

import { fmtNum, lineChart } from "./charts.js";
import { api, EP, enc, errorBox, every, field, h, select } from "./core.js";

const HOUR = 3600_000;
/** [key, button label, range ms, words for the summary]. */
export const RANGES = [
  ["1h", "1 h", HOUR, "last hour"],
  ["24h", "24 h", 24 * HOUR, "last 24 hours"],
  ["7d", "7 d", 7 * 24 * HOUR, "last 7 days"],
  ["14d", "14 d", 14 * 24 * HOUR, "last 14 days"],
];

const CHARTS = [
  ["rps", "Requests/s", ["#1f5fbf"], (p) => [p.requests_per_second]],
  ["latency", "Latency p50 / p99", ["#1f5fbf", "#b35c00"], (p) => [p.latency_p50_ms, p.latency_p99_ms]],
  ["errors", "Errors 4xx / 5xx", ["#b35c00", "#a40e26"], (p) => [p.errors_4xx, p.errors_5xx]],
  ["replicas", "Replicas (most in step)", ["#146c2e"], (p) => [p.replicas]],
  ["concurrency", "Concurrency (mean)", ["#6b3fa0"], (p) => [p.concurrency]],
];

function stepWords(step) {
  if (step % 3600 === 0) return step === 3600 ? "hour" : `${step / 3600} hours`;
  return step === 60 ? "minute" : `${step / 60} minutes`;
}

function timeLabel(ms, rangeMs) {
  const d = new Date(ms);
  if (rangeMs <= 24 * HOUR) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** fmtNum, with two significant digits for small rates (0.0017/s rather than 0). */
function fmtSmall(v, unit = "") {
  if (v !== null && v !== undefined && Number.isFinite(v) && v !== 0 && Math.abs(v) < 0.01) return `${v.toPrecision(2)}${unit}`;
  return fmtNum(v, unit);
}

function sum(points, key) {
  return points.reduce((a, p) => a + (p[key] || 0), 0);
}

function peak(values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x));
  return v.length ? Math.max(...v) : null;
}

/** Draw the card into ``section`` (its h2 is there already) for endpoint ``detail``. */
export function endpointHistory(section, detail) {
  const url = `${EP}/${enc(detail.name)}/metrics/history`;
  let range = RANGES[0];
  let entity = "";
  const buttons = RANGES.map((r) => {
    const b = h("button", { type: "button", class: "secondary", "data-range": r[0], "aria-pressed": String(r === range) }, r[1]);
    b.addEventListener("click", () => { range = r; press(); load(); });
    return b;
  });
  const press = () => buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.range === range[0])));
  const entities = ((detail.config || detail.pending_config || {}).served_entities || []).map((e) => e.name);
  const entitySelect = select([["", "All served entities"], ...entities.map((n) => [n, n])], "");
  entitySelect.id = "history-entity"; // before field(): its label points at the id
  const picker = field("Served entity", entitySelect);
  picker.input.addEventListener("change", () => { entity = picker.input.value; load(); });
  const summary = h("p", { id: "history-summary", "aria-live": "polite" }, "Loading…");
  const grid = h("div", { class: "charts history-charts" });
  const boxes = {};
  for (const [k, title] of CHARTS) {
    const box = h("figure", { class: "chart", id: `history-${k}` },
      h("figcaption", { class: "muted" }, title), h("div", { class: "value", "data-history-value": k }, "–"), h("div"));
    boxes[k] = box;
    grid.append(box);
  }
  const table = h("details", { id: "history-table" }, h("summary", {}, "Values as a table"), h("div"));
  const err = h("div");
  section.append(
    h("p", { class: "muted" }, "Kept 14 days: by minute for 48 hours, then by hour. Counts of every server process."),
    h("div", { class: "row history-controls" },
      h("div", { role: "group", "aria-label": "Range", class: "history-ranges" }, buttons),
      picker.wrap),
    summary, grid, table, err);

  let seq = 0;
  const load = async () => {
    const mine = ++seq;
    const until = Date.now();
    const params = new URLSearchParams({ since: String(until - range[2]), until: String(until) });
    if (entity) params.set("served_entity", entity);
    let data;
    try { data = await api(`${url}?${params}`); err.replaceChildren(); } catch (e) {
      if (mine === seq) err.replaceChildren(errorBox(e));
      return;
    }
    if (mine !== seq) return; // a newer range was picked meanwhile
    draw(data);
  };

  const draw = (data) => {
    const pts = data.points || [];
    const total = sum(pts, "requests");
    const e4 = sum(pts, "errors_4xx"), e5 = sum(pts, "errors_5xx");
    section.dataset.range = range[0];
    section.dataset.requests = String(total);
    section.dataset.step = String(data.step);
    const words = `${range[3][0].toUpperCase()}${range[3].slice(1)}`;
    summary.textContent = `${words}, by ${stepWords(data.step)}: ${total} requests, ${e4} 4xx and ${e5} 5xx errors.`;
    const first = pts.length ? timeLabel(pts[0].time_ms, range[2]) : "";
    const last = pts.length ? timeLabel(pts[pts.length - 1].time_ms, range[2]) : "";
    for (const [k, , colors, pick] of CHARTS) {
      const series = colors.map((_, i) => pts.map((p) => { const v = pick(p)[i]; return v === undefined ? null : v; }));
      const box = boxes[k];
      let value;
      if (k === "rps") value = `${total} req · ${fmtSmall(total / Math.max(1, range[2] / 1000))}/s avg`;
      else if (k === "latency") value = `${fmtNum(peak(series[0]), "ms")} / ${fmtNum(peak(series[1]), "ms")} peak`;
      else if (k === "errors") value = `${e4} / ${e5}`;
      else value = peak(series[0]) === null ? "–" : `${fmtSmall(peak(series[0]))} peak`;
      box.querySelector("[data-history-value]").textContent = value;
      box.dataset.points = String(pts.length);
      box.dataset.total = k === "rps" ? String(total) : k === "errors" ? String(e4 + e5) : "";
      box.lastChild.replaceChildren(lineChart(series, colors), h("div", { class: "muted axis history-axis" }, h("span", {}, first), h("span", {}, last)));
    }
    const codes = [...new Set(pts.flatMap((p) => Object.keys(p.errors || {})))].sort();
    const rows = pts.filter((p) => p.requests || p.replicas);
    const cols = ["Time", "Requests", "Req/s", ...codes.map((c) => `HTTP ${c}`), "p50 (ms)", "p99 (ms)", "Replicas", "Concurrency"];
    table.lastChild.replaceChildren(rows.length ? h("div", { class: "table-wrap" }, h("table", { class: "responsive" },
      h("caption", { class: "muted" }, `Steps of the ${range[3]} with requests or replicas`),
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((p) => {
        const cells = [timeLabel(p.time_ms, range[2]), String(p.requests), fmtSmall(p.requests_per_second),
          ...codes.map((c) => String((p.errors || {})[c] || 0)), fmtNum(p.latency_p50_ms), fmtNum(p.latency_p99_ms),
          fmtNum(p.replicas), fmtSmall(p.concurrency)];
        return h("tr", {}, cells.map((v, i) => h("td", { "data-label": cols[i] }, v)));
      }))))
      : h("p", { class: "muted" }, "No requests or replicas in this range."));
  };

  // The first load now (the section is on the page), then every 15 s: each server process
  // writes its counts to the store every few seconds.
  every(15000, load, section);
}

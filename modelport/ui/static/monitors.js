// Quality monitors: the list, one monitor's page (its configuration, refreshes, the drift of each
// column, profiles and model quality over windows, drawn as inline SVG) and the endpoint page's
// "Monitor" section. app.js imports these pages and calls them only after both modules have run,
// so the helpers imported from it (a module cycle) are defined by then.

import { SESSION, api, enc, errorBox, every, field, fmtTime, h, select, toast } from "./core.js";

const LIST = "/api/2.0/modelport/monitors";
const METRICS = `${LIST}/metrics`;
const UC = "/api/2.1/unity-catalog/tables";
/** A column drifts at js_distance >= JS or a KS p-value < KS_P (the server's list counts the same). */
const JS = 0.1;
const KS_P = 0.05;
const DRIFT_STATS = [
  ["js_distance", "Jensen-Shannon distance"],
  ["ks_pvalue", "KS test p-value"],
  ["wasserstein_distance", "Wasserstein distance"],
  ["population_stability_index", "Population stability index"],
  ["chi_squared_pvalue", "Chi-squared test p-value"],
];
const PROFILE_STATS = [
  ["avg", "Average"], ["median", "Median"], ["stddev", "Standard deviation"], ["min", "Minimum"], ["max", "Maximum"],
  ["percent_null", "Percent null"], ["percent_zeros", "Percent zeros"], ["percent_distinct", "Percent distinct"],
  ["distinct_count", "Distinct count"], ["count", "Count"], ["avg_length", "Average length"],
];
const QUALITY_STATS = [
  ["accuracy_score", "Accuracy"], ["f1_score_weighted", "F1 (weighted)"], ["precision_weighted", "Precision (weighted)"],
  ["recall_weighted", "Recall (weighted)"], ["log_loss", "Log loss"], ["roc_auc_score", "ROC AUC"],
  ["root_mean_squared_error", "RMSE"], ["mean_squared_error", "MSE"], ["mean_absolute_error", "MAE"],
  ["mean_absolute_percentage_error", "MAPE"], ["r2_score", "R²"],
];
const COLORS = ["#1f5fbf", "#b8420f", "#146c2e", "#7a3fa0", "#8a6d00", "#0f7c86"];
const DASHES = ["", "6 3", "2 3", "8 3 2 3", "1 2", "10 4"];
const ACTIVE = ["PENDING", "RUNNING"];

const profileOf = (m) => m.inference_log ? "InferenceLog" : m.time_series ? "TimeSeries" : m.snapshot ? "Snapshot" : "–";
const granularitiesOf = (m) => (m.inference_log || m.time_series || {}).granularities || [];

function statusBadge(m) {
  const bad = m.status === "MONITOR_STATUS_ERROR";
  return h("span", { class: `badge state-${bad ? "failed" : "ready"}`, "data-status": m.status }, bad ? "Error" : "Active");
}

function refreshBadge(r) {
  if (!r) return h("span", { class: "muted" }, "never refreshed");
  const cls = r.state === "SUCCESS" ? "ready" : ACTIVE.includes(r.state) ? "updating" : r.state === "FAILED" ? "failed" : "notready";
  return h("span", { class: `badge state-${cls}`, "data-refresh-state": r.state }, r.state);
}

const fmt = (v) => (v === null || v === undefined || !Number.isFinite(v)) ? "–" : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
const fmtDate = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 16);

/** Whether a drift row's column drifted, and why (text: the verdict is never colour only). */
export function drifted(row) {
  const js = row.js_distance, p = row.ks_pvalue;
  const why = [];
  if (Number.isFinite(js) && js >= JS) why.push(`JS distance ${fmt(js)} ≥ ${JS}`);
  if (Number.isFinite(p) && p < KS_P) why.push(`KS p-value ${fmt(p)} < ${KS_P}`);
  return why;
}

/** Rows of a metrics answer as objects. */
function rowsOf(answer) {
  return answer.rows.map((r) => Object.fromEntries(answer.columns.map((c, i) => [c, r[i]])));
}

// ---------- the chart ----------

/** A line chart of ``series`` ([{name, points: [[x, y], ...]}]) as inline SVG, with axis labels,
 * an optional threshold line and a legend in text; each line a <path> with data-series,
 * data-points (how many) and data-values (its ys). */
export function chart(title, series, { threshold, xs, small } = {}) {
  const [W, H] = small ? [320, 140] : [640, 200];
  const L = 46, R = 10, T = 10, B = 26;
  const ns = "http://www.w3.org/2000/svg";
  const allX = xs || [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  if (Number.isFinite(threshold)) ys.push(threshold);
  let lo = Math.min(0, ...ys), hi = Math.max(...ys, 1e-9);
  if (hi === lo) hi = lo + 1;
  const x0 = allX[0], x1 = allX[allX.length - 1];
  const px = (x) => L + (allX.length < 2 ? (W - L - R) / 2 : ((x - x0) / (x1 - x0)) * (W - L - R));
  const py = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const last = series.map((s) => `${s.name}: ${s.points.length ? fmt(s.points[s.points.length - 1][1]) : "no value"}`).join("; ");
  svg.setAttribute("aria-label", `${title}, ${allX.length} window(s)${allX.length ? ` from ${fmtDate(x0)} to ${fmtDate(x1)}` : ""}. Latest: ${last || "no data"}.`);
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  el("line", { x1: L, x2: W - R, y1: py(lo), y2: py(lo), class: "axis-line" });
  el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis-line" });
  el("text", { x: L - 4, y: py(hi) + 4, "text-anchor": "end", class: "tick" }, fmt(hi));
  el("text", { x: L - 4, y: py(lo), "text-anchor": "end", class: "tick" }, fmt(lo));
  if (allX.length) {
    el("text", { x: L, y: H - 6, "text-anchor": "start", class: "tick" }, fmtDate(x0));
    if (allX.length > 1) el("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "tick" }, fmtDate(x1));
  }
  if (Number.isFinite(threshold)) {
    el("line", { x1: L, x2: W - R, y1: py(threshold), y2: py(threshold), class: "threshold", "data-threshold": threshold });
    el("text", { x: W - R, y: py(threshold) - 3, "text-anchor": "end", class: "tick" }, `threshold ${threshold}`);
  }
  series.forEach((s, k) => {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    const d = pts.map((p, i) => `${i ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ");
    el("path", { d, fill: "none", stroke: COLORS[k % COLORS.length], "stroke-width": 2, "stroke-dasharray": DASHES[k % DASHES.length],
      "data-series": s.name, "data-points": pts.length, "data-values": pts.map((p) => p[1]).join(",") });
    for (const p of pts) el("circle", { cx: px(p[0]), cy: py(p[1]), r: 3, fill: COLORS[k % COLORS.length] });
  });
  const legend = h("ul", { class: "legend" }, series.map((s, k) => h("li", {},
    h("span", { class: "swatch", "data-k": k % COLORS.length, "aria-hidden": "true" }), s.name)));
  return h("figure", { class: "mchart" }, h("figcaption", {}, title), svg, series.length > 1 ? legend : null);
}

// ---------- the list ----------

export async function monitorsPage(main) {
  document.title = "Monitors · modelport";
  main.append(h("h1", {}, "Monitors"),
    h("p", { class: "muted" }, `Quality monitors of the tables you may read: data profiles, drift and model quality per time window (docs/monitoring.md). A column counts as drifted in the newest window at a Jensen-Shannon distance ≥ ${JS} or a KS p-value < ${KS_P}.`));
  const monitors = (await api(LIST)).monitors || [];
  if (!monitors.length) {
    main.append(h("p", { class: "notice", id: "monitors-empty" }, "No monitor you may read yet: create one with WorkspaceClient().quality_monitors.create(...) or modelport monitors create."));
    return;
  }
  main.append(h("section", { class: "card" }, h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "monitors" },
    h("thead", {}, h("tr", {}, ["Table", "Profile", "Status", "Latest refresh", "Drifted columns"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, monitors.map((m) => {
      const r = m.latest_refresh;
      const d = m.drift;
      return h("tr", { "data-monitor": m.table_name },
        h("td", { "data-label": "Table" }, h("a", { href: `#/monitors/${enc(m.table_name)}` }, m.table_name)),
        h("td", { "data-label": "Profile" }, profileOf(m), m.inference_log ? h("div", { class: "muted" }, m.inference_log.problem_type.replace("PROBLEM_TYPE_", "").toLowerCase()) : null),
        h("td", { "data-label": "Status" }, statusBadge(m)),
        h("td", { "data-label": "Latest refresh" }, refreshBadge(r), r ? h("div", { class: "muted" }, `${r.trigger || ""} · ${fmtTime(r.end_time_ms || r.start_time_ms)}`) : null),
        h("td", { "data-label": "Drifted columns", "data-drifted": d ? d.drifted_columns.length : "" },
          d ? `${d.drifted_columns.length}${d.drifted_columns.length ? `: ${d.drifted_columns.join(", ")}` : ""}` : "–",
          d ? h("div", { class: "muted" }, `window of ${fmtDate(d.window_start_ms)} (${d.granularity})`) : null));
    }))))));
}

// ---------- one monitor ----------

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

function configFacts(m) {
  const il = m.inference_log || {};
  const ts = m.time_series || {};
  const facts = [
    ["Profile", `${profileOf(m)}${il.problem_type ? ` (${il.problem_type})` : ""}`],
    ["Granularities", granularitiesOf(m).join(", ") || "–"],
    ["Timestamp", il.timestamp_col || ts.timestamp_col || "–"],
    m.inference_log ? ["Prediction · model id · label", `${il.prediction_col || "–"} · ${il.model_id_col || "–"} · ${il.label_col || "–"}`] : null,
    ["Profile metrics", m.profile_metrics_table_name],
    ["Drift metrics", m.drift_metrics_table_name],
    ["Baseline", m.baseline_table_name || "–"],
    ["Labels", m.labels ? `${m.labels.table_name} (by ${(m.labels.key_cols || []).join(", ")})` : "–"],
    ["Slices", (m.slicing_exprs || []).join("; ") || "–"],
    ["Schedule", m.schedule ? `${m.schedule.quartz_cron_expression} ${m.schedule.timezone_id || ""}${m.schedule.pause_status === "PAUSED" ? " (paused)" : ""}` : "–"],
    ["Version", String(m.monitor_version || 1)],
  ].filter(Boolean);
  return h("dl", { class: "facts", id: "monitor-config" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export async function monitorPage(main, table) {
  document.title = `${table} · Monitors · modelport`;
  const url = `${UC}/${enc(table)}/monitor`;
  let monitor = await api(url);
  const canManage = await mayManage(table).catch(() => false);
  const header = h("div");
  const refreshes = h("section", { class: "card", "aria-labelledby": "mon-refresh-title", id: "monitor-refreshes" });
  const controls = h("section", { class: "card", "aria-labelledby": "mon-view-title" });
  const driftBox = h("section", { class: "card", "aria-labelledby": "mon-drift-title", id: "monitor-drift" });
  const profileBox = h("section", { class: "card", "aria-labelledby": "mon-profile-title", id: "monitor-profile" });
  const qualityBox = h("section", { class: "card", "aria-labelledby": "mon-quality-title", id: "monitor-quality" });
  const status = h("p", { class: "sr-only", "aria-live": "polite", id: "monitor-status" });
  const alertsBox = h("section", { class: "card", "aria-labelledby": "mon-alerts-title", id: "monitor-alerts" });
  const drawAlerts = () => alertsBox.replaceChildren(h("h2", { id: "mon-alerts-title" }, "Alerts"), alertsTable(monitor.alerts || [], "alerts"));

  const drawHeader = () => header.replaceChildren(...[
    h("p", {}, h("a", { href: "#/monitors" }, "← Monitors")),
    h("h1", {}, table, " ", statusBadge(monitor)),
    monitor.latest_monitor_failure_msg ? h("div", { class: "error", role: "alert", id: "monitor-failure" }, monitor.latest_monitor_failure_msg) : null,
    h("details", { class: "card" }, h("summary", {}, "Configuration"), configFacts(monitor))].filter(Boolean));

  // ---- view controls ----
  const grains = granularitiesOf(monitor);
  const granularity = select(grains, grains[0]);
  granularity.id = "mon-granularity";
  const slice = select([["", "Whole table"]]);
  slice.id = "mon-slice";
  const driftType = select([["CONSECUTIVE", "The window before"], ["BASELINE", "The baseline table"]]);
  driftType.id = "mon-drift-type";
  const driftStat = select(DRIFT_STATS, "js_distance");
  driftStat.id = "mon-drift-stat";
  const column = select([]);
  column.id = "mon-column";
  const profileStat = select(PROFILE_STATS, "avg");
  profileStat.id = "mon-profile-stat";
  const qualityStat = select(QUALITY_STATS, "accuracy_score");
  qualityStat.id = "mon-quality-stat";
  controls.append(h("h2", { id: "mon-view-title" }, "View"),
    h("div", { class: "row" }, field("Granularity", granularity).wrap, field("Slice", slice).wrap));

  let driftRows = [], profileRows = [], profileColumns = [], modelIds = [];
  const sliceParams = () => {
    if (!slice.value) return "";
    const { slice_key, slice_value } = JSON.parse(slice.value);
    return `&slice_key=${enc(slice_key)}&slice_value=${enc(slice_value)}`;
  };
  const base = () => `${METRICS}?table_name=${enc(table)}&granularity=${enc(granularity.value)}${sliceParams()}`;

  let loads = 0;
  const load = async () => {
    const seq = ++loads;
    const chosen = slice.value;
    const view = `${granularity.value}, ${chosen ? slice.options[slice.selectedIndex].text : "whole table"}`;
    status.textContent = "Loading metrics…";
    const [drift, profile] = await Promise.all([
      api(`${base()}&kind=drift&drift_type=${enc(driftType.value)}`),
      api(`${base()}&kind=profile`),
    ]);
    if (seq !== loads) return; // a later choice is loading: its answer draws
    slice.replaceChildren(h("option", { value: "" }, "Whole table"),
      ...profile.slices.map((s) => h("option", { value: JSON.stringify(s) }, `${s.slice_key} = ${s.slice_value}`)));
    slice.value = [...slice.options].some((o) => o.value === chosen) ? chosen : "";
    driftRows = rowsOf(drift);
    profileRows = rowsOf(profile);
    modelIds = profile.model_ids;
    profileColumns = profile.column_names.filter((c) => c !== ":table");
    const picked = column.value;
    column.replaceChildren(...profileColumns.map((c) => h("option", { value: c }, c)));
    if (profileColumns.includes(picked)) column.value = picked;
    drawDrift();
    drawProfile();
    drawQuality();
    status.textContent = `Metrics loaded: ${view}.`;
  };

  const drawDrift = () => {
    const rows = driftRows.filter((r) => r.model_id === null && r.column_name !== ":table");
    const stat = driftStat.value;
    const statName = DRIFT_STATS.find(([k]) => k === stat)[1];
    const columns = [...new Set(rows.map((r) => r.column_name))].sort();
    const xs = [...new Set(rows.map((r) => r.window_start_ms))].sort((a, b) => a - b);
    const lastX = xs[xs.length - 1];
    const latest = columns.map((c) => rows.find((r) => r.column_name === c && r.window_start_ms === lastX)).filter(Boolean);
    const nDrifted = latest.filter((r) => drifted(r).length).length;
    driftBox.replaceChildren(h("h2", { id: "mon-drift-title" }, "Drift"),
      h("div", { class: "row" }, field("Compared with", driftType).wrap, field("Statistic", driftStat).wrap));
    if (!rows.length) {
      driftBox.append(h("p", { class: "notice", id: "drift-empty" }, monitor.latest_refresh === null ? "No drift yet." : "No drift rows for this view yet: drift needs two windows (consecutive) or a baseline table, and a successful refresh."));
      return;
    }
    driftBox.append(
      h("h3", { id: "drift-latest-title" }, `Newest window, ${fmtDate(lastX)} (${granularity.value}): ${nDrifted} of ${latest.length} column(s) drifted`),
      h("p", { class: "muted" }, `Drifted: Jensen-Shannon distance ≥ ${JS} or KS test p-value < ${KS_P}.`),
      h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "drift-latest", "aria-labelledby": "drift-latest-title" },
        h("thead", {}, h("tr", {}, ["Column", "Verdict", "JS distance", "KS p-value", "Wasserstein", "PSI", "χ² p-value"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, latest.map((r) => {
          const why = drifted(r);
          return h("tr", { "data-column": r.column_name, "data-drifted": why.length ? "true" : "false", class: why.length ? "drifted" : "" },
            h("td", { "data-label": "Column" }, h("code", {}, r.column_name)),
            h("td", { "data-label": "Verdict" }, why.length ? h("strong", { class: "badge state-failed" }, "Drifted") : h("span", { class: "badge state-ready" }, "No drift"),
              why.length ? h("div", { class: "muted" }, why.join("; ")) : null),
            h("td", { "data-label": "JS distance" }, fmt(r.js_distance)),
            h("td", { "data-label": "KS p-value" }, fmt(r.ks_pvalue)),
            h("td", { "data-label": "Wasserstein" }, fmt(r.wasserstein_distance)),
            h("td", { "data-label": "PSI" }, fmt(r.population_stability_index)),
            h("td", { "data-label": "χ² p-value" }, fmt(r.chi_squared_pvalue)));
        })))),
      h("h3", {}, `${statName} per column over windows`),
      h("div", { class: "mcharts", id: "drift-charts" }, columns.map((c) => {
        const points = rows.filter((r) => r.column_name === c).map((r) => [r.window_start_ms, r[stat]]);
        const threshold = stat === "js_distance" ? JS : stat.endsWith("pvalue") ? KS_P : undefined;
        const fig = chart(`${c}: ${statName}`, [{ name: c, points }], { threshold, xs, small: true });
        fig.dataset.column = c;
        if (latest.some((r) => r.column_name === c && drifted(r).length)) fig.classList.add("drifted");
        return fig;
      })));
  };

  const drawProfile = () => {
    const c = column.value;
    const stat = profileStat.value;
    const statName = PROFILE_STATS.find(([k]) => k === stat)[1];
    profileBox.replaceChildren(h("h2", { id: "mon-profile-title" }, "Profile"),
      h("div", { class: "row" }, field("Column", column).wrap, field("Metric", profileStat).wrap));
    const rows = profileRows.filter((r) => r.column_name === c);
    if (!rows.length) {
      profileBox.append(h("p", { class: "notice", id: "profile-empty" }, "No profile for this view yet: refresh the monitor."));
      return;
    }
    const xs = [...new Set(rows.map((r) => r.window_start_ms))].sort((a, b) => a - b);
    const series = [null, ...modelIds].map((id) => ({
      name: id === null ? "All models" : id,
      points: rows.filter((r) => r.model_id === id).map((r) => [r.window_start_ms, r[stat]]),
    })).filter((s) => s.points.some((p) => Number.isFinite(p[1])));
    profileBox.append(h("div", { id: "profile-chart" }, chart(`${c}: ${statName}, per served entity`, series, { xs })));
  };

  const drawQuality = () => {
    const rows = profileRows.filter((r) => r.column_name === ":table");
    const present = QUALITY_STATS.filter(([k]) => rows.some((r) => Number.isFinite(r[k])));
    qualityBox.replaceChildren(h("h2", { id: "mon-quality-title" }, "Model quality"));
    if (!present.length) {
      qualityBox.append(h("p", { class: "muted", id: "quality-empty" }, "No model-quality metrics: they appear once labels are joined (the monitor's label column and labels table)."));
      return;
    }
    if (!present.some(([k]) => k === qualityStat.value)) qualityStat.value = present[0][0];
    for (const o of qualityStat.options) o.hidden = !present.some(([k]) => k === o.value);
    const stat = qualityStat.value;
    const xs = [...new Set(rows.map((r) => r.window_start_ms))].sort((a, b) => a - b);
    const series = [null, ...modelIds].map((id) => ({
      name: id === null ? "All models" : id,
      points: rows.filter((r) => r.model_id === id).map((r) => [r.window_start_ms, r[stat]]),
    })).filter((s) => s.points.some((p) => Number.isFinite(p[1])));
    qualityBox.append(h("div", { class: "row" }, field("Metric", qualityStat).wrap),
      h("div", { id: "quality-chart" }, chart(`${QUALITY_STATS.find(([k]) => k === stat)[1]} per served entity`, series, { xs })));
  };

  // ---- refreshes ----
  let lastRefreshes = "";
  let active = false;
  const refreshErr = h("div");
  const button = h("button", { type: "button", id: "monitor-refresh-now" }, "Refresh now");
  button.addEventListener("click", async () => {
    refreshErr.replaceChildren();
    button.disabled = true;
    try {
      const r = await api(`${url}/refreshes`, { method: "POST", body: {} });
      toast(`Refresh ${r.refresh_id} queued`);
      await pollRefreshes();
    } catch (e) {
      refreshErr.append(errorBox(e));
    } finally {
      button.disabled = false;
    }
  });
  const refreshList = h("div");
  refreshes.append(h("h2", { id: "mon-refresh-title" }, "Refreshes"),
    canManage ? h("div", { class: "actions" }, button) : h("p", { class: "muted" }, "Refreshing needs MANAGE on the table."),
    refreshErr, refreshList);
  const pollRefreshes = async () => {
    const got = (await api(`${url}/refreshes`)).refreshes || [];
    const text = JSON.stringify(got);
    if (text === lastRefreshes) return;
    const wasActive = active;
    lastRefreshes = text;
    active = got.some((r) => ACTIVE.includes(r.state));
    monitor.latest_refresh = got[0] || null;
    refreshList.replaceChildren(got.length ? h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "refreshes" },
      h("thead", {}, h("tr", {}, ["ID", "State", "Trigger", "Started", "Ended", "Message"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, got.slice(0, 10).map((r) => h("tr", { "data-refresh": r.refresh_id },
        h("td", { "data-label": "ID" }, String(r.refresh_id)),
        h("td", { "data-label": "State" }, refreshBadge(r)),
        h("td", { "data-label": "Trigger" }, r.trigger || "–"),
        h("td", { "data-label": "Started" }, fmtTime(r.start_time_ms)),
        h("td", { "data-label": "Ended" }, fmtTime(r.end_time_ms)),
        h("td", { "data-label": "Message" }, r.message || "")))))) : h("p", { class: "muted", id: "no-refreshes" }, "No refresh yet."));
    if (wasActive && !active) {
      monitor = await api(url);
      drawHeader();
      drawAlerts();
      await load();
    }
  };

  for (const el of [granularity, slice, driftType]) el.addEventListener("change", () => load().catch((e) => driftBox.append(errorBox(e))));
  driftStat.addEventListener("change", drawDrift);
  column.addEventListener("change", drawProfile);
  profileStat.addEventListener("change", drawProfile);
  qualityStat.addEventListener("change", drawQuality);

  drawHeader();
  drawAlerts();
  main.append(header, status, refreshes, alertsBox, controls, driftBox, profileBox, qualityBox);
  try {
    await load();
  } catch (e) {
    driftBox.append(errorBox(e));
  }
  every(3000, pollRefreshes, refreshes);
}

// ---------- alerts ----------

const ALERTS = `${LIST}/alerts`;

function alertState(a) {
  const cls = a.state === "TRIGGERED" ? "failed" : a.state === "OK" ? "ready" : "notready";
  return h("span", { class: `badge state-${cls}`, "data-alert-state": a.state }, a.state === "TRIGGERED" ? "Triggered" : a.state === "OK" ? "OK" : "Not evaluated yet");
}

function alertRule(a) {
  const where = [a.column_name && a.column_name !== "*" ? `column ${a.column_name}` : "any column",
    a.drift_type ? a.drift_type.toLowerCase() : null, a.granularity || null,
    a.model_id ? `model ${a.model_id}` : null, a.slice_key ? `slice ${a.slice_key}${a.slice_value ? ` = ${a.slice_value}` : ""}` : null].filter(Boolean);
  return `${a.metric} ${a.op} ${a.threshold} (${a.table}; ${where.join(", ")})`;
}

/** The alerts of one monitor as a table (state in text, the rule, the worst value, when). */
export function alertsTable(alerts, id) {
  if (!alerts.length) return h("p", { class: "muted" }, "No alert defined: add alerts to the monitor (its alerts field, docs/monitoring.md).");
  return h("div", { class: "table-wrap" }, h("table", { class: "responsive alerts", id },
    h("thead", {}, h("tr", {}, ["Alert", "State", "Rule", "Value", "Breaching rows", "Since"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, alerts.map((a) => h("tr", { "data-alert": a.name, class: a.state === "TRIGGERED" ? "drifted" : "" },
      h("td", { "data-label": "Alert" }, h("code", {}, a.name)),
      h("td", { "data-label": "State" }, alertState(a),
        a.notification && a.notification.error ? h("div", { class: "muted" }, `webhook: ${a.notification.error}`) : null),
      h("td", { "data-label": "Rule" }, alertRule(a)),
      h("td", { "data-label": "Value" }, fmt(a.value)),
      h("td", { "data-label": "Breaching rows" }, String(a.breaching_count ?? "–"),
        (a.breaching || []).length ? h("div", { class: "muted" }, a.breaching.slice(0, 3).map((b) => `${b.column_name} ${fmtDate(b.window_start_ms)}${b.model_id ? ` ${b.model_id}` : ""}: ${fmt(b.value)}`).join("; ")) : null),
      h("td", { "data-label": "Since" }, fmtTime(a.since_ms)))))));
}

// ---------- the endpoint page's section ----------

/** The inference table an endpoint's configuration names (as the server names it), or null. */
export function inferenceTableOf(detail) {
  const cfgs = [((detail.ai_gateway || {}).inference_table_config), ((detail.config || {}).auto_capture_config)];
  for (const c of cfgs) {
    if (!c || !c.enabled || !c.catalog_name || !c.schema_name) continue;
    const prefix = String(c.table_name_prefix || detail.name).toLowerCase().replace(/[^a-z0-9_]/g, "_");
    return `${c.catalog_name}.${c.schema_name}.${prefix}_payload`.toLowerCase();
  }
  return null;
}

/** "Monitor": for each monitor of the endpoint's inference table, a link to its page, its
 * status, latest refresh, drifted columns and alerts; hidden while there is none the caller
 * may read. Polled every 10 s. */
export function endpointMonitor(section, detail) {
  let last = "";
  every(10000, async () => {
    let monitored;
    try {
      monitored = (await api(`${ALERTS}?endpoint=${enc(detail.name)}`)).monitors || [];
    } catch {
      const table = inferenceTableOf(detail);
      monitored = table ? [{ table_name: table, alerts: null }] : [];
    }
    const listed = monitored.length ? (await api(LIST)).monitors || [] : [];
    const shown = monitored.map((x) => [x, listed.find((m) => m.table_name === x.table_name)]).filter(([, m]) => m);
    const text = JSON.stringify(shown);
    if (text === last) return;
    last = text;
    section.hidden = !shown.length;
    section.replaceChildren(h("h2", { id: "monitor-title" }, "Monitor"), ...shown.map(([x, m]) => {
      const d = m.drift;
      const r = m.latest_refresh;
      const triggered = (x.alerts || []).filter((a) => a.state === "TRIGGERED").length;
      return h("div", { class: "endpoint-monitor", "data-monitor": m.table_name },
        h("p", {}, h("a", { href: `#/monitors/${enc(m.table_name)}`, class: "endpoint-monitor-link" }, `Monitor of ${m.table_name}`), " ", statusBadge(m)),
        m.latest_monitor_failure_msg ? h("div", { class: "error", role: "alert" }, m.latest_monitor_failure_msg) : null,
        h("p", { class: "muted endpoint-monitor-summary" },
          `Latest refresh: ${r ? `${r.state}, ${fmtTime(r.end_time_ms || r.start_time_ms)}` : "none"}`,
          d ? ` · drifted columns in the newest ${d.granularity} window: ${d.drifted_columns.length ? d.drifted_columns.join(", ") : "none"}` : "",
          x.alerts ? ` · ${triggered} of ${x.alerts.length} alert(s) triggered` : ""),
        x.alerts ? alertsTable(x.alerts, `endpoint-alerts-${m.table_name.replace(/\W/g, "-")}`) : null);
    }));
  }, section);
}

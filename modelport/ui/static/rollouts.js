// Safe rollouts on the endpoint page (issue 21, docs/rollouts.md): three cards that read the
// routes of the config history, the rollout, and the comparison and replay.
//   "Config history": versions newest first, one version's config and what rolling back to it
//     would change (computed here from the two versions), rollback (CAN_MANAGE).
//   "Rollout": the newest rollout (state, step, time left, the last evaluation), pause/resume/cancel.
//   "Shadow comparison": live vs candidate from the inference table, and a replay form.
// The "Events" card (the event log) is events.js's: after a rollback or a rollout action this
// module tells it to reload by dispatching EVENTS_CHANGED on the box both cards are mounted in.
// app.js calls endpointRollouts() after both modules have run, so the helpers imported from it
// (a module cycle, as monitors.js) are defined by then.

import { api, enc, errorBox, every, field, fmtTime, h, select, toast } from "./core.js";
import { EVENTS_CHANGED } from "./events.js";

const EP = "/api/2.0/serving-endpoints";
const MP = "/api/2.0/modelport/serving-endpoints";
const VERSION_PAGE = 20;
const ROLLOUT_ACTIVE = ["WAITING", "RUNNING", "PAUSED"];
const REPLAY_ACTIVE = ["PENDING", "QUEUED", "RUNNING"];
const WINDOWS = [["3600000", "Last hour"], ["86400000", "Last 24 hours"]];
/** Fields of a served entity that describe its state, not its configuration (left out of diffs). */
const ENTITY_STATE = ["state", "creator", "creation_timestamp"];

// ---------- formatting ----------

const num = (v, digits = 3) => (v === null || v === undefined || !Number.isFinite(Number(v))) ? "–"
  : Number.isInteger(Number(v)) ? String(v) : Number(v).toPrecision(digits);
const pct = (v) => (v === null || v === undefined || !Number.isFinite(Number(v))) ? "–" : `${(Number(v) * 100).toFixed(1)}%`;
const ms = (v) => (v === null || v === undefined || !Number.isFinite(Number(v))) ? "–" : `${Number(v) >= 100 ? Number(v).toFixed(0) : Number(v).toFixed(1)} ms`;

/** "1 min 05 s", "42 s" (a duration in ms, never negative). */
export function fmtDuration(msLeft) {
  const s = Math.max(0, Math.round(msLeft / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** JSON with sorted keys: equal values give equal text. */
function stable(v) {
  if (Array.isArray(v)) return `[${v.map(stable).join(",")}]`;
  if (v && typeof v === "object") return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable(v[k])}`).join(",")}}`;
  return JSON.stringify(v === undefined ? null : v);
}

const short = (v) => (v === undefined || v === null) ? "–" : typeof v === "string" ? v : JSON.stringify(v);

function entityText(e) {
  if (e.external_model) return `${e.name}: ${e.external_model.provider} · ${e.external_model.name}`;
  if (e.entity_name) return `${e.name}: ${e.entity_name}${e.entity_version ? ` v${e.entity_version}` : ""}`;
  return e.name || "";
}

function trafficText(tc) {
  const routes = (tc && tc.routes) || [];
  return routes.length ? routes.map((r) => `${r.served_entity_name} ${num(r.traffic_percentage)}%`).join(" · ") : "–";
}

function stateClass(state) {
  if (["ACTIVE", "SUCCEEDED", "PROMOTED", "NOT_UPDATING", "READY", "SUCCESS"].includes(state)) return "ready";
  if (["RUNNING", "WAITING", "PENDING", "QUEUED", "IN_PROGRESS", "UPDATING"].includes(state)) return "updating";
  if (/FAIL|ROLLED_BACK|CANCEL|CRASH|ERROR/.test(state || "")) return "failed";
  return "notready";
}

/** ``el``'s children become ``kids``, leaving out null and false (replaceChildren writes "null"). */
function put(el, ...kids) {
  el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
}

/** Run ``draw`` (which redraws ``el``'s insides) and give the focus back to the control that had
 * it, found again by its id or ``data-open-version`` (polls redraw while a keyboard user moves). */
function keepFocus(el, draw) {
  const had = document.activeElement;
  const key = had && el.contains(had) ? (had.id ? `#${CSS.escape(had.id)}` : had.dataset.openVersion ? `[data-open-version="${had.dataset.openVersion}"]` : null) : null;
  draw();
  if (key) {
    const again = el.querySelector(key);
    if (again) again.focus();
  }
}

const badge = (text, cls, attrs = {}) => h("span", { class: `badge state-${cls}`, ...attrs }, text);

// ---------- the diff of two versions ----------

function entitiesByName(config) {
  const out = {};
  for (const e of (config && config.served_entities) || []) {
    out[e.name] = Object.fromEntries(Object.entries(e).filter(([k]) => !ENTITY_STATE.includes(k)));
  }
  return out;
}

function routesByName(config) {
  return Object.fromEntries((((config || {}).traffic_config || {}).routes || []).map((r) => [r.served_entity_name, Number(r.traffic_percentage)]));
}

/** What changes going from version ``before`` to version ``after`` (each a config version as
 * ``GET .../config-versions/{N}`` answers: ``config``, ``ai_gateway``, ``shadow``, ``rollout``),
 * in the dry-run route's shape: [{path, change: added|removed|changed, before, after}]. */
export function configDiff(before, after) {
  const out = [];
  const push = (path, b, a) => {
    if (stable(b) === stable(a)) return;
    const change = (b === undefined || b === null) ? "added" : (a === undefined || a === null) ? "removed" : "changed";
    out.push({ path, change, before: b ?? null, after: a ?? null });
  };
  const eb = entitiesByName(before.config), ea = entitiesByName(after.config);
  for (const n of [...new Set([...Object.keys(eb), ...Object.keys(ea)])].sort()) push(`served_entities.${n}`, eb[n], ea[n]);
  const rb = routesByName(before.config), ra = routesByName(after.config);
  for (const n of [...new Set([...Object.keys(rb), ...Object.keys(ra)])].sort()) push(`traffic_config.${n}`, rb[n], ra[n]);
  const ext = (v, key) => (v[key] !== undefined ? v[key] : (v.config || {})[key]);
  push("shadow", ext(before, "shadow"), ext(after, "shadow"));
  push("rollout", ext(before, "rollout"), ext(after, "rollout"));
  const gb = before.ai_gateway || {}, ga = after.ai_gateway || {};
  for (const k of [...new Set([...Object.keys(gb), ...Object.keys(ga)])].sort()) push(`ai_gateway.${k}`, gb[k], ga[k]);
  return out;
}

function diffValue(path, v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "–");
  if (path.startsWith("served_entities.")) return h("span", {}, entityText(v), h("code", { class: "ro-json" }, JSON.stringify(v)));
  if (path.startsWith("traffic_config.")) return `${num(v)}%`;
  return h("code", { class: "ro-json" }, short(v));
}

function diffTable(diff, id, beforeLabel, afterLabel) {
  if (!diff.length) return h("p", { class: "muted", id }, "No difference: this version's served entities, traffic and AI gateway are the serving ones.");
  return h("div", { class: "table-wrap" }, h("table", { class: "responsive ro-diff", id },
    h("thead", {}, h("tr", {}, ["What", "Change", beforeLabel, afterLabel].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, diff.map((d) => h("tr", { "data-path": d.path, "data-change": d.change, class: `ro-${d.change}` },
      h("td", { "data-label": "What" }, h("code", {}, d.path)),
      h("td", { "data-label": "Change" }, d.change),
      h("td", { "data-label": beforeLabel }, diffValue(d.path, d.before)),
      h("td", { "data-label": afterLabel }, diffValue(d.path, d.after)))))));
}

// ---------- the comparison report ----------

/** A compare report (live vs candidate) as facts and a side-by-side table. */
export function reportView(rep, id) {
  // ``candidate`` names the entity and ``candidate_stats`` holds its measures
  const live = rep.live || {};
  const cand = rep.candidate_stats || (rep.candidate && typeof rep.candidate === "object" ? rep.candidate : {});
  const liveName = `Live${(rep.incumbent || []).length ? ` (${rep.incumbent.join(", ")})` : ""}`;
  const candName = `Candidate${typeof rep.candidate === "string" ? ` (${rep.candidate})` : ""}`;
  const facts = [
    ["Pairs", `${num(rep.pairs)}${rep.compared !== undefined && rep.compared !== rep.pairs ? ` (${num(rep.compared)} with two answers)` : ""}`],
    ["Answer kind", rep.kind || "–"],
    rep.agreement !== null && rep.agreement !== undefined ? ["Agreement", pct(rep.agreement)] : null,
    rep.correlation !== null && rep.correlation !== undefined ? ["Correlation", num(rep.correlation)] : null,
    rep.similarity !== null && rep.similarity !== undefined ? ["Similarity", `${num(rep.similarity)}${rep.similarity_method ? ` (${rep.similarity_method})` : ""}`] : null,
    rep.length ? ["Answer length (live / candidate)", `${num(rep.length.live)} / ${num(rep.length.candidate)}`] : null,
    ["Source", rep.source || "–"],
    ["Window", rep.replay_id ? `replay ${rep.replay_id}` : `${fmtTime(rep.since)} – ${rep.until ? fmtTime(rep.until) : "now"}`],
  ].filter(Boolean);
  const rows = [["Requests", "requests", num], ["Errors", "errors", num], ["Error rate", "error_rate", pct], ["Latency p50", "p50_ms", ms], ["Latency p99", "p99_ms", ms]];
  return h("div", { class: "ro-report", id, "data-pairs": rep.pairs ?? 0, "data-agreement": rep.agreement ?? "" },
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-fact": k }, v)])),
    h("div", { class: "table-wrap" }, h("table", { class: "ro-side" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Metric"), h("th", { scope: "col" }, liveName), h("th", { scope: "col" }, candName))),
      h("tbody", {}, rows.map(([label, key, f]) => h("tr", { "data-metric": key },
        h("th", { scope: "row" }, label), h("td", {}, f(live[key])), h("td", {}, f(cand[key]))))))));
}

// ---------- the cards ----------

function card(id, title) {
  const titleId = `${id}-title`;
  const heading = h("h2", { id: titleId }, title);
  const body = h("div");
  const el = h("section", { class: "card", id, "aria-labelledby": titleId }, heading, body);
  return { el, body };
}

/** The endpoint page's rollout cards, mounted in ``box``; returns the function app.js calls with
 * every fresh endpoint detail (its 2 s poll), which redraws what a new config version changes. */
export function endpointRollouts(box, detail) {
  const name = detail.name;
  const url = `${EP}/${enc(name)}`;
  const murl = `${MP}/${enc(name)}`;
  const manage = detail.permission_level === "CAN_MANAGE" && !detail.modelport_system;
  const history = card("ro-history", "Config history");
  const rollout = card("ro-rollout", "Rollout");
  const compare = card("ro-compare", "Shadow comparison");
  rollout.el.hidden = true;
  compare.el.hidden = true;
  box.append(rollout.el, history.el, compare.el);
  const eventsChanged = () => box.dispatchEvent(new CustomEvent(EVENTS_CHANGED));

  let current = detail;
  let versions = [];
  const servingVersion = () => (current.config || {}).config_version ?? null;
  const serving = () => versions.find((v) => v.config_version === servingVersion()) || null;

  // ---------- config history ----------
  const full = new Map(); // version -> GET .../config-versions/{N}: its config never changes (its status does: the list has it)
  const fullVersion = async (n) => {
    if (!full.has(n)) full.set(n, await api(`${url}/config-versions/${n}`));
    return full.get(n);
  };
  let selected = null;
  let nextVersions = null;
  const listErr = h("div");
  const tbody = h("tbody");
  const older = h("button", { type: "button", class: "secondary", id: "ro-history-older", hidden: true }, "Older versions");
  const detailBox = h("div", { id: "ro-version-detail" });
  const rollbackOut = h("div", { id: "ro-rollback-result", "aria-live": "polite" });
  history.body.append(
    h("p", { class: "muted" }, "Every config version of this endpoint, newest first. Choose one to see its config and what rolling back to it would change."),
    h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "ro-versions" },
      h("thead", {}, h("tr", {}, ["Version", "Status", "Created by", "Created", "Served entities", "Traffic"].map((c) => h("th", { scope: "col" }, c)))),
      tbody)),
    h("div", { class: "actions" }, older), listErr, rollbackOut, detailBox);

  const versionRow = (v) => {
    const isServing = v.config_version === servingVersion();
    const open = h("button", { type: "button", class: "link ro-link", "aria-controls": "ro-version-detail",
      "aria-current": selected === v.config_version ? "true" : null, "data-open-version": v.config_version }, `Version ${v.config_version}`);
    open.addEventListener("click", () => showVersion(v.config_version, true));
    const extras = [
      v.shadow ? `shadow ${v.shadow.served_entity_name} ${num(v.shadow.percentage)}%` : null,
      v.rollout ? `rollout${v.rollout.candidate ? ` of ${v.rollout.candidate}` : ""}: ${(v.rollout.steps || []).join(" → ")}%` : null,
      v.rolled_back_from ? `rollback to version ${v.rolled_back_from}` : null,
    ].filter(Boolean);
    return h("tr", { "data-version": v.config_version, "data-serving": String(isServing), class: isServing ? "ro-serving" : "" },
      h("td", { "data-label": "Version" }, open, isServing ? [" ", badge("Serving", "ready", { "data-serving-badge": "" })] : null),
      h("td", { "data-label": "Status" }, badge(v.status || "–", stateClass(v.status), { "data-status": v.status || "" }),
        v.message ? h("div", { class: "muted" }, v.message) : null),
      h("td", { "data-label": "Created by" }, v.creator || "–"),
      h("td", { "data-label": "Created" }, fmtTime(v.creation_timestamp)),
      h("td", { "data-label": "Served entities" }, h("ul", { class: "ro-plain" }, (v.served_entities || []).map((e) => h("li", {}, entityText(e))))),
      h("td", { "data-label": "Traffic" }, trafficText(v.traffic_config), extras.length ? h("div", { class: "muted" }, extras.join(" · ")) : null));
  };
  const drawVersions = () => {
    keepFocus(tbody, () => put(tbody, ...versions.map(versionRow)));
    older.hidden = !nextVersions;
  };
  const loadVersions = async () => {
    put(listErr);
    try {
      const got = await api(`${url}/config-versions?max_results=${VERSION_PAGE}`);
      const first = got.config_versions || [];
      // keep the older pages already shown
      const seen = new Set(first.map((v) => v.config_version));
      const kept = versions.filter((v) => !seen.has(v.config_version) && v.config_version < Math.min(...first.map((x) => x.config_version)));
      versions = [...first, ...kept];
      if (!kept.length) nextVersions = got.next_page_token || null;
      drawVersions();
      drawCompare();
    } catch (e) {
      put(listErr, errorBox(e));
    }
  };
  older.addEventListener("click", async () => {
    older.disabled = true;
    try {
      const got = await api(`${url}/config-versions?max_results=${VERSION_PAGE}&page_token=${enc(nextVersions)}`);
      versions = versions.concat(got.config_versions || []);
      nextVersions = got.next_page_token || null;
      drawVersions();
    } catch (e) {
      put(listErr, errorBox(e));
    } finally {
      older.disabled = false;
    }
  });

  const showVersion = async (n, focus = false) => {
    selected = n;
    if (focus) put(rollbackOut);
    for (const b of tbody.querySelectorAll("[data-open-version]")) {
      if (Number(b.dataset.openVersion) === n) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
    const heading = h("h3", { id: "ro-version-title", tabindex: "-1" }, `Version ${n}`);
    put(detailBox, heading, h("p", { class: "muted" }, "Loading…"));
    let version, base;
    try {
      const sv = servingVersion();
      [version, base] = await Promise.all([fullVersion(n), sv === null ? null : fullVersion(sv)]);
    } catch (e) {
      put(detailBox, heading, errorBox(e));
      return;
    }
    if (selected !== n) return;
    const sv = servingVersion();
    const isServing = n === sv;
    const now = { ...version, ...(versions.find((v) => v.config_version === n) || {}) };
    const parts = [heading,
      h("p", { class: "muted" }, `${now.status || ""} · created by ${version.creator || "–"} ${fmtTime(version.creation_timestamp)}`,
        now.finished_timestamp ? ` · finished ${fmtTime(now.finished_timestamp)}` : "",
        version.rolled_back_from ? ` · a rollback to version ${version.rolled_back_from}` : "",
        version.message ? ` · ${version.message}` : "")];
    if (isServing) parts.push(h("p", { id: "ro-diff" }, "This version serves now."));
    else if (base) {
      parts.push(h("h4", {}, `Rolling back to version ${n} would change (serving version ${sv} → version ${n})`),
        diffTable(configDiff(base, version), "ro-diff", `Serving (v${sv})`, `Version ${n}`));
    }
    if (manage && !isServing) parts.push(rollbackForm(n));
    parts.push(h("details", { id: "ro-version-config" }, h("summary", {}, `Version ${n}'s config (JSON)`),
      h("pre", { tabindex: "0" }, JSON.stringify({ config: version.config, ai_gateway: version.ai_gateway ?? null }, null, 2))));
    put(detailBox, ...parts);
    if (focus) heading.focus();
  };

  const rollbackForm = (n) => {
    const reason = h("input", { type: "text", id: "ro-rollback-reason", maxlength: 1000, placeholder: "optional" });
    const button = h("button", { type: "button", class: "danger", id: "ro-rollback" }, "Roll back to this version");
    const out = h("div", { id: "ro-rollback-error", "aria-live": "assertive" });
    button.addEventListener("click", async () => {
      put(out);
      put(rollbackOut);
      if (!confirm(`Roll back ${name} to config version ${n}? A new config version equal to version ${n} replaces the serving one (served entities, traffic and AI gateway), through the usual zero-downtime update.`)) return;
      button.disabled = true;
      try {
        const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
        const got = await api(`${url}/config-versions/${n}/rollback`, { method: "POST", body });
        const rb = got.rollback || {};
        rollbackOut.append(h("p", { class: "notice", id: "ro-rollback-done", "data-new-version": rb.new_version ?? "" },
          `Rolling back to version ${rb.to_version ?? n} as new version ${rb.new_version ?? "?"}; restored: `,
          h("span", { id: "ro-restored" }, (rb.restored || []).join(", ") || "nothing")));
        toast(`Rollback to version ${n} started`);
        await loadVersions();
        eventsChanged();
        rollbackOut.querySelector("p").setAttribute("tabindex", "-1");
        rollbackOut.querySelector("p").focus();
      } catch (e) {
        out.append(errorBox(e));
      } finally {
        button.disabled = false;
      }
    });
    return h("div", { class: "ro-rollback" }, field("Reason for the rollback", reason).wrap, h("div", { class: "actions" }, button), out);
  };

  // ---------- rollout ----------
  let ro = null; // the newest rollout, or null
  let roPolled = 0;
  let roForce = true;
  const roErr = h("div", { id: "ro-rollout-error", "aria-live": "assertive" });
  const roView = h("div");
  const roLeft = h("span", { id: "ro-step-left" });
  rollout.body.append(roView, roErr);
  const stepOf = (r) => {
    const steps = r.steps || (r.policy || {}).steps || [];
    const pctNow = r.percentage ?? steps[r.step] ?? null;
    // ``step`` counts from 0 (the index into steps)
    return { steps, index: Number(r.step ?? 0), pct: pctNow };
  };
  const drawLeft = () => {
    if (!ro) return;
    const policy = ro.policy || {};
    if (ro.state === "PAUSED") roLeft.textContent = "paused: the step waits";
    else if (ro.state === "WAITING") roLeft.textContent = `starts once config version ${ro.config_version} is deployed`;
    else if (ro.state !== "RUNNING") roLeft.textContent = "";
    else if (ro.step_started_timestamp && policy.step_seconds) {
      roLeft.textContent = `${fmtDuration(ro.step_started_timestamp + policy.step_seconds * 1000 - Date.now())} left in this step`;
    } else roLeft.textContent = "";
  };
  const action = (verb, label, cls, ask) => {
    const b = h("button", { type: "button", class: cls, id: `ro-${verb}` }, label);
    b.addEventListener("click", async () => {
      put(roErr);
      if (ask && !confirm(ask)) return;
      b.disabled = true;
      try {
        ro = await api(`${url}/rollouts/current/${verb}`, { method: "POST", body: {} });
        if (!ro || !ro.state) ro = await api(`${url}/rollouts/current`);
        toast(`Rollout ${verb === "cancel" ? "canceled" : verb === "pause" ? "paused" : "resumed"}`);
        drawRollout();
        eventsChanged();
      } catch (e) {
        put(roErr, errorBox(e));
      } finally {
        b.disabled = false;
      }
    });
    return b;
  };
  const drawRollout = () => {
    rollout.el.hidden = !ro;
    if (!ro) { put(roView); return; }
    const { steps, index, pct: p } = stepOf(ro);
    const policy = ro.policy || {};
    const ev = ro.last_evaluation;
    const limits = [
      policy.max_error_rate !== null && policy.max_error_rate !== undefined ? `error rate ≤ ${pct(policy.max_error_rate)}` : null,
      policy.max_p99_ms !== null && policy.max_p99_ms !== undefined ? `p99 ≤ ${ms(policy.max_p99_ms)}` : null,
      policy.min_agreement !== null && policy.min_agreement !== undefined ? `agreement ≥ ${pct(policy.min_agreement)}` : null,
      policy.min_requests_per_step ? `at least ${policy.min_requests_per_step} candidate requests per step` : null,
    ].filter(Boolean);
    const active = ROLLOUT_ACTIVE.includes(ro.state);
    const buttons = [];
    if (manage && active) {
      if (ro.state === "PAUSED") buttons.push(action("resume", "Resume", "secondary"));
      else if (ro.state === "RUNNING") buttons.push(action("pause", "Pause", "secondary"));
      buttons.push(action("cancel", "Cancel and roll back", "danger",
        `Cancel the rollout of ${ro.candidate} on ${name}? Traffic goes back to ${(ro.incumbents || []).join(", ") || "the incumbents"} and config version ${ro.from_version ?? "before it"} is restored.`));
    }
    const rows = [["Requests", "requests", num], ["Errors", "errors", num], ["Error rate", "error_rate", pct], ["Latency p50", "p50_ms", ms],
      ["Latency p99", "p99_ms", ms], ["Compared answers", "compared", num], ["Agreement", "agreement", pct]];
    keepFocus(roView, () => put(roView,
      h("p", {}, badge(ro.state, stateClass(ro.state), { id: "ro-state", "data-state": ro.state }), " ",
        `Config version ${ro.config_version}${ro.from_version ? ` (from version ${ro.from_version})` : ""}: candidate `,
        h("strong", {}, ro.candidate || "–"), ` against ${(ro.incumbents || []).join(", ") || "–"}`),
      h("p", { id: "ro-step", "data-step": index, "data-percentage": p ?? "" },
        h("label", { for: "ro-step-progress", class: "inline" }, `Step ${Math.min(index + 1, steps.length || 1)} of ${steps.length || "?"}: candidate at ${num(p)}%`),
        " ", h("progress", { id: "ro-step-progress", max: steps.length || 1, value: Math.min(index + 1, steps.length || 1) }),
        " ", h("span", { class: "muted" }, `steps ${steps.join(" → ")}%`), " · ", roLeft),
      h("p", { class: "muted" }, `Policy: ${limits.join(", ") || "no limit"}; ${policy.step_seconds ?? "?"} s per step, evaluated every ${policy.evaluation_seconds ?? "?"} s.`,
        ` Started ${fmtTime(ro.created_timestamp)} by ${ro.creator || "–"}`, ro.finished_timestamp ? `, finished ${fmtTime(ro.finished_timestamp)}` : "", "."),
      ro.message ? h("p", { id: "ro-message", class: /ROLLED_BACK|FAILED/.test(ro.state) ? "error" : "notice" }, ro.message) : null,
      ev ? h("div", { id: "ro-evaluation" },
        h("h3", {}, `Last evaluation, ${fmtTime(ev.timestamp)}: `, badge(ev.verdict || "–", ev.verdict === "ROLL_BACK" ? "failed" : ev.verdict === "HOLD" ? "notready" : "ready", { id: "ro-verdict", "data-verdict": ev.verdict || "" })),
        ev.reason ? h("p", { id: "ro-reason" }, ev.reason) : null,
        h("div", { class: "table-wrap" }, h("table", { class: "ro-side" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Measure"), h("th", { scope: "col" }, `Candidate (${ro.candidate || ""})`), h("th", { scope: "col" }, `Incumbent (${(ro.incumbents || []).join(", ")})`))),
          h("tbody", {}, rows.map(([label, key, f]) => h("tr", { "data-measure": key },
            h("th", { scope: "row" }, label), h("td", {}, f((ev.candidate || {})[key])), h("td", {}, f((ev.incumbent || {})[key])))))))) :
        h("p", { class: "muted", id: "ro-evaluation" }, "Not evaluated yet."),
      buttons.length ? h("div", { class: "actions" }, buttons) : null));
    drawLeft();
  };
  const pollRollout = async () => {
    const now = Date.now();
    const due = roForce || (ro && ROLLOUT_ACTIVE.includes(ro.state) && now - roPolled >= 2000) || now - roPolled > 10000;
    if (!due) { drawLeft(); return; }
    roForce = false;
    roPolled = now;
    let got = null;
    try {
      got = await api(`${url}/rollouts/current`);
    } catch (e) {
      if (e.status !== 404) put(roErr, errorBox(e));
      got = null;
    }
    if (stable(got) === stable(ro)) { drawLeft(); return; }
    ro = got && got.state ? got : null;
    drawRollout();
    drawCompare();
  };
  every(1000, pollRollout, box);

  // ---------- shadow comparison ----------
  const candidate = h("select", { id: "ro-cmp-candidate" });
  const source = select([["shadow", "Shadow copies"], ["replay", "Latest replay"]], "shadow");
  source.id = "ro-cmp-source";
  const windowSel = select(WINDOWS, WINDOWS[0][0]);
  windowSel.id = "ro-cmp-window";
  const cmpRefresh = h("button", { type: "button", class: "secondary", id: "ro-cmp-refresh" }, "Refresh");
  const cmpStatus = h("p", { class: "muted", id: "ro-cmp-status", "aria-live": "polite" });
  const cmpOut = h("div", { id: "ro-cmp-out" });
  let latestReplay = null; // {id, candidate} of the newest replay this page knows of
  const replayBox = h("div", { id: "ro-replay" });
  compare.body.append(
    h("p", { class: "muted" }, "The live answers against a candidate's answers to the same requests, from the inference table: shadow copies of live queries, or a replay of logged requests."),
    h("div", { class: "row" }, field("Candidate", candidate).wrap, field("Source", source).wrap, field("Window", windowSel).wrap,
      h("div", { class: "ro-grow0" }, cmpRefresh)),
    cmpStatus, cmpOut, replayBox);
  let cmpSeq = 0;
  let cmpKey = "";
  const cmpEntities = () => {
    const sv = serving();
    const ents = (sv && sv.served_entities) || ((current.config || {}).served_entities) || [];
    return ents.map((e) => e.name);
  };
  const defaultCandidate = () => {
    const sv = serving();
    if (sv && sv.shadow) return sv.shadow.served_entity_name;
    if (ro && ROLLOUT_ACTIVE.includes(ro.state) && ro.candidate) return ro.candidate;
    return "";
  };
  const say = (text) => { if (cmpStatus.textContent !== text) cmpStatus.textContent = text; };
  /** The newest replay to ``name`` (this page's, else the server's list), or null. */
  const newestReplay = async (name) => {
    if (latestReplay && latestReplay.candidate === name) return latestReplay;
    const mine = ((await api(`${murl}/replays`)).replays || []).filter((r) => r.candidate === name)
      .sort((a, b) => (b.created_timestamp || 0) - (a.created_timestamp || 0));
    return mine.length ? mine[0] : null;
  };
  /** Load the report; ``quiet``: a background refresh, which says nothing until it has news. */
  const loadCompare = async (quiet = false) => {
    const seq = ++cmpSeq;
    if (!candidate.value) {
      put(cmpOut);
      say("Choose a candidate to compare with the live answers.");
      return;
    }
    const chosen = candidate.value;
    if (quiet !== true) say("Comparing…");
    try {
      let q = `candidate=${enc(chosen)}&source=${enc(source.value)}`;
      if (source.value === "replay") {
        const rp = await newestReplay(chosen);
        if (seq !== cmpSeq) return;
        if (!rp) {
          put(cmpOut);
          say(`No replay to ${chosen} yet: start one below.`);
          return;
        }
        q += `&replay_id=${enc(rp.id)}`;
      } else q += `&since=${Date.now() - Number(windowSel.value)}`;
      const rep = await api(`${murl}/compare?${q}`);
      if (seq !== cmpSeq) return;
      put(cmpOut, reportView(rep, "ro-cmp-report"));
      say(`${num(rep.pairs)} pair(s) of ${chosen} against the live answers, ${rep.replay_id ? `replay ${rep.replay_id}` : windowSel.options[windowSel.selectedIndex].text.toLowerCase()}.`);
    } catch (e) {
      if (seq !== cmpSeq) return;
      say("");
      put(cmpOut, errorBox(e));
    }
  };
  const drawCompare = () => {
    const names = cmpEntities();
    const chosen = candidate.value || defaultCandidate();
    const key = stable([names, defaultCandidate()]);
    compare.el.hidden = names.length < 2 && !defaultCandidate();
    if (key === cmpKey) return;
    cmpKey = key;
    put(candidate, h("option", { value: "" }, "Choose…"), ...names.map((n) => h("option", { value: n }, n)));
    candidate.value = names.includes(chosen) ? chosen : "";
    drawReplayForm(names);
    if (!compare.el.hidden) loadCompare();
  };
  for (const el of [candidate, source, windowSel]) el.addEventListener("change", () => loadCompare());
  cmpRefresh.addEventListener("click", () => loadCompare());
  // shadow copies keep arriving: the report follows them while it is on screen
  every(10000, async () => {
    if (!compare.el.hidden && candidate.value && source.value === "shadow" && !document.hidden) await loadCompare(true);
  }, box);

  // ---- replay ----
  const drawReplayForm = (names) => {
    if (!manage) {
      put(replayBox, h("p", { class: "muted" }, "Replaying logged traffic needs CAN_MANAGE on the endpoint."));
      return;
    }
    if (replayBox.dataset.names === stable(names)) return;
    replayBox.dataset.names = stable(names);
    const rcand = select(names, candidate.value || names[names.length - 1]);
    rcand.id = "ro-replay-candidate";
    const limit = h("input", { type: "number", id: "ro-replay-limit", min: 1, max: 10000, step: 1, value: 100, required: true });
    const rate = h("input", { type: "number", id: "ro-replay-rate", min: 0.1, max: 1000, step: "any", value: 20, required: true });
    const start = h("button", { type: "submit", id: "ro-replay-start" }, "Start replay");
    const err = h("div", { "aria-live": "assertive" });
    const progress = h("div", { id: "ro-replay-progress", "aria-live": "polite" });
    const form = h("form", { id: "ro-replay-form", novalidate: true },
      h("fieldset", {}, h("legend", {}, "Replay logged traffic"),
        h("p", { class: "muted" }, "Sends logged requests of the chosen window again to a served entity of this endpoint, at a bounded rate; the replayed calls are marked in the inference table and never count as live traffic."),
        h("div", { class: "row" }, field("Candidate", rcand).wrap, field("Requests (at most)", limit).wrap, field("Rate (requests/s)", rate).wrap,
          h("div", { class: "ro-grow0" }, start)),
        err, progress));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      put(err);
      const n = Number(limit.value), r = Number(rate.value);
      if (!Number.isInteger(n) || n < 1) { err.append(errorBox("Requests: a whole number of at least 1.")); limit.focus(); return; }
      if (!(r > 0)) { err.append(errorBox("Rate: a number of requests per second above 0.")); rate.focus(); return; }
      start.disabled = true;
      try {
        const rp = await api(`${murl}/replays`, { method: "POST", body: {
          candidate: rcand.value, since: Date.now() - Number(windowSel.value), limit: n, rate_per_second: r } });
        toast(`Replay ${rp.id} started`);
        followReplay(rp, progress, start);
      } catch (e) {
        err.append(errorBox(e));
        start.disabled = false;
      }
    });
    put(replayBox, form);
  };

  const drawReplay = (rp, progress, start) => {
    const p = rp.progress || {};
    const running = REPLAY_ACTIVE.includes(rp.state);
    const cancel = h("button", { type: "button", class: "danger", id: "ro-replay-cancel" }, "Cancel replay");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try { await api(`${murl}/replays/${enc(rp.id)}/cancel`, { method: "POST", body: {} }); } catch (e) { progress.append(errorBox(e)); }
    });
    put(progress,
      h("p", { "data-replay": rp.id, "data-replay-state": rp.state },
        badge(rp.state, stateClass(rp.state)), ` Replay ${rp.id} to ${rp.candidate}: `,
        h("label", { class: "inline", for: "ro-replay-bar" }, `${num(p.sent ?? 0)} of ${num(p.total ?? 0)} sent, ${num(p.errors ?? 0)} error(s)`), " ",
        h("progress", { id: "ro-replay-bar", max: Math.max(1, p.total || 0), value: p.sent || 0 })),
      rp.message ? h("p", { class: /FAIL/.test(rp.state) ? "error" : "muted" }, rp.message) : null,
      running ? h("div", { class: "actions" }, cancel) : null,
      rp.report ? reportView(rp.report, "ro-replay-report") : null);
    start.disabled = running;
  };
  const followReplay = (rp, progress, start) => {
    latestReplay = { id: rp.id, candidate: rp.candidate };
    drawReplay(rp, progress, start);
    let done = !REPLAY_ACTIVE.includes(rp.state);
    if (done) return;
    every(1000, async () => {
      if (done) return;
      const got = await api(`${murl}/replays/${enc(rp.id)}`);
      drawReplay(got, progress, start);
      if (!REPLAY_ACTIVE.includes(got.state)) {
        done = true;
        if (source.value === "replay") loadCompare();
      }
    }, progress);
  };

  // ---------- the endpoint's updates ----------
  let lastKey = "";
  const update = (d) => {
    current = d;
    const key = stable([(d.config || {}).config_version, (d.state || {}).config_update, (d.pending_config || {}).config_version]);
    if (key === lastKey) return;
    const first = !lastKey;
    lastKey = key;
    roForce = true;
    loadVersions().then(() => { if (selected !== null && !first) showVersion(selected); });
  };
  update(detail);
  return update;
}


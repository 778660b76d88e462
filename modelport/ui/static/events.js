// The endpoint page's "Events" card (issue 23): the endpoint's event log
// (GET /api/2.0/serving-endpoints/{name}/events) as a timeline, newest first, grouped by day,
// each event with the icon and badge of its category (config, rollout, replica, refusal).
// Rate-limit and guardrail refusals come as one event per burst and per server process
// (gateway/refusal_bursts.py); adjacent bursts of the same kind whose times overlap (several
// processes, or one long storm written every minute) are shown merged, as one line:
// "N requests refused by <limit/guardrail> between t1 and t2 (alice 40, bob 2)".
// Filter by category or kind (the server filters), page with "Older", refreshes itself every
// 5 s (a checkbox turns it off). The table keeps the ids the rollout tests read
// (#ro-events, #ro-event-list tr[data-event], #ro-events-kind, #ro-events-older, #ro-events-status).

import { api, enc, errorBox, every, field, fmtTime, h, select } from "./core.js";

const EP = "/api/2.0/serving-endpoints";
const EVENT_PAGE = 15;
/** Dispatched on the box the card is mounted in (by rollouts.js after a rollback or a rollout
 * action): the card reloads the newest events. */
export const EVENTS_CHANGED = "modelport:events-changed";
const REFRESH_MS = 5000;

export const CATEGORIES = {
  config: { label: "Config", icon: "⚙", kinds: ["CONFIG_UPDATE_STARTED", "CONFIG_UPDATE_SUCCEEDED", "CONFIG_UPDATE_FAILED", "CONFIG_UPDATE_CANCELED", "CONFIG_ROLLBACK", "AI_GATEWAY_UPDATED"] },
  rollout: { label: "Rollout", icon: "⇪", kinds: ["ROLLOUT_STARTED", "ROLLOUT_STEP", "ROLLOUT_PROMOTED", "ROLLOUT_ROLLED_BACK", "ROLLOUT_PAUSED", "ROLLOUT_RESUMED", "ROLLOUT_CANCELED"] },
  replica: { label: "Replica", icon: "▣", kinds: ["REPLICA_STARTED", "REPLICA_STOPPED", "REPLICA_CRASHED", "REPLICA_SCALED", "COLD_START"] },
  refusal: { label: "Refusal", icon: "⊘", kinds: ["RATE_LIMITED", "GUARDRAIL_BLOCKED"] },
};
/** Every kind of the event log (store/events.py KINDS), by category. */
export const EVENT_KINDS = Object.values(CATEGORIES).flatMap((c) => c.kinds);
const BURSTS = CATEGORIES.refusal.kinds;

export const categoryOf = (kind) => Object.keys(CATEGORIES).find((c) => CATEGORIES[c].kinds.includes(kind)) || "other";

function kindClass(kind) {
  if (/FAILED|ROLLED_BACK|CRASHED|CANCELED|RATE_LIMITED|BLOCKED/.test(kind)) return "failed";
  if (/SUCCEEDED|PROMOTED|RESUMED/.test(kind)) return "ready";
  if (/STARTED|STEP|ROLLBACK|PAUSED|SCALED|COLD_START/.test(kind)) return "updating";
  return "notready";
}

const short = (v) => (v === undefined || v === null) ? "–" : typeof v === "string" ? v : JSON.stringify(v);
const pad = (n) => String(n).padStart(2, "0");
/** The local calendar day of ``ms`` (the timeline's groups): "2026-12-07". */
const dayKey = (ms) => { const d = new Date(Number(ms)); return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`; };
const dayText = (ms) => new Date(Number(ms)).toLocaleDateString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
const clock = (ms) => new Date(Number(ms)).toLocaleTimeString();

// ---------- refusal bursts ----------

const isBurst = (e) => BURSTS.includes(e.kind) && e.details && Number.isFinite(Number(e.details.count));

function counts(list) {
  const out = new Map();
  for (const item of list || []) out.set(item.name, (out.get(item.name) || 0) + Number(item.count || 0));
  return out;
}

function addCounts(into, list) {
  for (const [name, n] of counts(list)) into.set(name, (into.get(name) || 0) + n);
}

/** The events as the timeline shows them: bursts of the same kind next to each other in the list
 * (newest first) whose times overlap, or are closer than the quiet period that ends a burst, become
 * one item ``{...newest, burst: {count, first, last, principals: Map, reasons: Map, others,
 * processes: Set, ids}}``; every other event is itself. */
export function mergeBursts(events) {
  const out = [];
  for (const e of events) {
    if (!isBurst(e)) { out.push(e); continue; }
    const d = e.details;
    const quiet = Number(d.quiet_seconds || 0) * 1000;
    const prev = out[out.length - 1];
    if (prev && prev.burst && prev.kind === e.kind && Number(d.last) + quiet >= prev.burst.first) {
      const b = prev.burst;
      b.count += Number(d.count);
      b.first = Math.min(b.first, Number(d.first));
      b.last = Math.max(b.last, Number(d.last));
      addCounts(b.principals, d.by_principal);
      addCounts(b.reasons, d.by_limit || d.by_guardrail);
      b.others += Number(d.others || 0);
      if (d.process) b.processes.add(d.process);
      b.ids.push(e.id);
      continue;
    }
    const principals = new Map();
    const reasons = new Map();
    addCounts(principals, d.by_principal);
    addCounts(reasons, d.by_limit || d.by_guardrail);
    out.push({ ...e, burst: {
      count: Number(d.count), first: Number(d.first), last: Number(d.last), principals, reasons,
      others: Number(d.others || 0), processes: new Set(d.process ? [d.process] : []), ids: [e.id],
    } });
  }
  return out;
}

const ranked = (map) => [...map.entries()].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));

/** "42 requests refused by user limit 5 calls/min between 13:01:02 and 13:01:40 (alice 40, bob 2)". */
export function burstText(item) {
  const b = item.burst;
  const reasons = ranked(b.reasons).map(([name]) => item.kind === "GUARDRAIL_BLOCKED" ? `the ${name} guardrail` : name);
  const by = reasons.length > 2 ? `${reasons.slice(0, 2).join(" and ")} and others` : reasons.join(" and ") || (item.kind === "RATE_LIMITED" ? "a rate limit" : "a guardrail");
  const top = ranked(b.principals);
  const shown = top.slice(0, 5);
  const rest = top.slice(5).reduce((s, [, n]) => s + n, 0) + b.others;
  const who = [...shown.map(([name, n]) => `${name} ${n}`), rest ? `others ${rest}` : null].filter(Boolean).join(", ");
  const when = Math.floor(b.first / 1000) === Math.floor(b.last / 1000) ? `at ${clock(b.last)}` : `between ${clock(b.first)} and ${clock(b.last)}`;
  return `${b.count} ${b.count === 1 ? "request" : "requests"} refused by ${by} ${when}${who ? ` (${who})` : ""}`;
}

function burstDetails(item) {
  const b = item.burst;
  const list = (title, map) => h("div", {}, h("strong", {}, title),
    h("ul", { class: "ev-plain" }, ranked(map).map(([name, n]) => h("li", {}, `${name}: ${n}`))));
  return h("details", { class: "ev-more" }, h("summary", {}, "Breakdown"),
    list("By caller", b.principals),
    b.others ? h("p", { class: "muted" }, `Other callers: ${b.others}`) : null,
    list(item.kind === "RATE_LIMITED" ? "By limit" : "By guardrail", b.reasons),
    h("p", { class: "muted" }, `${b.ids.length} burst event(s) from ${b.processes.size || 1} server process(es): ${[...b.processes].join(", ") || "–"}. `,
      `From ${fmtTime(b.first)} to ${fmtTime(b.last)}.`));
}

// ---------- the card ----------

function put(el, ...kids) {
  el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
}

const detailsText = (d) => (d && typeof d === "object" && Object.keys(d).length)
  ? Object.entries(d).filter(([k]) => k !== "log_tail").map(([k, v]) => `${k}: ${short(v)}`).join("; ") : "";

function eventRow(item) {
  const cat = categoryOf(item.kind);
  const meta = CATEGORIES[cat] || { label: "Other", icon: "•" };
  const when = item.burst ? item.burst.last : item.timestamp;
  const message = item.burst
    ? [h("span", { class: "ev-burst", "data-burst-count": item.burst.count }, burstText(item)), burstDetails(item)]
    : [item.message || "", item.actor ? h("div", { class: "muted" }, `by ${item.actor}`) : null,
      detailsText(item.details) ? h("div", { class: "muted ro-details" }, detailsText(item.details)) : null,
      item.details && Array.isArray(item.details.log_tail) && item.details.log_tail.length
        ? h("details", { class: "ev-more" }, h("summary", {}, "Log tail"), h("pre", { class: "ev-log" }, item.details.log_tail.join("\n"))) : null];
  return h("tr", { "data-event": item.id, "data-kind": item.kind, "data-category": cat, class: `ev-row ev-${cat}`,
    "data-merged": item.burst && item.burst.ids.length > 1 ? item.burst.ids.join(" ") : null },
    h("td", { "data-label": "Time" }, h("time", { datetime: new Date(Number(when)).toISOString(), title: fmtTime(when) }, clock(when))),
    h("td", { "data-label": "Kind" },
      h("span", { class: `ev-icon ev-icon-${cat}`, "aria-hidden": "true" }, meta.icon), " ",
      h("span", { class: "ev-cat" }, meta.label), " ",
      h("span", { class: `badge state-${kindClass(item.kind)}`, "data-kind-badge": item.kind }, item.kind)),
    h("td", { "data-label": "Served entity" }, item.served_entity || "–"),
    h("td", { "data-label": "Version" }, item.config_version ?? "–"),
    h("td", { "data-label": "Message" }, message));
}

/** The timeline's table bodies: one per day, newest first, its first row the day's heading. */
export function timeline(events) {
  const groups = [];
  for (const item of mergeBursts(events)) {
    const when = item.burst ? item.burst.last : item.timestamp;
    const key = dayKey(when);
    let g = groups[groups.length - 1];
    if (!g || g.key !== key) groups.push(g = { key, when, items: [] });
    g.items.push(item);
  }
  return groups.map((g) => h("tbody", { "data-day": g.key },
    h("tr", { class: "ev-day" }, h("th", { colspan: 5, scope: "rowgroup" }, dayText(g.when))),
    g.items.map(eventRow)));
}

/** The endpoint page's Events card, appended to ``box``; returns the function endpoint.js calls
 * with every fresh endpoint detail (a new config version reloads the newest events). */
export function endpointEvents(box, detail) {
  const url = `${EP}/${enc(detail.name)}`;
  const heading = h("h2", { id: "ro-events-title" }, "Events");
  const category = select([["", "All categories"], ...Object.entries(CATEGORIES).map(([k, c]) => [k, c.label])], "");
  category.id = "ro-events-category";
  const kind = h("select", { id: "ro-events-kind" });
  const auto = h("input", { type: "checkbox", id: "ro-events-auto", checked: true });
  const refresh = h("button", { type: "button", class: "secondary", id: "ro-events-refresh" }, "Refresh");
  const list = h("table", { class: "responsive ev-timeline", id: "ro-event-list" },
    h("caption", { class: "sr-only" }, "Endpoint events, newest first, grouped by day"),
    h("thead", {}, h("tr", {}, ["Time", "Kind", "Served entity", "Version", "Message"].map((c) => h("th", { scope: "col" }, c)))));
  const older = h("button", { type: "button", class: "secondary", id: "ro-events-older", hidden: true }, "Older");
  const err = h("div");
  const status = h("p", { class: "muted", id: "ro-events-status", "aria-live": "polite", tabindex: "-1" });
  const card = h("section", { class: "card", id: "ro-events", "aria-labelledby": "ro-events-title" }, heading,
    h("p", { class: "muted" }, "What happened to this endpoint, newest first: config updates, rollouts, replicas, and refused requests (rate limits and guardrails, one line per burst)."),
    h("div", { class: "row ev-controls" }, field("Category", category).wrap, field("Kind", kind).wrap,
      h("div", { class: "ev-auto" }, auto, h("label", { for: "ro-events-auto" }, "Refresh every 5 s")),
      h("div", { class: "ro-grow0" }, refresh)),
    status, h("div", { class: "table-wrap" }, list), h("div", { class: "actions" }, older), err);
  box.append(card);

  const fillKinds = () => {
    const kinds = category.value ? CATEGORIES[category.value].kinds : EVENT_KINDS;
    const was = kind.value;
    put(kind, h("option", { value: "" }, category.value ? `All ${CATEGORIES[category.value].label.toLowerCase()} kinds` : "All kinds"),
      ...kinds.map((k) => h("option", { value: k }, k)));
    kind.value = kinds.includes(was) ? was : "";
  };
  fillKinds();

  let events = []; // every event loaded, newest first, contiguous
  let token = null; // the page token after the oldest loaded event
  let pages = 0; // pages loaded: with one, a refresh shows the newest page; with more, adds on top
  let shown = "";
  let seq = 0;
  const filterKinds = () => kind.value ? [kind.value] : category.value ? CATEGORIES[category.value].kinds : [];
  const filterText = () => kind.value ? ` of kind ${kind.value}` : category.value ? ` in category ${CATEGORIES[category.value].label}` : "";
  const query = (pageToken) => {
    const kinds = filterKinds();
    return `${url}/events?max_results=${EVENT_PAGE}${kinds.length ? `&kind=${enc(kinds.join(","))}` : ""}${pageToken ? `&page_token=${enc(pageToken)}` : ""}`;
  };
  const draw = () => {
    const key = JSON.stringify(events.map((e) => e.id));
    older.hidden = !token;
    const n = events.length;
    status.textContent = n ? `${n}${token ? "+" : ""} event(s)${filterText()}, newest first.` : `No event${filterText()} yet.`;
    if (key === shown) return;
    shown = key;
    // keep the focus on the breakdown a keyboard user opened (redraws replace the rows)
    const had = document.activeElement;
    const row = had && list.contains(had) ? had.closest("tr[data-event]") : null;
    const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.closest("tr").dataset.event));
    for (const tb of [...list.tBodies]) tb.remove();
    list.append(...timeline(events));
    for (const id of open) {
      const d = list.querySelector(`tr[data-event="${id}"] details`);
      if (d) d.open = true;
    }
    if (row) {
      const again = list.querySelector(`tr[data-event="${row.dataset.event}"] summary`);
      if (again) again.focus();
    }
  };
  /** The newest page; once older pages are loaded, new events go on top of them instead (a gap:
   * start again from the newest page). */
  const load = async (reset = false) => {
    const mine = ++seq;
    put(err);
    try {
      const got = await api(query(null));
      if (mine !== seq) return;
      const page = got.events || [];
      const top = events.length ? events[0].id : null;
      const overlaps = top !== null && page.some((e) => e.id <= top);
      if (reset || pages <= 1 || !overlaps) {
        events = page;
        token = got.next_page_token || null;
        pages = 1;
      } else {
        events = [...page.filter((e) => e.id > top), ...events];
      }
      draw();
    } catch (e) {
      if (mine === seq) put(err, errorBox(e));
    }
  };
  older.addEventListener("click", async () => {
    older.disabled = true;
    const mine = seq;
    try {
      const got = await api(query(token));
      if (mine !== seq) return;
      const oldest = events.length ? events[events.length - 1].id : Infinity;
      events = [...events, ...(got.events || []).filter((e) => e.id < oldest)];
      token = got.next_page_token || null;
      pages += 1;
      draw();
      if (!token) status.focus();
    } catch (e) {
      put(err, errorBox(e));
    } finally {
      older.disabled = false;
    }
  });
  const restart = () => { events = []; token = null; pages = 0; shown = ""; load(true); };
  category.addEventListener("change", () => { fillKinds(); restart(); });
  kind.addEventListener("change", restart);
  refresh.addEventListener("click", () => load());
  box.addEventListener(EVENTS_CHANGED, () => load());
  every(REFRESH_MS, async () => { if (auto.checked && !document.hidden) await load(); }, card);

  let lastKey = "";
  const update = (d) => {
    const key = JSON.stringify([(d.config || {}).config_version, (d.state || {}).config_update, (d.pending_config || {}).config_version]);
    if (key === lastKey) return;
    const first = !lastKey;
    lastKey = key;
    if (!first) load();
  };
  update(detail);
  return update;
}

// The endpoint page's live charts: the endpoint's Prometheus metrics polled every 2 s, rates and
// percentiles computed over each interval, drawn as small SVG line charts.

import { apiText, errorBox, every, h } from "./core.js";

// ---------- metrics ----------

export function parseProm(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const p of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function summarize(samples) {
  const s = { total: 0, errors: 0, buckets: new Map(), replicas: 0, inflight: 0, queued: 0, cache: { hit: 0, miss: 0, bypass: 0 } };
  for (const x of samples) {
    if (x.name === "modelport_response_cache_lookups_total") {
      if (Object.hasOwn(s.cache, x.labels.result)) s.cache[x.labels.result] += x.value;
    } else if (x.name === "modelport_endpoint_requests_total") {
      s.total += x.value;
      if (!/^2/.test(x.labels.status || "")) s.errors += x.value;
    } else if (x.name === "modelport_endpoint_request_duration_seconds_bucket" || x.name === "modelport_endpoint_latency_seconds_bucket") {
      const le = x.labels.le === "+Inf" ? Infinity : Number(x.labels.le);
      s.buckets.set(le, (s.buckets.get(le) || 0) + x.value);
    } else if (x.name === "modelport_endpoint_replicas") s.replicas += x.value;
    else if (x.name === "modelport_endpoint_in_flight_requests") s.inflight += x.value;
    else if (x.name === "modelport_endpoint_queued") s.queued += x.value;
  }
  return s;
}

/** The response cache's hit rate, hits / (hits + misses), from the lookup counters (lookups of
 * requests that could not be cached, ``bypass``, are left out); null before the first lookup. */
export function hitRate(cache) {
  const looked = cache.hit + cache.miss;
  return looked > 0 ? cache.hit / looked : null;
}

/** "hit rate 50% (1 hit, 1 miss, 0 not cacheable)", since the server started. */
export function cacheText(cache) {
  if (!cache) return "hit rate –";
  const rate = hitRate(cache);
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  return `hit rate ${rate === null ? "–" : `${Math.round(rate * 100)}%`} (${plural(cache.hit, "hit", "hits")}, ${plural(cache.miss, "miss", "misses")}, ${cache.bypass} not cacheable)`;
}

/** Quantile from the deltas of cumulative histogram buckets (linear inside a bucket). */
export function quantile(prevBuckets, buckets, q) {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  const counts = les.map((le) => (buckets.get(le) || 0) - ((prevBuckets && prevBuckets.get(le)) || 0));
  const total = counts[counts.length - 1];
  if (!total || total <= 0) return null;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (let i = 0; i < les.length; i++) {
    if (counts[i] >= rank) {
      if (les[i] === Infinity) return prevLe;
      const inBucket = counts[i] - prevCount;
      return prevLe + (les[i] - prevLe) * (inBucket > 0 ? (rank - prevCount) / inBucket : 1);
    }
    prevLe = les[i];
    prevCount = counts[i];
  }
  return prevLe;
}

export function lineChart(series, colors) {
  const W = 300, H = 60;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const all = series.flat().filter((v) => v !== null && Number.isFinite(v));
  const max = Math.max(1e-9, ...all);
  const n = Math.max(2, ...series.map((s) => s.length));
  series.forEach((s, k) => {
    const pts = [];
    s.forEach((v, i) => { if (v !== null && Number.isFinite(v)) pts.push(`${((i + (n - s.length)) / (n - 1)) * W},${H - 2 - (v / max) * (H - 6)}`); });
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("points", pts.join(" "));
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", colors[k]);
    pl.setAttribute("stroke-width", "2");
    pl.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(pl);
  });
  return svg;
}

export function fmtNum(v, unit = "") {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (unit === "ms") return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ms`;
  return `${Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2).replace(/\.?0+$/, "")}${unit}`;
}

/** The live charts; ``onSummary`` gets every poll's summary (the page shows the cache's hit rate). */
export function setupCharts(section, url, onSummary) {
  const defs = [
    ["rps", "Requests/s", ["#1f5fbf"], ""],
    ["latency", "Latency p50 / p99", ["#1f5fbf", "#b35c00"], "ms"],
    ["errors", "Errors/s", ["#a40e26"], ""],
    ["replicas", "Replicas", ["#146c2e"], ""],
    ["concurrency", "Concurrency (in flight + queued)", ["#6b3fa0"], ""],
  ];
  const hist = Object.fromEntries(defs.map(([k, , colors]) => [k, colors.map(() => [])]));
  const boxes = {};
  const grid = h("div", { class: "charts" });
  for (const [k, title] of defs) {
    const value = h("div", { class: "value", "data-chart-value": k }, "–");
    const box = h("figure", { class: "chart", id: `chart-${k}`, style: "margin:0" }, h("figcaption", { class: "muted" }, title), value, h("div"));
    boxes[k] = box;
    grid.append(box);
  }
  const err = h("div");
  section.append(h("p", { class: "muted" }, "From this endpoint's Prometheus metrics, polled every 2 s; rates and percentiles over each interval."), grid, err);
  let prev = null;
  const push = (k, vals) => {
    vals.forEach((v, i) => { hist[k][i].push(v); if (hist[k][i].length > 60) hist[k][i].shift(); });
  };
  every(2000, async () => {
    let text;
    try { text = await apiText(`${url}/metrics`); err.replaceChildren(); } catch (e) { err.replaceChildren(errorBox(e)); return; }
    const now = performance.now();
    const s = summarize(parseProm(text));
    if (onSummary) onSummary(s);
    if (prev) {
      const dt = (now - prev.t) / 1000;
      const rps = Math.max(0, (s.total - prev.s.total) / dt);
      const eps = Math.max(0, (s.errors - prev.s.errors) / dt);
      const p50 = quantile(prev.s.buckets, s.buckets, 0.5);
      const p99 = quantile(prev.s.buckets, s.buckets, 0.99);
      push("rps", [rps]);
      push("errors", [eps]);
      push("latency", [p50 === null ? null : p50 * 1000, p99 === null ? null : p99 * 1000]);
      push("replicas", [s.replicas]);
      push("concurrency", [s.inflight + s.queued]);
      const last = (k, i = 0) => { const a = hist[k][i]; for (let j = a.length - 1; j >= 0; j--) if (a[j] !== null) return a[j]; return null; };
      const values = {
        rps: fmtNum(rps), errors: fmtNum(eps), replicas: fmtNum(s.replicas), concurrency: fmtNum(s.inflight + s.queued),
        latency: `${fmtNum(last("latency", 0), "ms")} / ${fmtNum(last("latency", 1), "ms")}`,
      };
      for (const [k, , colors] of defs) {
        const box = boxes[k];
        box.querySelector("[data-chart-value]").textContent = values[k];
        box.dataset.points = String(hist[k][0].length);
        box.dataset.max = String(Math.max(0, ...hist[k][0].filter((v) => v !== null)));
        const peak = Math.max(0, ...hist[k].flat().filter((v) => v !== null && Number.isFinite(v)));
        box.lastChild.replaceChildren(lineChart(hist[k], colors), h("div", { class: "muted axis" }, `peak ${fmtNum(peak, defs.find((d) => d[0] === k)[3])} · last 2 min`));
      }
    }
    prev = { t: now, s };
  }, section);
}

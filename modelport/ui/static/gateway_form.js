// The AI gateway as a form (PUT .../serving-endpoints/{name}/ai-gateway): usage tracking, the
// inference table, rate limits, input and output guardrails, fallbacks and the response cache.
// The form edits a copy of the stored ai_gateway and sends the whole object: what it does not
// model (an extension field such as inference_table_config.record_raw_request) goes back as it
// came. "Advanced: JSON" shows and sends the same object as text.
//
// Also the form helpers extension_form.js uses: FieldErrors (a message beside the field it
// concerns, aria-invalid + aria-describedby; the server's 400 messages name the field's path,
// "Invalid value for 'rate_limits[0].calls': ...") and the number checks done before sending.

import { api, errorBox, field, h, select, toast, uid } from "./core.js";

// ---------- form helpers (shared with extension_form.js) ----------

/** The field path a server validation message names ("Invalid value for 'PATH': ...",
 * "Missing required field 'PATH'..."), or null. */
export function messagePath(message) {
  const m = /(?:Invalid value for|Missing required field) '([^']+)'/.exec(String(message || ""));
  return m ? m[1] : null;
}

/** The path one level up: "a.b[0].c" → "a.b[0]" → "a.b" → "a" → "". */
function parentPath(path) {
  const m = /^(.*?)(\.[^.[\]]+|\[\d+\])$/.exec(path);
  return m ? m[1] : "";
}

/** Messages beside fields. Fields are registered under the path the server names them by; a
 * message for an unregistered path goes to the nearest registered parent, else to the form-level
 * box. A field gets aria-invalid and its message joins its aria-describedby. */
export class FieldErrors {
  constructor(formBox) {
    this.box = formBox;
    this.paths = new Map();
    this.marked = [];
  }

  register(path, el) {
    this.paths.set(path, el);
    return el;
  }

  forget(prefix) {
    for (const p of [...this.paths.keys()]) if (p.startsWith(prefix)) this.paths.delete(p);
  }

  clear() {
    for (const [el, note] of this.marked) {
      note.remove();
      if (el.matches("input, select, textarea")) {
        el.removeAttribute("aria-invalid");
        const rest = (el.getAttribute("aria-describedby") || "").split(/\s+/).filter((id) => id && id !== note.id);
        if (rest.length) el.setAttribute("aria-describedby", rest.join(" ")); else el.removeAttribute("aria-describedby");
      }
    }
    this.marked = [];
    this.box.replaceChildren();
  }

  /** Show `message` beside `el` (a control, or a fieldset/container: then inside it, at its end). */
  mark(el, message) {
    const note = h("div", { class: "field-error", id: uid("err"), "data-error-for": el.id || "" }, message);
    if (el.matches("input, select, textarea")) {
      el.setAttribute("aria-invalid", "true");
      const ids = (el.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
      el.setAttribute("aria-describedby", [...ids, note.id].join(" "));
      (el.closest("label.inline") || el).after(note);
    } else {
      note.setAttribute("role", "alert");
      el.append(note);
    }
    this.marked.push([el, note]);
    return note;
  }

  find(path) {
    for (let p = path; p; p = parentPath(p)) if (this.paths.has(p)) return this.paths.get(p);
    return null;
  }

  /** An error from the API: beside its field when the message names one, else form-level.
   * Returns the element marked (null: form-level). */
  show(err) {
    const message = err instanceof Error ? err.message : String(err);
    const path = err && err.status === 400 ? messagePath(message) : null;
    const el = path ? this.find(path) : null;
    if (!el || el.closest("[hidden]") || el.disabled) {
      this.box.append(errorBox(err));
      return null;
    }
    this.mark(el, message);
    this.box.append(h("div", { class: "error", role: "alert" }, "Not saved: the server refused a value (marked below)."));
    focusInto(el);
    return el;
  }

  /** Client-side problems ([[el, message]]): each marked; the first focused. */
  showProblems(problems) {
    for (const [el, msg] of problems) this.mark(el, msg);
    this.box.append(h("div", { class: "error", role: "alert" },
      `Not sent: ${problems.length === 1 ? "one field needs" : `${problems.length} fields need`} a change (marked below).`));
    if (problems.length) focusInto(problems[0][0]);
  }
}

function focusInto(el) {
  const target = el.matches("input, select, textarea, button") ? el : el.querySelector("input, select, textarea, button");
  if (target) target.focus();
}

/** A number input's value checked: null when empty and not required; pushes a problem and
 * returns undefined when wrong. */
export function numberValue(input, problems, { label, min, max, above, integer = false, required = false }) {
  const raw = input.value.trim();
  if (raw === "") {
    if (required) problems.push([input, `${label} is required.`]);
    return required ? undefined : null;
  }
  const n = Number(raw);
  if (!Number.isFinite(n)) { problems.push([input, `${label} must be a number.`]); return undefined; }
  if (integer && !Number.isInteger(n)) { problems.push([input, `${label} must be a whole number.`]); return undefined; }
  if (above !== undefined && !(n > above)) { problems.push([input, `${label} must be above ${above}.`]); return undefined; }
  if (min !== undefined && n < min) { problems.push([input, `${label} must be at least ${min}.`]); return undefined; }
  if (max !== undefined && n > max) { problems.push([input, `${label} must be at most ${max}.`]); return undefined; }
  return n;
}

export function checkbox(id, checked, text) {
  const input = h("input", { type: "checkbox", id, checked });
  return { input, wrap: h("label", { class: "inline", for: id }, input, text) };
}

export const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

const lines = (text) => text.split(/\n|,/).map((s) => s.trim()).filter(Boolean);

// ---------- the AI gateway form ----------

export const RATE_KEYS = [
  ["endpoint", "Endpoint (all callers together)"],
  ["user", "User"],
  ["user_group", "Group"],
  ["service_principal", "Service principal"],
];
const PII = [["", "Not checked"], ["NONE", "NONE: detect and record only"], ["BLOCK", "BLOCK: refuse"], ["MASK", "MASK: replace with placeholders"]];
export const CACHE_TTL_MAX = 604800;
export const CACHE_ENTRY_MAX = 67108864;
const CACHE_DEFAULTS = { ttl_seconds: 300, scope: "user", max_entry_bytes: 1048576 };
const MAX_RATE_LIMITS = 20;

/** A toggle block ({enabled}) as sent: absent stays absent while off. */
function toggle(out, key, had, on) {
  if (on || had) out[key] = { ...(out[key] || {}), enabled: on };
  else delete out[key];
}

/** Draw the AI gateway form into `box`. `gw`: the stored ai_gateway; `save(body)`: PUT it
 * (resolves when saved, rejects with the ApiError). */
export function gatewayForm(box, gw, save) {
  const original = clone(gw || {});
  const formErr = h("div", { "aria-live": "assertive", id: "gateway-form-errors" });
  const errors = new FieldErrors(formErr);
  const form = h("form", { id: "gateway-form", novalidate: true, "aria-labelledby": "gw-form-title" });

  // usage tracking and fallbacks
  const usage = checkbox("gw-usage", !!(original.usage_tracking_config || {}).enabled,
    "Usage tracking: record each request's caller and tokens in system.serving.endpoint_usage");
  const fallback = checkbox("gw-fallback", !!(original.fallback_config || {}).enabled,
    "Fallbacks: on a 429 or 5xx, try the endpoint's other served entities in config order");
  errors.register("usage_tracking_config", usage.input);
  errors.register("fallback_config", fallback.input);

  // inference table
  const itc = original.inference_table_config || {};
  const itEnabled = checkbox("gw-it-enabled", !!itc.enabled, "Log requests and responses to an inference table");
  const itCatalog = h("input", { type: "text", id: "gw-it-catalog", value: itc.catalog_name || "", autocomplete: "off" });
  const itSchema = h("input", { type: "text", id: "gw-it-schema", value: itc.schema_name || "", autocomplete: "off" });
  const itPrefix = h("input", { type: "text", id: "gw-it-prefix", value: itc.table_name_prefix || "", autocomplete: "off" });
  const itSet = h("fieldset", { id: "gw-inference-table" }, h("legend", {}, "Inference table"), itEnabled.wrap,
    h("div", { class: "row" }, field("Catalog", itCatalog).wrap, field("Schema", itSchema).wrap,
      field("Table name prefix", itPrefix, "The table is <catalog>.<schema>.<prefix>_payload; empty: the endpoint's name.").wrap));
  errors.register("inference_table_config", itSet);
  errors.register("inference_table_config.enabled", itEnabled.input);
  errors.register("inference_table_config.catalog_name", itCatalog);
  errors.register("inference_table_config.schema_name", itSchema);
  errors.register("inference_table_config.table_name_prefix", itPrefix);

  // rate limits
  const rows = [];
  const rowsBox = h("div", { id: "gw-rate-limits" });
  const addLimit = h("button", { type: "button", class: "secondary", id: "gw-rl-add" }, "Add a rate limit");
  const limitsSet = h("fieldset", { id: "gw-rate-limits-set" }, h("legend", {}, "Rate limits"),
    h("p", { class: "muted" }, "Each limit counts calls or tokens per minute for one key: the whole endpoint, or each user, group or service principal (one of them when you name it)."),
    rowsBox, h("div", { class: "actions" }, addLimit));
  errors.register("rate_limits", limitsSet);
  const renumber = () => {
    errors.forget("rate_limits[");
    rows.forEach((r, i) => {
      r.set.dataset.rateLimit = String(i);
      r.legend.textContent = `Rate limit ${i + 1}`;
      r.remove.textContent = `Remove rate limit ${i + 1}`;
      for (const [name, el] of Object.entries(r.paths)) errors.register(`rate_limits[${i}]${name}`, el);
    });
    addLimit.disabled = rows.length >= MAX_RATE_LIMITS;
    rowsBox.replaceChildren(...(rows.length ? rows.map((r) => r.set) : [h("p", { class: "muted", id: "gw-no-limits" }, "No rate limits.")]));
  };
  const addRow = (limit) => {
    const base = clone(limit || {});
    const key = select(RATE_KEYS, base.key || "endpoint");
    key.dataset.field = "key";
    const principal = h("input", { type: "text", value: base.principal || "", autocomplete: "off", "data-field": "principal" });
    const principalWrap = field("Principal (optional)", principal, "A user name, group name or service principal application id; empty: each one separately.").wrap;
    const metric = select([["calls", "Calls"], ["tokens", "Tokens"]], base.tokens !== undefined && base.calls === undefined ? "tokens" : "calls");
    metric.dataset.field = "metric";
    const amount = h("input", { type: "number", min: 0, step: 1, value: base.calls ?? base.tokens ?? "", "data-field": "amount" });
    const period = select([["minute", "Per minute"]], base.renewal_period || "minute");
    period.dataset.field = "renewal_period";
    const legend = h("legend", {});
    const remove = h("button", { type: "button", class: "danger" });
    const set = h("fieldset", { class: "rate-limit" }, legend,
      h("div", { class: "row" }, field("Key", key).wrap, principalWrap, field("Counts", metric).wrap, field("Limit", amount).wrap, field("Renewal period", period).wrap),
      h("div", { class: "actions" }, remove));
    const showPrincipal = () => { principalWrap.hidden = key.value === "endpoint"; };
    key.addEventListener("change", showPrincipal);
    showPrincipal();
    const row = {
      set, legend, remove, base, key, principal, metric, amount, period,
      paths: { "": set, ".key": key, ".principal": principal, ".calls": amount, ".tokens": amount, ".renewal_period": period },
    };
    remove.addEventListener("click", () => {
      const i = rows.indexOf(row);
      rows.splice(i, 1);
      renumber();
      (rows[Math.min(i, rows.length - 1)] || { key: addLimit }).key.focus();
    });
    rows.push(row);
    return row;
  };
  for (const l of original.rate_limits || []) addRow(l);
  addLimit.addEventListener("click", () => { const r = addRow({}); renumber(); r.key.focus(); });
  renumber();

  // guardrails
  const guard = {};
  const guardSets = ["input", "output"].map((side) => {
    const g = ((original.guardrails || {})[side]) || {};
    const title = side === "input" ? "Input guardrails (the request, before any served entity sees it)" : "Output guardrails (the answer)";
    const safety = checkbox(`gw-${side}-safety`, !!g.safety, "Safety: refuse clearly unsafe texts");
    const pii = select(PII, (g.pii || {}).behavior || "");
    pii.id = `gw-${side}-pii`;
    const keywords = h("textarea", { id: `gw-${side}-keywords`, rows: 3, spellcheck: "false" });
    keywords.value = (g.invalid_keywords || []).join("\n");
    const topics = h("textarea", { id: `gw-${side}-topics`, rows: 3 });
    topics.value = (g.valid_topics || []).join("\n");
    guard[side] = { safety: safety.input, pii, keywords, topics };
    const set = h("fieldset", { id: `gw-guardrails-${side}` }, h("legend", {}, title), safety.wrap,
      field("PII (emails, phone and card numbers, IBANs, SSNs, IP addresses)", pii).wrap,
      h("div", { class: "row" },
        field("Invalid keywords (one a line)", keywords, "Whole words or phrases, any case; a match is refused.").wrap,
        field("Valid topics (one a line)", topics, "Texts of three words or more must be about one of them (needs the system embedding endpoint).").wrap));
    errors.register(`guardrails.${side}`, set);
    errors.register(`guardrails.${side}.safety`, safety.input);
    errors.register(`guardrails.${side}.pii`, pii);
    errors.register(`guardrails.${side}.invalid_keywords`, keywords);
    errors.register(`guardrails.${side}.valid_topics`, topics);
    return set;
  });

  // response cache
  const rc = { ...CACHE_DEFAULTS, ...(original.response_cache || {}) };
  const cacheOn = checkbox("gw-cache-enabled", !!(original.response_cache || {}).enabled, "Answer repeated queries from the response cache");
  const ttl = h("input", { type: "number", id: "gw-cache-ttl", min: 1, max: CACHE_TTL_MAX, step: 1, value: rc.ttl_seconds });
  const scope = select([["user", "Each user their own answers"], ["endpoint", "Shared by every caller"]], rc.scope);
  scope.id = "gw-cache-scope";
  const similarity = h("input", { type: "number", id: "gw-cache-similarity", min: 0, max: 1, step: 0.01, value: rc.semantic_similarity ?? "" });
  const maxBytes = h("input", { type: "number", id: "gw-cache-max-bytes", min: 1, max: CACHE_ENTRY_MAX, step: 1, value: rc.max_entry_bytes });
  const nonDet = checkbox("gw-cache-nondet", !!rc.cache_non_deterministic, "Cache non-deterministic requests too (sampled, no temperature 0)");
  const cacheSet = h("fieldset", { id: "gw-cache" }, h("legend", {}, "Response cache"), cacheOn.wrap,
    h("div", { class: "row" },
      field("TTL (seconds)", ttl, `1 to ${CACHE_TTL_MAX}.`).wrap,
      field("Scope", scope).wrap,
      field("Semantic similarity", similarity, "Above 0, at most 1; empty: exact matches only.").wrap,
      field("Largest answer kept (bytes)", maxBytes, `1 to ${CACHE_ENTRY_MAX}.`).wrap),
    nonDet.wrap, h("p", { class: "muted" }, "Any change starts the cache afresh. See docs/cache.md."));
  errors.register("response_cache", cacheSet);
  errors.register("response_cache.enabled", cacheOn.input);
  errors.register("response_cache.ttl_seconds", ttl);
  errors.register("response_cache.scope", scope);
  errors.register("response_cache.semantic_similarity", similarity);
  errors.register("response_cache.max_entry_bytes", maxBytes);
  errors.register("response_cache.cache_non_deterministic", nonDet.input);

  /** The whole ai_gateway the form describes, on a copy of the stored one; `problems` collects
   * what the client-side checks found ([[el, message]]). */
  const collect = (problems) => {
    const out = clone(original);
    toggle(out, "usage_tracking_config", !!original.usage_tracking_config, usage.input.checked);
    toggle(out, "fallback_config", !!original.fallback_config, fallback.input.checked);

    const itOn = itEnabled.input.checked;
    const itValues = { catalog_name: itCatalog.value.trim(), schema_name: itSchema.value.trim(), table_name_prefix: itPrefix.value.trim() };
    if (itOn || original.inference_table_config) {
      const t = { ...(out.inference_table_config || {}), enabled: itOn };
      for (const [k, v] of Object.entries(itValues)) { if (v) t[k] = v; else delete t[k]; }
      if (itOn) {
        if (!t.catalog_name) problems.push([itCatalog, "The catalog is required for an inference table."]);
        if (!t.schema_name) problems.push([itSchema, "The schema is required for an inference table."]);
      }
      out.inference_table_config = t;
    }

    const limits = rows.map((r) => {
      const l = clone(r.base);
      delete l.calls; delete l.tokens;
      l.key = r.key.value;
      const who = r.principal.value.trim();
      if (l.key !== "endpoint" && who) l.principal = who; else delete l.principal;
      const n = numberValue(r.amount, problems, { label: r.metric.value === "calls" ? "Calls" : "Tokens", min: 0, integer: true, required: true });
      if (n !== undefined && n !== null) l[r.metric.value] = n;
      l.renewal_period = r.period.value;
      return l;
    });
    if (limits.length || original.rate_limits) out.rate_limits = limits;

    const guardrails = clone(original.guardrails || {});
    for (const side of ["input", "output"]) {
      const g = { ...(guardrails[side] || {}) };
      const f = guard[side];
      // safety: sent when on, or when the stored side had it (off stays off, absent stays absent)
      if (f.safety.checked || "safety" in g) g.safety = f.safety.checked;
      if (f.pii.value) g.pii = { ...(g.pii || {}), behavior: f.pii.value }; else delete g.pii;
      const kw = lines(f.keywords.value);
      if (kw.length) g.invalid_keywords = kw; else delete g.invalid_keywords;
      const tp = lines(f.topics.value);
      if (tp.length) g.valid_topics = tp; else delete g.valid_topics;
      if (Object.keys(g).length) guardrails[side] = g; else delete guardrails[side];
    }
    if (Object.keys(guardrails).length) out.guardrails = guardrails; else delete out.guardrails;

    if (cacheOn.input.checked || original.response_cache) {
      const c = { ...(out.response_cache || {}), enabled: cacheOn.input.checked };
      const t = numberValue(ttl, problems, { label: "The TTL", min: 1, max: CACHE_TTL_MAX, integer: true, required: cacheOn.input.checked });
      if (t !== undefined && t !== null) c.ttl_seconds = t;
      c.scope = scope.value;
      const s = numberValue(similarity, problems, { label: "The similarity", above: 0, max: 1 });
      if (s === null) delete c.semantic_similarity; else if (s !== undefined) c.semantic_similarity = s;
      const b = numberValue(maxBytes, problems, { label: "The largest answer", min: 1, max: CACHE_ENTRY_MAX, integer: true, required: cacheOn.input.checked });
      if (b !== undefined && b !== null) c.max_entry_bytes = b;
      c.cache_non_deterministic = nonDet.input.checked;
      out.response_cache = c;
    }
    return out;
  };

  // advanced: the same object as JSON
  const helpId = uid("gw-help");
  const text = h("textarea", { id: "gateway-json-text", rows: 12, spellcheck: "false", "aria-describedby": helpId });
  const jsonErr = h("div", { "aria-live": "assertive" });
  const saveJson = h("button", { type: "button", class: "secondary", id: "save-gateway-json" }, "Save JSON");
  const advanced = h("details", { id: "gateway-json" }, h("summary", {}, "Advanced: JSON"),
    h("p", { class: "muted", id: helpId },
      "The whole ai_gateway the form would send, fields it does not show included (such as inference_table_config.record_raw_request); saving here replaces it as written. Blocks: usage_tracking_config, inference_table_config, rate_limits, guardrails, fallback_config and modelport's response_cache (ttl_seconds, scope, semantic_similarity, max_entry_bytes, cache_non_deterministic)."),
    h("label", { for: text.id }, "AI gateway JSON"), text, h("div", { class: "actions" }, saveJson), jsonErr);
  // filled when drawn and each time it opens: the form's values as they are then
  const fillJson = () => { text.value = JSON.stringify(collect([]), null, 2); };
  advanced.addEventListener("toggle", () => { if (advanced.open) fillJson(); });
  saveJson.addEventListener("click", async () => {
    jsonErr.replaceChildren();
    let body;
    try { body = JSON.parse(text.value || "{}"); } catch (e) { jsonErr.append(errorBox(`Not sent: not valid JSON (${e.message}).`)); return; }
    saveJson.disabled = true;
    try { await save(body); } catch (e) { jsonErr.append(errorBox(e)); } finally { saveJson.disabled = false; }
  });

  const submit = h("button", { type: "submit", id: "save-gateway" }, "Save AI gateway");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errors.clear();
    const problems = [];
    const body = collect(problems);
    if (problems.length) { errors.showProblems(problems); return; }
    submit.disabled = true;
    try { await save(body); } catch (e) { errors.show(e); } finally { submit.disabled = false; }
  });

  form.append(h("h3", { id: "gw-form-title" }, "Edit the AI gateway"),
    usage.wrap, fallback.wrap, limitsSet, ...guardSets, cacheSet, itSet,
    formErr, h("div", { class: "actions" }, submit));
  box.append(form, advanced);
  fillJson();
  return { form, collect, errors };
}

/** PUT the ai_gateway; a toast when saved. */
export async function putGateway(url, body) {
  await api(`${url}/ai-gateway`, { method: "PUT", body });
  toast("AI gateway saved");
}

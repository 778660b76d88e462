// The playground's agent tab and image attachments (issue 22, docs/agents.md).
//   Agents: an endpoint whose task is agent/v1/responses is asked through
//     POST /serving-endpoints/responses (model = the endpoint, stream: true; the SSE's `event:`
//     and `data:` lines are read as they come and each response.output_text.delta is shown);
//     agent/v2/chat (ChatAgent) and agent/v1/chat (ChatModel) endpoints through
//     /serving-endpoints/{name}/invocations with {"messages": [...], "stream": true}.
//   The trace of an answer: the answer's request id (the x-request-id header) is the inference
//     table's databricks_request_id; its `trace` column holds the MLflow trace as JSON, drawn
//     here as a span tree (name, type, duration; inputs and outputs collapsed).
//   Attach image: a file input for the chat tab, whose image goes with the next user message
//     as an image_url part holding a data URL.
// app.js calls these after both modules have run, so the helpers imported from it (a module
// cycle, as rollouts.js) are defined by then.

import { api, enc, errorBox, field, h, rawFetch, select } from "./core.js";

export const AGENT_TASKS = ["agent/v1/responses", "agent/v2/chat", "agent/v1/chat"];
const TASK_TEXT = {
  "agent/v1/responses": "Responses agent: POST /serving-endpoints/responses",
  "agent/v2/chat": "ChatAgent: POST /serving-endpoints/{name}/invocations with messages",
  "agent/v1/chat": "ChatModel: POST /serving-endpoints/{name}/invocations with messages",
};
export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];
/** The largest image the playground attaches (the gateway's own limit per image). */
export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
const TABLES_QUERY = "/api/2.0/modelport/tables/query";
/** How long the trace toggle waits for the answer's inference-table row (rows land within seconds). */
const TRACE_WAIT_MS = 20_000;

export const isAgentTask = (task) => AGENT_TASKS.includes(task);

const sqlString = (s) => "'" + String(s).replace(/'/g, "''") + "'";

function fmtSize(n) {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${n} B`;
}

// ---------- image attachments (chat tab) ----------

function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(new Error(`Could not read ${file.name}.`));
    r.readAsDataURL(file);
  });
}

/** The "Attach image" control: {wrap, content(text), clear()}. content() is the user message's
 * content: the text alone, or [text part, image_url part] when an image is attached. */
export function imageAttach(prefix) {
  const input = h("input", { type: "file", id: `${prefix}-image`, accept: IMAGE_TYPES.join(",") });
  const preview = h("div", { class: "attach-preview", id: `${prefix}-image-preview`, "aria-live": "polite" });
  const err = h("div");
  let image = null; // {url, name, size}
  const clear = () => {
    image = null;
    input.value = "";
    preview.replaceChildren();
  };
  const draw = () => {
    const remove = h("button", { type: "button", class: "secondary", id: `${prefix}-image-remove` }, "Remove image");
    remove.addEventListener("click", () => { clear(); input.focus(); });
    preview.replaceChildren(
      h("img", { src: image.url, alt: `Attached image ${image.name}`, class: "attach-thumb" }),
      h("span", { class: "muted" }, `${image.name} (${fmtSize(image.size)}) goes with the next message.`),
      remove);
  };
  input.addEventListener("change", async () => {
    err.replaceChildren();
    const file = input.files && input.files[0];
    if (!file) { clear(); return; }
    if (!IMAGE_TYPES.includes(file.type)) {
      clear();
      err.append(errorBox(`${file.name} is not a PNG, JPEG, WebP or GIF image.`));
      return;
    }
    if (file.size > MAX_IMAGE_BYTES) {
      clear();
      err.append(errorBox(`${file.name} is ${fmtSize(file.size)}: images may be up to 20 MB.`));
      return;
    }
    try {
      image = { url: await readDataUrl(file), name: file.name, size: file.size };
      draw();
    } catch (e) { clear(); err.append(errorBox(e)); }
  });
  const wrap = h("div", { class: "attach" }, field("Attach image", input, "PNG, JPEG, WebP or GIF, up to 20 MB: sent with the next message as an image_url part.").wrap, preview, err);
  return {
    wrap,
    clear,
    content(text) {
      if (!image) return text;
      return [{ type: "text", text }, { type: "image_url", image_url: { url: image.url } }];
    },
  };
}

/** A user message's content as nodes: its text, and a thumbnail for each image part. */
export function userContent(content) {
  if (!Array.isArray(content)) return [String(content ?? "")];
  return content.map((p) => {
    if (p.type === "text") return p.text;
    if (p.type === "image_url") return h("img", { src: p.image_url.url, alt: "attached image", class: "msg-thumb" });
    return "";
  });
}

// ---------- streams ----------

/** Read a server-sent-event stream: onEvent(type, data) for each event (type "" when the event
 * has no `event:` line; data the parsed JSON, or the text when it is not JSON). Stops at [DONE]. */
export async function readSse(res, onEvent) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let type = "";
  let data = [];
  const dispatch = () => {
    if (!data.length) { type = ""; return false; }
    const text = data.join("\n");
    const t = type;
    type = "";
    data = [];
    if (text === "[DONE]") return true;
    let v = text;
    try { v = JSON.parse(text); } catch { /* plain text */ }
    onEvent(t, v);
    return false;
  };
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    buf += dec.decode(r.value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).replace(/\r$/, "");
      buf = buf.slice(i + 1);
      if (line === "") { if (dispatch()) { reader.cancel().catch(() => {}); return; } continue; }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const key = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (key === "event") type = value;
      else if (key === "data") data.push(value);
    }
  }
  dispatch();
}

const errorOf = (d) => (d && typeof d === "object" && (d.error || d.type === "error" || d.type === "response.failed"))
  ? new Error((d.error && (d.error.message || JSON.stringify(d.error))) || (d.response && d.response.error && d.response.error.message) || d.message || "The agent failed.")
  : null;

/** The text of a Responses output item of type message. */
const itemText = (item) => ((item && item.content) || []).map((c) => c.text || "").join("");

/** The answer of a non-streamed reply, whatever its shape: Responses (output), ChatAgent
 * (messages) or chat completions (choices). */
export function answerOf(body) {
  if (body && Array.isArray(body.output)) {
    return body.output.filter((o) => o.type === "message").map(itemText).join("\n");
  }
  if (body && Array.isArray(body.messages)) {
    return body.messages.filter((m) => m.role === "assistant" && m.content).map((m) => m.content).join("\n");
  }
  if (body && Array.isArray(body.choices)) return body.choices.map((c) => (c.message && c.message.content) || "").join("\n");
  return typeof body === "string" ? body : JSON.stringify(body);
}

/** Tool calls in a non-streamed reply: [{name, args}]. */
function toolCallsOf(body) {
  const out = [];
  for (const o of (body && body.output) || []) if (o.type === "function_call") out.push({ name: o.name, args: o.arguments });
  for (const m of (body && body.messages) || []) for (const c of m.tool_calls || []) out.push({ name: (c.function || {}).name, args: (c.function || {}).arguments });
  return out;
}

/** Ask the agent endpoint `ep` with the conversation `hist`; `ui` receives the text as it comes
 * (ui.text(all so far)) and the tool calls (ui.tool(name, args)). Returns {text, requestId}. */
async function askAgent(ep, hist, ui) {
  const responses = ep.task === "agent/v1/responses";
  const url = responses ? "/serving-endpoints/responses" : `/serving-endpoints/${enc(ep.name)}/invocations`;
  const body = responses ? { model: ep.name, input: hist, stream: true } : { messages: hist, stream: true };
  const res = await rawFetch(url, { method: "POST", body, headers: { Accept: "text/event-stream" } });
  const requestId = res.headers.get("x-request-id") || res.headers.get("databricks-request-id") || "";
  if (!(res.headers.get("content-type") || "").includes("text/event-stream")) {
    const reply = await res.json();
    for (const t of toolCallsOf(reply)) ui.tool(t.name, t.args);
    const text = answerOf(reply);
    ui.text(text);
    return { text, requestId };
  }
  let text = "";
  const delta = new Set(); // Responses items whose text came as deltas
  let lastChatId = null;
  const add = (piece) => { if (piece) { text += piece; ui.text(text); } };
  await readSse(res, (type, d) => {
    const failed = errorOf(d);
    if (failed) throw failed;
    if (!d || typeof d !== "object") return;
    const kind = d.type || type;
    if (kind === "response.output_text.delta") {
      delta.add(d.item_id);
      add(d.delta);
    } else if (kind === "response.output_item.done" && d.item) {
      if (d.item.type === "function_call") ui.tool(d.item.name, d.item.arguments);
      else if (d.item.type === "message" && !delta.has(d.item.id)) add((text ? "\n" : "") + itemText(d.item));
    } else if (d.delta && typeof d.delta === "object" && !Array.isArray(d.delta)) {
      // a ChatAgentChunk: each message id is one message, its content may come in pieces
      const m = d.delta;
      for (const c of m.tool_calls || []) ui.tool((c.function || {}).name, (c.function || {}).arguments);
      if (m.role && m.role !== "assistant") return;
      if (m.content) {
        if (lastChatId !== null && m.id && m.id !== lastChatId && text) add("\n");
        if (m.id) lastChatId = m.id;
        add(m.content);
      }
    } else if (Array.isArray(d.choices)) {
      for (const c of d.choices) add((c.delta && c.delta.content) || "");
    }
  });
  return { text, requestId };
}

// ---------- traces ----------

function tableOf(ep) {
  const c = ((ep.ai_gateway || {}).inference_table_config) || ((ep.config || {}).auto_capture_config);
  if (!c || !c.enabled) return null;
  return `${c.catalog_name}.${c.schema_name}.${c.table_name_prefix}_payload`;
}

/** The `trace` column of the answer `requestId`, waiting for its row: {found, trace}. */
async function traceRow(ep, requestId) {
  const table = tableOf(ep);
  const sql = `SELECT trace FROM ${table} WHERE databricks_request_id = ${sqlString(requestId)} LIMIT 1`;
  const until = Date.now() + TRACE_WAIT_MS;
  for (;;) {
    const res = await api(TABLES_QUERY, { method: "POST", body: { sql } });
    const rows = res.rows || [];
    if (rows.length && rows[0][0] !== null && rows[0][0] !== undefined) return { found: true, trace: rows[0][0] };
    if (Date.now() > until) return { found: rows.length > 0, trace: null };
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function parseJson(v) {
  if (typeof v !== "string") return v;
  try { return JSON.parse(v); } catch { return v; }
}

/** An attribute of a span as MLflow stores it (each value JSON text). */
const attr = (span, key) => parseJson((span.attributes || {})[key]);

function durationMs(span) {
  const s = Number(span.start_time_unix_nano ?? span.start_time_ns ?? 0);
  const e = Number(span.end_time_unix_nano ?? span.end_time_ns ?? 0);
  return e && s ? (e - s) / 1e6 : null;
}

const fmtMs = (v) => (v === null ? "–" : v >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(1)} ms`);

function prettyValue(v) {
  if (v === undefined) return "–";
  if (typeof v === "string") return v;
  return JSON.stringify(v, null, 2);
}

function spanNode(span, children) {
  const type = attr(span, "mlflow.spanType");
  const status = ((span.status || {}).code || "").replace("STATUS_CODE_", "");
  const ins = attr(span, "mlflow.spanInputs");
  const outs = attr(span, "mlflow.spanOutputs");
  const li = h("li", { class: "span", "data-span": span.name },
    h("div", { class: "span-head" },
      h("strong", { class: "span-name" }, span.name),
      type && type !== "UNKNOWN" ? h("span", { class: "badge state-notready span-type" }, String(type)) : null,
      h("span", { class: "muted span-duration" }, fmtMs(durationMs(span))),
      status === "ERROR" ? h("span", { class: "badge state-failed" }, "error") : null),
    h("details", { class: "span-io" }, h("summary", {}, "Inputs"), h("pre", { tabindex: "0", class: "span-inputs" }, prettyValue(ins))),
    h("details", { class: "span-io" }, h("summary", {}, "Outputs"), h("pre", { tabindex: "0", class: "span-outputs" }, prettyValue(outs))));
  if (children.length) li.append(h("ul", { class: "span-tree" }, children));
  return li;
}

/** The span tree of an MLflow trace (Trace.to_json(): {info, data: {spans}}), or a notice. */
export function traceView(raw) {
  const trace = parseJson(raw);
  if (trace && trace.truncated === true) {
    // the recorder's stub of a trace over 1 MiB (gateway/recording.py); MLflow holds it whole
    return h("p", { class: "notice trace-cut" }, `This trace was ${fmtSize(Number(trace.size_bytes) || 0)} (${trace.spans} spans): ` +
      `over the inference table's 1 MiB, so the table keeps only a note of it. The whole trace is in MLflow${trace.trace_id ? ` as ${trace.trace_id}` : ""} (mlflow.search_traces()).`);
  }
  const spans = trace && typeof trace === "object" ? ((trace.data || {}).spans || trace.spans) : null;
  if (!Array.isArray(spans) || !spans.length) {
    return h("div", {}, h("p", { class: "notice" }, "The trace could not be read as an MLflow trace. Its text:"),
      h("pre", { tabindex: "0" }, typeof raw === "string" ? raw.slice(0, 20000) : JSON.stringify(raw, null, 2)));
  }
  const ids = new Set(spans.map((s) => s.span_id));
  const kids = new Map();
  const roots = [];
  const ordered = [...spans].sort((a, b) => Number(a.start_time_unix_nano || 0) - Number(b.start_time_unix_nano || 0));
  for (const s of ordered) {
    if (s.parent_span_id && ids.has(s.parent_span_id) && s.parent_span_id !== s.span_id) {
      if (!kids.has(s.parent_span_id)) kids.set(s.parent_span_id, []);
      kids.get(s.parent_span_id).push(s);
    } else roots.push(s);
  }
  const build = (s, depth) => spanNode(s, depth > 50 ? [] : (kids.get(s.span_id) || []).map((c) => build(c, depth + 1)));
  const info = trace.info || {};
  const facts = [
    info.trace_id || info.request_id ? `trace ${info.trace_id || info.request_id}` : null,
    `${spans.length} span${spans.length === 1 ? "" : "s"}`,
    info.execution_duration_ms !== undefined ? `${info.execution_duration_ms} ms` : null,
    info.state || info.status || null,
  ].filter(Boolean);
  return h("div", {}, h("p", { class: "muted" }, facts.join(" · ")), h("ul", { class: "span-tree span-root" }, roots.map((s) => build(s, 0))));
}

/** The "Trace" toggle under an answer: loads the trace the first time it opens. */
function traceToggle(ep, requestId, idx) {
  const box = h("div", { class: "trace", id: `ag-trace-${idx}`, hidden: true, "aria-live": "polite" });
  const btn = h("button", { type: "button", class: "secondary trace-toggle", "aria-expanded": "false", "aria-controls": box.id }, "Trace");
  let loaded = false;
  btn.addEventListener("click", async () => {
    const open = btn.getAttribute("aria-expanded") !== "true";
    btn.setAttribute("aria-expanded", String(open));
    box.hidden = !open;
    if (!open || loaded) return;
    loaded = true;
    if (!requestId) { box.replaceChildren(h("p", { class: "notice" }, "The server sent no request id for this answer.")); return; }
    if (!tableOf(ep)) {
      box.replaceChildren(h("p", { class: "notice" }, `${ep.name} has no inference table: traces are recorded in it (enable inference_table_config in its AI gateway) and in MLflow (mlflow.search_traces()).`));
      return;
    }
    box.replaceChildren(h("p", { class: "muted" }, "Reading the trace from the inference table…"));
    try {
      const { found, trace } = await traceRow(ep, requestId);
      box.dataset.loaded = "true";
      if (trace === null) {
        box.replaceChildren(h("p", { class: "notice" }, found ? `Request ${requestId} has no trace.` : `Request ${requestId} is not in ${tableOf(ep)} yet: close and open the trace again in a moment.`));
        if (!found) loaded = false;
        return;
      }
      box.replaceChildren(h("h3", {}, `Trace of request ${requestId}`), traceView(trace));
    } catch (e) {
      loaded = false;
      box.replaceChildren(errorBox(e));
    }
  });
  return [btn, box];
}

// ---------- the agents tab ----------

let answerSeq = 0;

/** The playground's "Agents" panel for the endpoints `agentEps` (listing objects with `task`). */
export function agentPlayground(panel, agentEps) {
  const sel = select([["", "Choose an agent endpoint"], ...agentEps.map((e) => e.name)], agentEps[0] ? agentEps[0].name : "");
  sel.id = "ag-endpoint";
  const about = h("p", { class: "muted", id: "ag-about" });
  const prompt = h("textarea", { id: "ag-prompt", rows: 3, class: "prompt", placeholder: "Ask the agent… (Ctrl+Enter sends)" });
  const send = h("button", { type: "submit", id: "ag-send" }, "Send");
  const clear = h("button", { type: "button", class: "secondary", id: "ag-clear" }, "New conversation");
  const err = h("div");
  const log = h("div", { class: "log" });
  const section = h("section", { class: "answer agent-log", id: "ag-answers", "aria-label": "Conversation with the agent" }, log);
  const form = h("form", { class: "card", id: "ag-form" }, field("Agent endpoint", sel).wrap, about, field("Message", prompt).wrap, err,
    h("div", { class: "actions" }, send, clear));
  if (!agentEps.length) panel.append(h("p", { class: "notice" }, "No agent endpoints yet: serve an MLflow ResponsesAgent, ChatAgent or ChatModel (docs/agents.md)."));
  panel.append(form, section);
  let hist = [];
  const epOf = () => agentEps.find((e) => e.name === sel.value);
  const describe = () => {
    const ep = epOf();
    about.textContent = ep ? `${TASK_TEXT[ep.task] || ep.task}${tableOf(ep) ? ` · traces in ${tableOf(ep)}` : " · no inference table: answers have no trace here"}` : "";
  };
  const reset = () => { hist = []; log.replaceChildren(); };
  sel.addEventListener("change", () => { describe(); reset(); });
  clear.addEventListener("click", reset);
  describe();
  prompt.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); } });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const ep = epOf();
    if (!ep) { err.append(errorBox("Choose an agent endpoint.")); return; }
    const text = prompt.value.trim();
    if (!text) { err.append(errorBox("Type a message.")); return; }
    prompt.value = "";
    send.disabled = true;
    hist.push({ role: "user", content: text });
    log.append(h("div", { class: "msg user" }, h("strong", {}, "You: "), text));
    const out = h("span", { class: "content" });
    const tools = h("ul", { class: "tool-calls muted" });
    const stats = h("div", { class: "stats" }, "waiting…");
    const msg = h("div", { class: "msg assistant", "aria-live": "polite" }, h("strong", {}, "Agent: "), out, tools, stats);
    log.append(msg);
    const t0 = performance.now();
    let first = null;
    const ui = {
      text: (all) => { if (first === null) first = performance.now() - t0; out.textContent = all; },
      tool: (name, args) => tools.append(h("li", { class: "tool-call" }, `Called ${name || "a tool"}`, args ? h("code", {}, ` ${typeof args === "string" ? args : JSON.stringify(args)}`) : "")),
    };
    try {
      const { text: answer, requestId } = await askAgent(ep, hist, ui);
      hist.push({ role: "assistant", content: answer });
      const total = performance.now() - t0;
      msg.dataset.done = "true";
      msg.dataset.requestId = requestId;
      const [btn, box] = traceToggle(ep, requestId, ++answerSeq);
      stats.replaceChildren(`${(total / 1000).toFixed(2)} s total · first text ${first === null ? "–" : (first / 1000).toFixed(2) + " s"}`,
        requestId ? h("span", {}, " · request ", h("code", {}, requestId)) : "", " ", btn);
      msg.append(box);
    } catch (e) {
      hist.pop();
      stats.replaceChildren(errorBox(e));
      msg.dataset.done = "error";
    }
    send.disabled = false;
    prompt.focus();
  });
}

// The AI playground (#/playground): chat with up to three endpoints side by side (with tools),
// completions and embeddings (playground_modes.js), agents (agents.js) and custom models through
// a form built from their OpenAPI document. "View code" (playground_code.js) shows the current
// request as code; the mode, the parameters and the chat conversations are kept in this browser
// (playground_store.js) until Log out.

import { agentPlayground, imageAttach, isAgentTask, userContent } from "./agents.js";
import { api, arrowTabs, enc, EP, errorBox, field, h, rawFetch, select, taskOf, ui } from "./core.js";
import { formColumns, invocationRequest, recordsOf } from "./endpoint_cards.js";
import { codePanel } from "./playground_code.js";
import { completionsPlayground, embeddingsPlayground } from "./playground_modes.js";
import { keep, keepConversation, recall, recallConversation } from "./playground_store.js";
import { mergeToolCalls, toolAnswerForm, toolCallsView, toolsEditor } from "./playground_tools.js";

// ---------- playground ----------

export async function playgroundPage() {
  const main = ui.view;
  document.title = "Playground · modelport";
  const eps = ((await api(EP)).endpoints || []).sort((a, b) => a.name.localeCompare(b.name));
  const ofTask = (t) => eps.filter((e) => taskOf(e) === t);
  const customEps = eps.filter((e) => !taskOf(e));
  const agentEps = eps.filter((e) => isAgentTask(taskOf(e)));
  // Chat and Custom models first, Agents last: the arrow keys go round the tabs in this order
  const modes = [["chat", "Chat"], ["custom", "Custom models"], ["completions", "Completions"], ["embeddings", "Embeddings"], ["agents", "Agents"]];
  const tabs = modes.map(([m, label], i) => {
    const t = h("button", { type: "button", role: "tab", id: `tab-${m}`, "aria-selected": String(i === 0), "aria-controls": `panel-${m}`, "data-mode": m }, label);
    const p = h("div", { role: "tabpanel", id: `panel-${m}`, "aria-labelledby": `tab-${m}`, hidden: i !== 0 });
    return [t, p];
  });
  const show = (tab) => { for (const [t, p] of tabs) { t.setAttribute("aria-selected", String(t === tab)); p.hidden = t !== tab; } };
  for (const [t] of tabs) t.addEventListener("click", () => { show(t); keep("mode", t.dataset.mode); });
  arrowTabs(tabs.map(([t]) => t));
  const panel = (m) => tabs.find(([t]) => t.dataset.mode === m)[1];
  main.append(h("h1", {}, "AI playground"), h("div", { class: "tabs", role: "tablist", "aria-label": "Playground mode" }, tabs.map(([t]) => t)), ...tabs.map(([, p]) => p));
  chatPlayground(panel("chat"), ofTask("llm/v1/chat"));
  agentPlayground(panel("agents"), agentEps);
  customPlayground(panel("custom"), customEps);
  completionsPlayground(panel("completions"), ofTask("llm/v1/completions"));
  embeddingsPlayground(panel("embeddings"), ofTask("llm/v1/embeddings"));
  const mode = recall("mode");
  const kept = tabs.find(([t]) => t.dataset.mode === mode);
  if (kept) show(kept[0]);
}

/** A conversation is kept per endpoint selection: the names in the order of the selects. */
const selectionKey = (names) => names.join("\n");

function chatPlayground(panel, chatEps) {
  const opts = chatEps.map((e) => e.name);
  const sels = [0, 1, 2].map((i) => {
    const s = select([["", i === 0 ? "Choose an endpoint" : "None"], ...opts], i === 0 ? opts[0] || "" : "");
    s.id = `pg-endpoint-${i}`;
    return s;
  });
  const system = h("textarea", { id: "pg-system", rows: 2, class: "prompt", placeholder: "You are a helpful assistant." });
  const temp = h("input", { type: "number", id: "pg-temperature", min: 0, max: 2, step: 0.1, value: 0.7 });
  const maxTok = h("input", { type: "number", id: "pg-max-tokens", min: 1, max: 4096, step: 1, value: 128 });
  const stop = h("input", { type: "text", id: "pg-stop", placeholder: "comma-separated" });
  const prompt = h("textarea", { id: "pg-prompt", rows: 3, class: "prompt", placeholder: "Ask something… (Ctrl+Enter sends)" });
  const send = h("button", { type: "submit", id: "pg-send" }, "Send");
  const clear = h("button", { type: "button", class: "secondary", id: "pg-clear" }, "New conversation");
  const columns = h("div", { class: "compare", id: "pg-answers" });
  const err = h("div");
  const attach = imageAttach("pg");
  const tools = toolsEditor("pg", () => refreshCode());
  const toolsBox = h("details", { class: "tools-box", id: "pg-tools-box" }, h("summary", {}, "Tools (function calling)"), tools.wrap);
  const code = codePanel("pg", () => requests());
  const refreshCode = () => code.refresh();
  const form = h("form", { class: "card", id: "pg-form" },
    h("div", { class: "row" }, field("Endpoint", sels[0]).wrap, field("Compare with", sels[1]).wrap, field("And with", sels[2]).wrap),
    field("System prompt", system).wrap,
    h("div", { class: "row" }, field("Temperature", temp).wrap, field("Max tokens", maxTok).wrap, field("Stop sequences", stop).wrap),
    toolsBox,
    field("Message", prompt).wrap, attach.wrap, err,
    h("div", { class: "actions" }, send, clear, code.button));
  if (!chatEps.length) panel.append(h("p", { class: "notice" }, "No chat endpoints yet: create one (a foundation model or an external chat model)."));
  panel.append(form, code.panel, columns);

  // ----- what this browser keeps: the settings, and one conversation per selection -----
  const settings = recall("chat") || {};
  if (Array.isArray(settings.endpoints)) sels.forEach((s, i) => { const v = settings.endpoints[i] ?? ""; if (v === "" || opts.includes(v)) s.value = v; });
  for (const [k, inp] of [["system", system], ["temperature", temp], ["max_tokens", maxTok], ["stop", stop]]) if (typeof settings[k] === "string") inp.value = settings[k];
  tools.restore(settings.tools);
  if (settings.tools && settings.tools.tools && settings.tools.tools.length) toolsBox.open = true;
  const saveSettings = () => keep("chat", {
    endpoints: sels.map((s) => s.value), system: system.value, temperature: temp.value, max_tokens: maxTok.value, stop: stop.value, tools: tools.state(),
  });
  const selected = () => [...new Set(sels.map((s) => s.value).filter(Boolean))];
  let key = selectionKey(selected());
  let histories = {}; // endpoint name → messages (without the system prompt)

  const colFor = new Map();
  const logOf = (n) => colFor.get(n).querySelector(".log");
  const ensureColumns = (names) => {
    for (const [n, c] of colFor) if (!names.includes(n)) { c.remove(); colFor.delete(n); }
    for (const n of names) {
      if (!colFor.has(n)) {
        const c = h("section", { class: "answer", "data-endpoint": n, "aria-label": `Answers from ${n}` }, h("h2", {}, n), h("div", { class: "log" }));
        colFor.set(n, c);
      }
      columns.append(colFor.get(n));
    }
  };
  const persist = () => keepConversation(key, histories);

  /** Draw a kept conversation: its messages, and the tool-answer form of a last, unanswered tool call. */
  const drawConversation = () => {
    const names = Object.keys(histories).filter((n) => histories[n].length);
    ensureColumns(names.length ? selected() : []);
    for (const n of colFor.keys()) {
      const log = logOf(n);
      log.replaceChildren();
      const hist = histories[n] || [];
      for (const m of hist) log.append(messageView(m, hist));
      const last = hist[hist.length - 1];
      if (last && last.role === "assistant" && last.tool_calls && last.tool_calls.length) log.append(answerTools(n, last.tool_calls));
    }
  };
  const load = () => {
    key = selectionKey(selected());
    histories = structuredClone(recallConversation(key));
    for (const n of selected()) if (!histories[n]) histories[n] = [];
    drawConversation();
  };

  const readParams = () => {
    const params = { temperature: Number(temp.value), max_tokens: Number(maxTok.value) };
    const stops = stop.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (stops.length) params.stop = stops;
    return { ...params, ...tools.value() };
  };
  const withSystem = (msgs) => [...(system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []), ...msgs];
  /** The request of each chosen endpoint as it would go now: its conversation, and the typed message. */
  const requests = () => {
    const names = selected();
    if (!names.length) throw new Error("Choose an endpoint.");
    const params = readParams();
    const typed = prompt.value.trim() ? [{ role: "user", content: prompt.value.trim() }] : [];
    return names.map((n) => {
      const messages = withSystem([...(histories[n] || []), ...typed]);
      if (!messages.some((m) => m.role !== "system")) throw new Error("Type a message: the code shows the request that sending it makes.");
      return { endpoint: n, task: "llm/v1/chat", body: { messages, ...params } };
    });
  };

  /** One turn of endpoint n: stream its answer to the conversation so far; `added` messages
   * (the user's, or tool results) are taken back when the query fails. */
  const turn = async (n, added, params) => {
    const hist = histories[n];
    const r = await streamChat(n, withSystem(hist), params, logOf(n));
    if (r === null) hist.splice(hist.length - added, added);
    else {
      const msg = { role: "assistant", content: r.calls.length ? r.text || null : r.text };
      if (r.calls.length) {
        msg.tool_calls = r.calls;
        r.view.append(toolCallsView(r.calls));
        logOf(n).append(answerTools(n, r.calls));
      }
      hist.push(msg);
    }
    persist();
    refreshCode();
  };
  function answerTools(n, calls) {
    return toolAnswerForm("pg", calls, (toolMsgs) => {
      err.replaceChildren();
      let params;
      try { params = readParams(); } catch (e) {
        err.append(errorBox(e));
        if (e.field) { toolsBox.open = true; e.field.focus(); }
        return false;
      }
      const hist = histories[n];
      for (const m of toolMsgs) { hist.push(m); logOf(n).append(messageView(m, hist)); }
      persist();
      turn(n, toolMsgs.length, params);
      return true;
    });
  }

  for (const s of sels) s.addEventListener("change", load);
  form.addEventListener("change", saveSettings);
  form.addEventListener("input", refreshCode);
  form.addEventListener("change", refreshCode);
  clear.addEventListener("click", () => {
    for (const n of Object.keys(histories)) histories[n] = [];
    persist();
    for (const c of colFor.values()) c.querySelector(".log").replaceChildren();
    refreshCode();
  });
  prompt.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); } });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const names = selected();
    if (!names.length) { err.append(errorBox("Choose an endpoint.")); return; }
    const text = prompt.value.trim();
    if (!text) { err.append(errorBox("Type a message.")); return; }
    let params;
    try { params = readParams(); } catch (e) {
      err.append(errorBox(e));
      if (e.field) { toolsBox.open = true; e.field.focus(); }
      return;
    }
    saveSettings();
    ensureColumns(names);
    const content = attach.content(text);
    attach.clear();
    prompt.value = "";
    send.disabled = true;
    await Promise.all(names.map((n) => {
      const hist = histories[n] || (histories[n] = []);
      const m = { role: "user", content };
      hist.push(m);
      logOf(n).append(messageView(m, hist));
      return turn(n, 1, params);
    }));
    send.disabled = false;
    prompt.focus();
  });
  load();
}

/** A message of a conversation as the log shows it. */
function messageView(m, hist) {
  if (m.role === "user") return h("div", { class: "msg user" }, h("strong", {}, "You: "), userContent(m.content));
  if (m.role === "tool") {
    const call = hist.flatMap((x) => x.tool_calls || []).find((c) => c.id === m.tool_call_id);
    return h("div", { class: "msg tool" }, h("strong", {}, `Tool result${call ? ` (${call.function.name})` : ""}: `), String(m.content));
  }
  const view = h("div", { class: "msg assistant", "data-restored": "true" }, h("strong", {}, "Assistant: "), h("span", { class: "content" }, m.content || ""));
  if (m.tool_calls && m.tool_calls.length) view.append(toolCallsView(m.tool_calls));
  return view;
}

/** POST /serving-endpoints/chat/completions with stream: true, read the SSE with a ReadableStream.
 * Returns {text, calls, view} (the tool calls merged from their deltas), or null when it failed. */
async function streamChat(name, messages, params, log) {
  const out = h("span", { class: "content" });
  const stats = h("div", { class: "stats" }, "waiting…");
  const msg = h("div", { class: "msg assistant", "aria-live": "polite" }, h("strong", {}, "Assistant: "), out, stats);
  log.append(msg);
  const t0 = performance.now();
  let first = null;
  let usage = null;
  let text = "";
  const calls = [];
  try {
    const res = await rawFetch("/serving-endpoints/chat/completions", { method: "POST", body: { model: name, messages, stream: true, stream_options: { include_usage: true }, ...params } });
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    let done = false;
    while (!done) {
      const r = await reader.read();
      if (r.done) break;
      buf += dec.decode(r.value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") { done = true; break; }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
        if (chunk.usage) usage = chunk.usage;
        for (const c of chunk.choices || []) {
          const delta = c.delta || {};
          if (delta.tool_calls) {
            if (first === null) first = performance.now() - t0;
            mergeToolCalls(calls, delta.tool_calls);
          }
          const d = delta.content || "";
          if (d) {
            if (first === null) first = performance.now() - t0;
            text += d;
            out.textContent = text;
          }
        }
      }
    }
    const total = performance.now() - t0;
    stats.textContent = `${(total / 1000).toFixed(2)} s total · first token ${first === null ? "–" : (first / 1000).toFixed(2) + " s"} · ` +
      (usage ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens` : "no usage reported");
    msg.dataset.done = "true";
    msg.dataset.latencyMs = String(Math.round(total));
    if (usage) msg.dataset.completionTokens = String(usage.completion_tokens);
    const filled = calls.filter(Boolean);
    if (filled.length) msg.dataset.toolCalls = String(filled.length);
    return { text, calls: filled, view: msg };
  } catch (e) {
    stats.replaceChildren(errorBox(e));
    msg.dataset.done = "error";
    return null;
  }
}

// ----- custom models: a form from the endpoint's OpenAPI document -----

/** Read the endpoint's OpenAPI document (the server resolved the model, whatever form its
 * entity name takes, and read its signature and input example) and build the form from it. */
function customPlayground(panel, customEps) {
  const sel = select([["", "Choose an endpoint"], ...customEps.map((e) => e.name)], customEps[0] ? customEps[0].name : "");
  sel.id = "pg-custom-endpoint";
  const formBox = h("div", { "aria-live": "polite" });
  const result = h("div", { id: "pg-predictions", "aria-live": "polite" });
  panel.append(h("section", { class: "card" }, field("Custom-model endpoint", sel).wrap, formBox), result);
  let loading = 0;
  const load = async () => {
    const mine = ++loading; // a slow answer for an endpoint chosen before must not draw over this one
    formBox.replaceChildren();
    result.replaceChildren();
    const name = sel.value;
    if (!name) return;
    formBox.append(h("p", { class: "muted" }, "Loading the model's inputs…"));
    let req;
    try { req = invocationRequest(await api(`${EP}/${enc(name)}/openapi`), name); } catch (e) {
      if (mine === loading) formBox.replaceChildren(errorBox(e));
      return;
    }
    if (mine === loading) formBox.replaceChildren(customForm(name, req, result));
  };
  sel.addEventListener("change", load);
  load();
}

function customForm(name, req, result) {
  const form = h("form", { id: "pg-custom-form" });
  if (req.about) form.append(h("p", { class: "muted", id: "pg-custom-about" }, req.about));
  const columns = formColumns(req.schema, req.example);
  const first = (recordsOf(req.example) || [])[0] || {};
  let readBody;
  if (columns) {
    const inputs = columns.map((c) => {
      const v = first[c.name];
      const attrs = { id: `col-${c.name}`, "data-column": c.name };
      let inp;
      if (c.kind === "boolean") inp = h("input", { type: "checkbox", ...attrs, checked: v === true });
      else if (c.kind === "number") inp = h("input", { type: "number", step: c.integer ? 1 : "any", required: c.required, ...attrs, value: typeof v === "number" ? String(v) : undefined });
      else inp = h("input", { type: "text", required: c.required, ...attrs, value: v === undefined || v === null ? undefined : c.kind === "json" ? JSON.stringify(v) : String(v) });
      return [c, inp];
    });
    const source = req.schema.properties && req.schema.properties.dataframe_records && (req.schema.properties.dataframe_records.items || {}).properties
      ? (req.example ? "Columns of the model signature, filled in with its input example." : "Columns of the model signature.")
      : "Columns of the model's input example.";
    form.append(h("p", { class: "muted" }, source),
      h("div", { class: "row" }, inputs.map(([c, inp]) => field(`${c.name} (${c.label}${c.required ? "" : ", optional"})`, inp).wrap)));
    readBody = () => {
      const rec = {};
      for (const [c, inp] of inputs) {
        if (c.kind === "boolean") rec[c.name] = inp.checked;
        else if (inp.value === "") { if (c.required) throw new Error(`Fill in ${c.name}.`); }
        else if (c.kind === "number") rec[c.name] = Number(inp.value);
        else if (c.kind === "json") {
          try { rec[c.name] = JSON.parse(inp.value); } catch { throw new Error(`${c.name} must be JSON.`); }
        } else rec[c.name] = inp.value;
      }
      const body = { dataframe_records: [rec] };
      if (req.example && req.example.params) body.params = req.example.params;
      return body;
    };
  } else {
    const ta = h("textarea", { id: "pg-custom-json", rows: 8, spellcheck: "false" });
    if (req.example) ta.value = JSON.stringify(req.example, null, 2);
    form.append(h("p", { class: "muted" }, req.example
      ? "The model's input example as a request body: edit it, then predict."
      : "There is no signature or input example to build a form from: type the request body (dataframe_records, dataframe_split, instances or inputs)."),
    field("Request body (JSON)", ta).wrap);
    readBody = () => {
      if (!ta.value.trim()) throw new Error("Type the request body first.");
      try { return JSON.parse(ta.value); } catch (e) { throw new Error(`The request body is not valid JSON (${e.message}).`); }
    };
  }
  form.append(h("div", { class: "actions" }, h("button", { type: "submit", id: "pg-predict" }, "Predict")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    result.replaceChildren();
    try {
      const body = readBody();
      const t0 = performance.now();
      const res = await api(`/serving-endpoints/${enc(name)}/invocations`, { method: "POST", body });
      const ms = performance.now() - t0;
      result.append(h("section", { class: "card" }, h("h2", {}, "Predictions"), h("p", { class: "muted" }, `${ms.toFixed(0)} ms`), predictionsTable(recordsOf(body) || [], res.predictions)));
    } catch (e) { result.append(errorBox(e)); }
  });
  return form;
}

function predictionsTable(records, preds) {
  const rows = Array.isArray(preds) ? preds : preds && typeof preds === "object" ? Object.keys(preds).length && Array.isArray(Object.values(preds)[0]) ? Object.values(preds)[0].map((_, i) => Object.fromEntries(Object.entries(preds).map(([k, v]) => [k, v[i]]))) : [preds] : [preds];
  const inCols = records.length ? Object.keys(records[0]) : [];
  const outCols = rows.length && rows[0] && typeof rows[0] === "object" && !Array.isArray(rows[0]) ? Object.keys(rows[0]) : ["prediction"];
  const cell = (v) => (typeof v === "object" ? JSON.stringify(v) : String(v));
  return h("div", { class: "table-wrap" }, h("table", { id: "predictions-table" },
    h("thead", {}, h("tr", {}, inCols.map((c) => h("th", { scope: "col" }, c)), outCols.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r, i) => h("tr", {}, inCols.map((c) => h("td", {}, cell((records[i] || {})[c] ?? ""))),
      outCols.map((c) => h("td", { class: "prediction" }, cell(outCols[0] === "prediction" && outCols.length === 1 ? r : r[c]))))))));
}

// The AI playground (#/playground): chat with up to three endpoints side by side, agents
// (agents.js) and custom models through a form built from their OpenAPI document.

import { agentPlayground, imageAttach, isAgentTask, userContent } from "./agents.js";
import { api, arrowTabs, enc, EP, errorBox, field, h, rawFetch, select, taskOf, ui } from "./core.js";
import { formColumns, invocationRequest, recordsOf } from "./endpoint_cards.js";

// ---------- playground ----------

export async function playgroundPage() {
  const main = ui.view;
  document.title = "Playground · modelport";
  const eps = ((await api(EP)).endpoints || []).sort((a, b) => a.name.localeCompare(b.name));
  const chatEps = eps.filter((e) => taskOf(e) === "llm/v1/chat");
  const customEps = eps.filter((e) => !taskOf(e));
  const agentEps = eps.filter((e) => isAgentTask(taskOf(e)));
  const tabChat = h("button", { type: "button", role: "tab", id: "tab-chat", "aria-selected": "true" }, "Chat");
  const tabAgents = h("button", { type: "button", role: "tab", id: "tab-agents", "aria-selected": "false" }, "Agents");
  const tabCustom = h("button", { type: "button", role: "tab", id: "tab-custom", "aria-selected": "false" }, "Custom models");
  const chatPanel = h("div", { role: "tabpanel", "aria-labelledby": "tab-chat" });
  const agentPanel = h("div", { role: "tabpanel", "aria-labelledby": "tab-agents", hidden: true });
  const customPanel = h("div", { role: "tabpanel", "aria-labelledby": "tab-custom", hidden: true });
  const tabs = [[tabChat, chatPanel], [tabCustom, customPanel], [tabAgents, agentPanel]];
  const show = (tab) => { for (const [t, p] of tabs) { t.setAttribute("aria-selected", String(t === tab)); p.hidden = t !== tab; } };
  for (const [t] of tabs) t.addEventListener("click", () => show(t));
  arrowTabs(tabs.map(([t]) => t));
  main.append(h("h1", {}, "AI playground"), h("div", { class: "tabs", role: "tablist", "aria-label": "Playground mode" }, tabChat, tabCustom, tabAgents), chatPanel, customPanel, agentPanel);
  chatPlayground(chatPanel, chatEps);
  agentPlayground(agentPanel, agentEps);
  customPlayground(customPanel, customEps);
}

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
  const histories = new Map();
  const form = h("form", { class: "card", id: "pg-form" },
    h("div", { class: "row" }, field("Endpoint", sels[0]).wrap, field("Compare with", sels[1]).wrap, field("And with", sels[2]).wrap),
    field("System prompt", system).wrap,
    h("div", { class: "row" }, field("Temperature", temp).wrap, field("Max tokens", maxTok).wrap, field("Stop sequences", stop).wrap),
    field("Message", prompt).wrap, attach.wrap, err,
    h("div", { class: "actions" }, send, clear));
  if (!chatEps.length) panel.append(h("p", { class: "notice" }, "No chat endpoints yet: create one (a foundation model or an external chat model)."));
  panel.append(form, columns);

  const colFor = new Map();
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
  clear.addEventListener("click", () => { histories.clear(); for (const c of colFor.values()) c.querySelector(".log").replaceChildren(); });
  prompt.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); } });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const names = [...new Set(sels.map((s) => s.value).filter(Boolean))];
    if (!names.length) { err.append(errorBox("Choose an endpoint.")); return; }
    const text = prompt.value.trim();
    if (!text) { err.append(errorBox("Type a message.")); return; }
    ensureColumns(names);
    const content = attach.content(text);
    attach.clear();
    prompt.value = "";
    send.disabled = true;
    const params = { temperature: Number(temp.value), max_tokens: Number(maxTok.value) };
    const stops = stop.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (stops.length) params.stop = stops;
    await Promise.all(names.map((n) => {
      const hist = histories.get(n) || [];
      hist.push({ role: "user", content });
      histories.set(n, hist);
      const messages = [...(system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []), ...hist];
      return streamChat(n, messages, params, colFor.get(n).querySelector(".log")).then((answer) => { if (answer !== null) hist.push({ role: "assistant", content: answer }); else hist.pop(); });
    }));
    send.disabled = false;
    prompt.focus();
  });
}

/** POST /serving-endpoints/chat/completions with stream: true, read the SSE with a ReadableStream. */
async function streamChat(name, messages, params, log) {
  log.append(h("div", { class: "msg user" }, h("strong", {}, "You: "), userContent(messages[messages.length - 1].content)));
  const out = h("span", { class: "content" });
  const stats = h("div", { class: "stats" }, "waiting…");
  const msg = h("div", { class: "msg assistant", "aria-live": "polite" }, h("strong", {}, "Assistant: "), out, stats);
  log.append(msg);
  const t0 = performance.now();
  let first = null;
  let usage = null;
  let text = "";
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
          const d = (c.delta && c.delta.content) || "";
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
    return text;
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

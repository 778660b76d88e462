// Tools (functions) for the playground's chat: the user defines each one (name, description,
// JSON-schema parameters, checked as JSON as it is typed, the error beside the field), they are
// sent as OpenAI's `tools` with `tool_choice`; the tool calls an answer makes are shown (name and
// arguments) and the user answers each with a tool message to go on.

import { field, h, pretty, select } from "./core.js";

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const DEFAULT_PARAMS = '{\n  "type": "object",\n  "properties": {\n    "city": {"type": "string", "description": "The city"}\n  },\n  "required": ["city"]\n}';

/** The error of a tool's parameters text, or "" when it is a JSON-schema object. */
export function paramsError(text) {
  if (!text.trim()) return "";
  let v;
  try { v = JSON.parse(text); } catch (e) { return `Not valid JSON: ${e.message}`; }
  if (!v || typeof v !== "object" || Array.isArray(v)) return "The parameters must be a JSON object (a JSON schema).";
  if (v.type !== undefined && v.type !== "object") return 'A function\'s parameters schema has "type": "object".';
  return "";
}

/** The tools editor: {wrap, value(), state(), restore(state), onChange(fn)}. value() is
 * {tools, tool_choice} (empty when no tool is defined) or throws an Error whose `field` is the
 * input in error (marked, its message beside it). */
export function toolsEditor(prefix, onChange) {
  const list = h("div", { class: "tool-list", id: `${prefix}-tools` });
  const add = h("button", { type: "button", class: "secondary", id: `${prefix}-add-tool` }, "Add tool");
  const choice = select([["auto", "auto: the model decides"], ["none", "none: answer without tools"], ["required", "required: call a tool"]], "auto");
  choice.id = `${prefix}-tool-choice`;
  const choiceWrap = field("Tool choice", choice).wrap;
  choiceWrap.hidden = true;
  const rows = [];
  let seq = 0;

  const syncChoice = () => {
    const was = choice.value;
    for (const o of [...choice.options]) if (o.value.startsWith("function:")) o.remove();
    for (const r of rows) {
      const n = r.name.value.trim();
      if (NAME.test(n) && ![...choice.options].some((o) => o.value === `function:${n}`)) choice.append(h("option", { value: `function:${n}` }, `call ${n}`));
    }
    choice.value = [...choice.options].some((o) => o.value === was) ? was : "auto";
    choiceWrap.hidden = rows.length === 0;
  };

  const check = (r) => {
    const nameErr = !r.name.value.trim() ? "Give the tool a name." : NAME.test(r.name.value.trim()) ? "" : "Letters, digits, _ and - only, up to 64.";
    const paramErr = paramsError(r.params.value);
    for (const [inp, box, msg] of [[r.name, r.nameErr, nameErr], [r.params, r.paramsErr, paramErr]]) {
      box.textContent = msg;
      box.hidden = !msg;
      if (msg) inp.setAttribute("aria-invalid", "true"); else inp.removeAttribute("aria-invalid");
    }
    return nameErr ? [r.name, nameErr] : paramErr ? [r.params, paramErr] : null;
  };

  const addRow = (t = {}) => {
    const i = ++seq;
    const id = `${prefix}-tool-${i}`;
    const name = h("input", { type: "text", id: `${id}-name`, class: "tool-name", value: t.name ?? (rows.length ? "" : "get_weather"), autocomplete: "off", spellcheck: "false" });
    const desc = h("input", { type: "text", id: `${id}-description`, class: "tool-description", value: t.description ?? (rows.length ? "" : "The current weather in a city") });
    const params = h("textarea", { id: `${id}-parameters`, class: "tool-parameters", rows: 6, spellcheck: "false", value: t.parameters ?? (rows.length ? '{"type": "object", "properties": {}}' : DEFAULT_PARAMS) });
    const nameErr = h("div", { class: "field-error", id: `${id}-name-error`, "aria-live": "polite", hidden: true });
    const paramsErr = h("div", { class: "field-error", id: `${id}-parameters-error`, "aria-live": "polite", hidden: true });
    name.setAttribute("aria-describedby", nameErr.id);
    params.setAttribute("aria-describedby", paramsErr.id);
    const remove = h("button", { type: "button", class: "danger", id: `${id}-remove` }, "Remove tool");
    const box = h("fieldset", { class: "tool", "data-tool": String(i) }, h("legend", {}, `Tool ${rows.length + 1}`),
      h("div", { class: "row" }, h("div", {}, field("Name", name).wrap, nameErr), field("Description", desc).wrap),
      field("Parameters (JSON schema)", params).wrap, paramsErr, h("div", { class: "actions" }, remove));
    const r = { box, name, desc, params, nameErr, paramsErr };
    for (const inp of [name, desc, params]) inp.addEventListener("input", () => { if (inp !== desc) check(r); syncChoice(); onChange(); });
    remove.addEventListener("click", () => {
      rows.splice(rows.indexOf(r), 1);
      box.remove();
      rows.forEach((x, k) => { x.box.querySelector("legend").textContent = `Tool ${k + 1}`; });
      syncChoice();
      onChange();
      add.focus();
    });
    rows.push(r);
    list.append(box);
    check(r);
    syncChoice();
    return r;
  };
  add.addEventListener("click", () => { addRow().name.focus(); onChange(); });
  choice.addEventListener("change", onChange);

  const wrap = h("fieldset", { class: "tools" }, h("legend", {}, "Tools"),
    h("p", { class: "muted" }, "Functions the model may call, sent as tools (OpenAI's shape). A tool call it makes is shown with its arguments: answer it with the tool's result to go on."),
    list, choiceWrap, h("div", { class: "actions" }, add));
  return {
    wrap,
    value() {
      if (!rows.length) return {};
      const tools = rows.map((r) => {
        const bad = check(r);
        if (bad) throw Object.assign(new Error(`Tool ${rows.indexOf(r) + 1}: ${bad[1]}`), { field: bad[0] });
        const fn = { name: r.name.value.trim() };
        if (r.desc.value.trim()) fn.description = r.desc.value.trim();
        fn.parameters = r.params.value.trim() ? JSON.parse(r.params.value) : { type: "object", properties: {} };
        return { type: "function", function: fn };
      });
      const c = choice.value;
      return { tools, tool_choice: c.startsWith("function:") ? { type: "function", function: { name: c.slice(9) } } : c };
    },
    state() {
      return { tools: rows.map((r) => ({ name: r.name.value, description: r.desc.value, parameters: r.params.value })), choice: choice.value };
    },
    restore(s) {
      if (!s || !Array.isArray(s.tools)) return;
      for (const t of s.tools) addRow(t);
      if (s.choice && [...choice.options].some((o) => o.value === s.choice)) choice.value = s.choice;
    },
    setChoice(v) { choice.value = v; },
  };
}

/** Merge streamed tool-call deltas (OpenAI: by index; id and name first, arguments in pieces). */
export function mergeToolCalls(calls, deltas) {
  for (const d of deltas || []) {
    const i = d.index ?? calls.length;
    const c = calls[i] || (calls[i] = { id: "", type: "function", function: { name: "", arguments: "" } });
    if (d.id) c.id = d.id;
    if (d.type) c.type = d.type;
    if (d.function) {
      if (d.function.name) c.function.name += d.function.name;
      if (d.function.arguments) c.function.arguments += d.function.arguments;
    }
  }
  return calls;
}

/** The tool calls of an answer, drawn: name and arguments (pretty JSON when they are JSON). */
export function toolCallsView(calls) {
  return h("ul", { class: "tool-calls" }, calls.map((c) => h("li", { class: "tool-call", "data-tool-call": c.id, "data-tool-name": c.function.name },
    h("span", {}, "Calls tool "), h("code", { class: "tool-call-name" }, c.function.name),
    h("pre", { class: "tool-call-arguments" }, pretty(c.function.arguments || "{}")))));
}

/** The form that answers the tool calls of an answer: one result per call; `onAnswer(messages)`
 * gets the tool messages ({role: "tool", tool_call_id, content}) when the user sends them, and
 * returns false when they cannot go yet. */
export function toolAnswerForm(prefix, calls, onAnswer) {
  const inputs = calls.map((c, i) => {
    const ta = h("textarea", { id: `${prefix}-tool-result-${c.id || i}`, rows: 2, class: "tool-result", spellcheck: "false", placeholder: '{"temperature": 21}' });
    return [c, ta];
  });
  const send = h("button", { type: "submit", class: "tool-send" }, calls.length > 1 ? "Send tool results" : "Send tool result");
  const form = h("form", { class: "tool-answer" },
    inputs.map(([c, ta]) => field(`Result of ${c.function.name}`, ta).wrap),
    h("div", { class: "actions" }, send));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const empty = inputs.find(([, ta]) => !ta.value.trim());
    if (empty) { empty[1].focus(); empty[1].setAttribute("aria-invalid", "true"); return; }
    // onAnswer says false when the request cannot go (a tool definition is in error): keep the form
    if (onAnswer(inputs.map(([c, ta]) => ({ role: "tool", tool_call_id: c.id, content: ta.value.trim() }))) !== false) form.remove();
  });
  return form;
}

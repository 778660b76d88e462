// Cards of the endpoint page: replica logs, the OpenAPI document, query snippets (curl, Python,
// SDKs) built from it, and the endpoint's permissions.

import { api, arrowTabs, enc, entitiesOf, errorBox, field, h, select, toast } from "./core.js";
import { allowed } from "./endpoint.js";

// ---------- logs, openapi, snippets, permissions ----------

export function setupLogs(section, detail, url) {
  const sel = select([]);
  sel.id = "logs-entity";
  const update = (d) => {
    const keep = sel.value;
    const names = [...new Set([...entitiesOf(d), ...((d.pending_config || {}).served_entities || [])].map((e) => e.name))];
    sel.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
    if (names.includes(keep)) sel.value = keep;
  };
  update(detail);
  const out = h("pre", { id: "logs-output", tabindex: "0", "aria-label": "Log output" }, "Choose a served entity and a log.");
  const err = h("div");
  const load = (kind) => async () => {
    err.replaceChildren();
    out.textContent = "Loading…";
    try {
      const body = await api(`${url}/served-models/${enc(sel.value)}/${kind}`);
      out.textContent = body.logs || "(empty)";
    } catch (e) { out.textContent = ""; err.append(errorBox(e)); }
  };
  section.append(field("Served entity", sel).wrap,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", id: "show-logs", onclick: load("logs") }, "Logs"),
      h("button", { type: "button", class: "secondary", id: "show-build-logs", onclick: load("build-logs") }, "Build logs")),
    err, out);
  return update;
}

export function setupOpenapi(section, url) {
  const out = h("pre", { id: "openapi-output", tabindex: "0", "aria-label": "OpenAPI document", hidden: true });
  const btn = h("button", { type: "button", class: "secondary", id: "show-openapi" }, "Show the OpenAPI document");
  btn.addEventListener("click", async () => {
    try { out.textContent = JSON.stringify(await api(`${url}/openapi`), null, 2); out.hidden = false; } catch (e) { out.replaceChildren(); section.append(errorBox(e)); }
  });
  section.append(h("p", { class: "muted" }, "OpenAPI 3.1 description of this endpoint's query routes."), btn, out);
}

// ----- the endpoint's OpenAPI document: what a query looks like -----

/** The request of `POST /serving-endpoints/{name}/invocations` in the endpoint's OpenAPI
 * document: its schema, its example body, what the server says about the model, the task. */
export function invocationRequest(doc, name) {
  const op = ((doc.paths || {})[`/serving-endpoints/${name}/invocations`] || {}).post || {};
  const media = ((op.requestBody || {}).content || {})["application/json"] || {};
  return { schema: media.schema || {}, example: media.example ?? null, about: op.description || "", task: doc["x-modelport-task"] || null };
}

/** The rows of a dataframe request body as records; null for other bodies. */
export function recordsOf(body) {
  if (!body || typeof body !== "object") return null;
  if (Array.isArray(body.dataframe_records)) return body.dataframe_records;
  const split = body.dataframe_split;
  if (split && Array.isArray(split.columns) && Array.isArray(split.data)) {
    return split.data.map((row) => Object.fromEntries(split.columns.map((c, i) => [c, row[i]])));
  }
  const isRecord = (r) => r && typeof r === "object" && !Array.isArray(r);
  if (Array.isArray(body.instances) && body.instances.length && body.instances.every(isRecord)) return body.instances;
  return null;
}

function columnKind(s) {
  if (s.type === "number" || s.type === "integer") return "number";
  if (s.type === "boolean" || s.type === "string") return s.type;
  return "json";
}

/** The columns of a custom model's form: the signature's (from the request schema), else the
 * keys of the input example's first record; null when neither names any column. */
export function formColumns(schema, example) {
  const record = ((schema.properties || {}).dataframe_records || {}).items || {};
  if (record.properties && Object.keys(record.properties).length) {
    const required = new Set(record.required || []);
    return Object.entries(record.properties).map(([name, s]) => ({
      name, kind: columnKind(s), integer: s.type === "integer", label: s.format || s.type || "any", required: required.has(name),
    }));
  }
  const first = (recordsOf(example) || [])[0];
  if (!first || typeof first !== "object" || !Object.keys(first).length) return null;
  return Object.entries(first).map(([name, v]) => {
    const kind = typeof v === "number" ? "number" : typeof v === "boolean" ? "boolean" : typeof v === "string" ? "string" : "json";
    return { name, kind, integer: false, label: kind === "json" ? "JSON" : kind, required: true };
  });
}

/** A body to show when the model saved no input example: one record of placeholder values
 * in the signature's columns, or null when the signature names none. */
function sampleBody(schema) {
  const cols = formColumns(schema, null);
  if (!cols) return null;
  const sample = { number: 0.5, boolean: true, string: "text" };
  return { dataframe_records: [Object.fromEntries(cols.map((c) => [c.name, c.integer ? 1 : sample[c.kind] ?? null]))] };
}

/** A JSON value as a Python literal. */
export function pyLiteral(v) {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return Number.isFinite(v) ? JSON.stringify(v) : "None";
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(pyLiteral).join(", ")}]`;
  return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyLiteral(x)}`).join(", ")}}`;
}

const kwargs = (args) => args.map((a) => `    ${a},`).join("\n");

/** The snippets of an endpoint, built from the request of its OpenAPI document, with the
 * README's variables: MODELPORT_HOST and MODELPORT_TOKEN. Returns [[label, code], ...]. */
export function snippetsFor(name, req, origin) {
  const task = req.task;
  let body = req.example ?? sampleBody(req.schema);
  const missing = body === null
    ? "# The model has no signature or input example: put its input in the body.\n" : "";
  if (body === null) body = { dataframe_records: [] };
  const env = `# export MODELPORT_HOST=${origin} MODELPORT_TOKEN=<your access token>\n`;
  const curl = `${env}${missing}curl -s -H "Authorization: Bearer $MODELPORT_TOKEN" -H "Content-Type: application/json" \\\n` +
    `  $MODELPORT_HOST/serving-endpoints/${name}/invocations \\\n  -d '${JSON.stringify(body).replace(/'/g, "'\\''")}'`;

  const imports = [];
  const sdkArgs = [`name=${JSON.stringify(name)}`];
  const notes = [];
  for (const [k, v] of Object.entries(body)) {
    if (k === "messages" && Array.isArray(v)) {
      imports.push("ChatMessage", "ChatMessageRole");
      sdkArgs.push(`messages=[${v.map((m) => `ChatMessage(role=ChatMessageRole.${String(m.role).toUpperCase()}, content=${pyLiteral(m.content)})`).join(", ")}]`);
    } else if (k === "dataframe_split" && v && typeof v === "object") {
      imports.push("DataframeSplitInput");
      sdkArgs.push(`dataframe_split=DataframeSplitInput(${Object.entries(v).map(([sk, sv]) => `${sk}=${pyLiteral(sv)}`).join(", ")})`);
    } else if (k === "params") {
      notes.push("# query() has no params argument: send them with requests (see that snippet).");
    } else sdkArgs.push(`${k}=${pyLiteral(v)}`);
  }
  const sdk = `${env}${missing}import os\n\nfrom databricks.sdk import WorkspaceClient\n` +
    (imports.length ? `from databricks.sdk.service.serving import ${imports.join(", ")}\n` : "") +
    `\nw = WorkspaceClient(host=os.environ["MODELPORT_HOST"], token=os.environ["MODELPORT_TOKEN"])\n${notes.join("\n")}${notes.length ? "\n" : ""}` +
    `response = w.serving_endpoints.query(\n${kwargs(sdkArgs)}\n)\nprint(response)`;
  const requests = `${env}${missing}import os\n\nimport requests\n\nresponse = requests.post(\n` +
    `    f"{os.environ['MODELPORT_HOST']}/serving-endpoints/${name}/invocations",\n` +
    `    headers={"Authorization": f"Bearer {os.environ['MODELPORT_TOKEN']}"},\n    json=${pyLiteral(body)},\n)\nprint(response.json())`;
  const snippets = [["curl", curl], ["Python (databricks-sdk)", sdk], ["Python (requests)", requests]];
  const call = { "llm/v1/chat": "chat.completions", "llm/v1/completions": "completions", "llm/v1/embeddings": "embeddings", "agent/v1/responses": "responses" }[task];
  if (call) {
    // the Responses route takes the agent's input, not its custom_inputs or context
    const fields = Object.entries(body).filter(([k]) => call !== "responses" || k === "input");
    const args = [`model=${JSON.stringify(name)}`, ...fields.map(([k, v]) => `${k}=${pyLiteral(v)}`)];
    snippets.push(["Python (openai)", `${env}import os\n\nfrom openai import OpenAI\n\n` +
      `client = OpenAI(base_url=os.environ["MODELPORT_HOST"] + "/serving-endpoints", api_key=os.environ["MODELPORT_TOKEN"])\n` +
      `response = client.${call}.create(\n${kwargs(args)}\n)\nprint(response)`]);
  }
  return snippets;
}

/** The snippets section; returns a function that draws it again (after a config update: the
 * served model, so its example, may have changed). */
export function setupSnippets(section, detail, url) {
  const box = h("div");
  section.append(box);
  let drawn = 0;
  const draw = async () => {
    const mine = ++drawn;
    let req;
    try { req = invocationRequest(await api(`${url}/openapi`), detail.name); } catch (e) {
      if (mine === drawn) box.replaceChildren(errorBox(e));
      return;
    }
    if (mine !== drawn) return;
    const snippets = snippetsFor(detail.name, { ...req, task: req.task || detail.task || null }, location.origin);
    const shown = box.querySelector("[data-snippet][aria-selected=true]");
    const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Snippet language" });
    const pre = h("pre", { id: "snippet", tabindex: "0", role: "tabpanel" });
    const buttons = snippets.map(([label, code]) => {
      const b = h("button", { type: "button", role: "tab", "aria-selected": "false", "data-snippet": label }, label);
      b.addEventListener("click", () => {
        buttons.forEach((x) => x.setAttribute("aria-selected", x === b ? "true" : "false"));
        pre.textContent = code;
      });
      return b;
    });
    tabs.append(...buttons);
    arrowTabs(buttons);
    const i = Math.max(0, snippets.findIndex(([label]) => shown && label === shown.dataset.snippet));
    buttons[i].setAttribute("aria-selected", "true");
    pre.textContent = snippets[i][1];
    const copy = h("button", { type: "button", class: "secondary" }, "Copy");
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(pre.textContent); toast("Copied"); } catch { toast("Copy failed: select the text instead"); }
    });
    box.replaceChildren(req.about ? h("p", { class: "muted", id: "snippet-about" }, req.about) : "", tabs, pre, copy);
  };
  draw();
  return draw;
}

export async function setupPermissions(section, detail) {
  const url = `/api/2.0/permissions/serving-endpoints/${enc(detail.id)}`;
  const body = h("tbody");
  const err = h("div");
  const load = async () => {
    try {
      const acl = (await api(url)).access_control_list || [];
      body.replaceChildren(...acl.map((a) => h("tr", {},
        h("td", { "data-label": "Principal" }, a.user_name || a.group_name || a.service_principal_name || "–", " ", h("span", { class: "muted" }, a.user_name ? "user" : a.group_name ? "group" : "service principal")),
        h("td", { "data-label": "Permission" }, (a.all_permissions || []).map((p) => `${p.permission_level}${p.inherited ? " (inherited)" : ""}`).join(", ")))));
    } catch (e) { err.replaceChildren(errorBox(e)); }
  };
  const kind = select([["user_name", "User"], ["group_name", "Group"], ["service_principal_name", "Service principal"]]);
  const who = h("input", { type: "text", placeholder: "alice@example.com" });
  const level = select(["CAN_QUERY", "CAN_VIEW", "CAN_MANAGE"]);
  const add = h("button", { type: "button", class: "secondary", id: "grant" }, "Grant");
  add.addEventListener("click", async () => {
    err.replaceChildren();
    if (!who.value.trim()) { err.append(errorBox("Name a principal first.")); return; }
    try {
      await api(url, { method: "PATCH", body: { access_control_list: [{ [kind.value]: who.value.trim(), permission_level: level.value }] } });
      who.value = "";
      toast("Permission granted");
      await load();
    } catch (e) { err.append(errorBox(e)); }
  });
  section.append(
    h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "permissions" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Principal"), h("th", { scope: "col" }, "Permission"))), body)),
    allowed(detail).reconfigure ? h("div", { class: "row" }, field("Principal type", kind).wrap, field("Principal", who).wrap, field("Permission", level).wrap, h("div", { style: "flex:0" }, add)) : "",
    err);
  await load();
}

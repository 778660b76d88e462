// "View code" in the playground: the request the page would send now (endpoint, messages or
// prompt or inputs, parameters, tools) as curl, databricks-sdk, openai and mlflow.deployments
// snippets. The access token is always a placeholder ($DATABRICKS_TOKEN): the page never has the
// session's value and would not show it.

import { arrowTabs, errorBox, field, h, select, toast } from "./core.js";
import { pyLiteral } from "./endpoint_cards.js";

const ROLES = ["system", "user", "assistant"];
const OPENAI_CALL = { "llm/v1/chat": "chat.completions", "llm/v1/completions": "completions", "llm/v1/embeddings": "embeddings" };
const kwargs = (args) => args.map((a) => `    ${a},`).join("\n");

/** A JSON value as a Python literal, on several lines when one would be long: `at` is the
 * indentation of the line it starts on, `lead` how much of that line comes before it. */
function pyValue(v, at = 4, lead = 12) {
  const flat = pyLiteral(v);
  if (at + lead + flat.length <= 100 || v === null || typeof v !== "object") return flat;
  const pad = " ".repeat(at + 4);
  const items = Array.isArray(v)
    ? v.map((x) => `${pad}${pyValue(x, at + 4, 0)},`)
    : Object.entries(v).map(([k, x]) => `${pad}${JSON.stringify(k)}: ${pyValue(x, at + 4, JSON.stringify(k).length + 2)},`);
  const [open, close] = Array.isArray(v) ? ["[", "]"] : ["{", "}"];
  return `${open}\n${items.join("\n")}\n${" ".repeat(at)}${close}`;
}
const shellQuote = (s) => `'${String(s).replace(/'/g, "'\\''")}'`;
const TOKEN_NOTE = "# export DATABRICKS_TOKEN=<your access token>   (a personal access token: see Tokens)\n";

/** Whether databricks-sdk's query() can say this chat request with its typed arguments
 * (ChatMessage has a string content and the roles system, user and assistant; no tools). */
function sdkTyped(task, body) {
  if (task !== "llm/v1/chat") return true;
  if (body.tools || body.tool_choice) return false;
  return (body.messages || []).every((m) => ROLES.includes(m.role) && typeof m.content === "string" && !m.tool_calls);
}

/** The snippets of one request: [[label, code], ...]. `req` = {endpoint, task, body}; `origin`
 * the server (location.origin). The body is the Databricks / OpenAI request without model. */
export function requestSnippets(req, origin) {
  const { endpoint, task, body } = req;
  const url = `${origin}/serving-endpoints/${endpoint}/invocations`;
  const curl = `${TOKEN_NOTE}curl -sS -X POST ${shellQuote(url)} \\\n  -H "Authorization: Bearer $DATABRICKS_TOKEN" \\\n` +
    `  -H "Content-Type: application/json" \\\n  -d ${shellQuote(JSON.stringify(body, null, 2))}`;

  let sdk;
  const head = `${TOKEN_NOTE}import os\n\nfrom databricks.sdk import WorkspaceClient\n`;
  const client = `w = WorkspaceClient(host=${JSON.stringify(origin)}, token=os.environ["DATABRICKS_TOKEN"])\n`;
  if (sdkTyped(task, body)) {
    const args = [`name=${JSON.stringify(endpoint)}`];
    let imports = "";
    for (const [k, v] of Object.entries(body)) {
      if (k === "messages") {
        imports = "from databricks.sdk.service.serving import ChatMessage, ChatMessageRole\n";
        args.push(`messages=[\n${v.map((m) => `        ChatMessage(role=ChatMessageRole.${m.role.toUpperCase()}, content=${pyLiteral(m.content)}),`).join("\n")}\n    ]`);
      } else args.push(`${k}=${pyValue(v)}`);
    }
    sdk = `${head}${imports}\n${client}response = w.serving_endpoints.query(\n${kwargs(args)}\n)\nprint(response.as_dict())`;
  } else {
    // query() has no tools argument, and its ChatMessage no tool calls: send the body as it is
    sdk = `${head}\n${client}# query() takes no tools or tool messages: the body goes as it is through the API client\n` +
      `response = w.api_client.do(\n    "POST",\n    ${JSON.stringify(`/serving-endpoints/${endpoint}/invocations`)},\n    body=${pyValue(body)},\n)\nprint(response)`;
  }

  const call = OPENAI_CALL[task];
  const openaiArgs = [`model=${JSON.stringify(endpoint)}`, ...Object.entries(body).map(([k, v]) => `${k}=${pyValue(v)}`)];
  const openai = `${TOKEN_NOTE}import os\n\nfrom openai import OpenAI\n\n` +
    `client = OpenAI(base_url=${JSON.stringify(`${origin}/serving-endpoints`)}, api_key=os.environ["DATABRICKS_TOKEN"])\n` +
    `response = client.${call}.create(\n${kwargs(openaiArgs)}\n)\nprint(response.model_dump_json(indent=2))`;

  const mlflow = `${TOKEN_NOTE}import os\n\nfrom mlflow.deployments import get_deploy_client\n\n` +
    `os.environ.setdefault("DATABRICKS_HOST", ${JSON.stringify(origin)})\nclient = get_deploy_client("databricks")\n` +
    `response = client.predict(\n    endpoint=${JSON.stringify(endpoint)},\n    inputs=${pyValue(body)},\n)\nprint(response)`;
  return [["curl", curl], ["databricks-sdk", sdk], ["openai", openai], ["mlflow.deployments", mlflow]];
}

/** The "View code" button and the panel it opens: {button, panel, refresh()}. `requests()`
 * returns the current requests (one per chosen endpoint) or throws an Error that says what is
 * missing. While open, the panel follows the form (call refresh() when it changes). */
export function codePanel(prefix, requests) {
  const button = h("button", { type: "button", class: "secondary", id: `${prefix}-view-code`, "aria-expanded": "false", "aria-controls": `${prefix}-code` }, "View code");
  const body = h("div");
  const panel = h("section", { class: "card code-panel", id: `${prefix}-code`, hidden: true, "aria-labelledby": `${prefix}-code-title` },
    h("h2", { id: `${prefix}-code-title` }, "Code for this request"),
    h("p", { class: "muted" }, "The request as it would be sent now (not streamed). The token is a placeholder: set DATABRICKS_TOKEN to one of your access tokens."),
    body);
  let lang = "curl";
  let endpoint = null;
  const refresh = () => {
    if (panel.hidden) return;
    let reqs;
    try { reqs = requests(); } catch (e) { body.replaceChildren(errorBox(e)); return; }
    const req = reqs.find((r) => r.endpoint === endpoint) || reqs[0];
    endpoint = req.endpoint;
    const parts = [];
    if (reqs.length > 1) {
      const sel = select(reqs.map((r) => r.endpoint), req.endpoint);
      sel.id = `${prefix}-code-endpoint`;
      sel.addEventListener("change", () => { endpoint = sel.value; refresh(); document.getElementById(sel.id)?.focus(); });
      parts.push(field("Code for endpoint", sel).wrap);
    }
    const snippets = requestSnippets(req, location.origin);
    const pre = h("pre", { id: `${prefix}-code-text`, tabindex: "0", role: "tabpanel", "aria-label": "Code" });
    const tabs = snippets.map(([label, code]) => {
      const b = h("button", { type: "button", role: "tab", "aria-selected": String(label === lang), "data-snippet": label }, label);
      b.addEventListener("click", () => {
        lang = label;
        tabs.forEach((x) => x.setAttribute("aria-selected", String(x === b)));
        pre.textContent = code;
      });
      return b;
    });
    arrowTabs(tabs);
    pre.textContent = (snippets.find(([l]) => l === lang) || snippets[0])[1];
    const copy = h("button", { type: "button", class: "secondary", id: `${prefix}-code-copy` }, "Copy");
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(pre.textContent); toast("Copied"); } catch { toast("Copy failed: select the text instead"); }
    });
    body.replaceChildren(...parts, h("div", { class: "tabs", role: "tablist", "aria-label": "Code language" }, tabs), pre, h("div", { class: "actions" }, copy));
  };
  button.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    button.setAttribute("aria-expanded", String(!panel.hidden));
    refresh();
    if (!panel.hidden) panel.scrollIntoView({ block: "nearest" });
  });
  return { button, panel, refresh };
}

// Create an endpoint (#/create): a custom model, a foundation model or an external provider,
// with credentials picked from secret scopes.

import { api, enc, EP, errorBox, field, fmtTime, h, select, toast, ui } from "./core.js";

// ---------- create ----------

const PROVIDERS = {
  openai: { block: "openai_config", fields: [
    ["openai_api_key", "API key", "secret"], ["openai_api_base", "API base URL (optional)"], ["openai_organization", "Organization (optional)"],
    ["openai_api_type", "API type", ["", "azure", "azuread"]], ["openai_deployment_name", "Azure deployment name (Azure only)"], ["openai_api_version", "Azure API version (Azure only)"]] },
  custom: { block: "custom_provider_config", fields: [
    ["custom_provider_url", "Provider URL (OpenAI-compatible API base, e.g. http://vllm:8000/v1)", "required"], ["bearer_token_auth.token", "Bearer token", "secret"]] },
  anthropic: { block: "anthropic_config", fields: [["anthropic_api_key", "API key", "secret"]] },
  cohere: { block: "cohere_config", fields: [["cohere_api_key", "API key", "secret"], ["cohere_api_base", "API base URL (optional)"]] },
  "google-cloud-vertex-ai": { block: "google_cloud_vertex_ai_config", fields: [["project_id", "Project id", "required"], ["region", "Region", "required"], ["private_key", "Service-account key (JSON)", "secret"]] },
  palm: { block: "palm_config", fields: [["palm_api_key", "API key", "secret"]] },
  ai21labs: { block: "ai21labs_config", fields: [["ai21labs_api_key", "API key", "secret"]] },
  "amazon-bedrock": { block: "amazon_bedrock_config", fields: [["aws_region", "AWS region", "required"], ["bedrock_provider", "Bedrock provider", ["anthropic", "amazon", "cohere", "ai21labs"]],
    ["aws_access_key_id", "Access key id", "secret"], ["aws_secret_access_key", "Secret access key", "secret"]] },
  "databricks-model-serving": { block: "databricks_model_serving_config", fields: [["databricks_workspace_url", "Workspace URL", "required"], ["databricks_api_token", "API token", "secret"]] },
};

function setPath(obj, path, value) {
  const parts = path.split(".");
  let o = obj;
  for (const p of parts.slice(0, -1)) o = o[p] = o[p] || {};
  o[parts[parts.length - 1]] = value;
}

/** A credential: a secret chosen from a scope ({{secrets/scope/key}}) or typed in (sent as *_plaintext). */
function secretPicker(path, label, scopes) {
  const key = path.replace(/\./g, "-");
  const mode = select([["secret", "Secret reference"], ["plain", "Type it in (stored by the server as a secret)"], ["none", "None"]]);
  mode.id = `cred-mode-${key}`;
  const scopeSel = select([["", "Choose a scope"], ...scopes.map((s) => s.name)]);
  scopeSel.id = `cred-scope-${key}`;
  const keySel = select([["", "Choose a scope first"]]);
  keySel.id = `cred-key-${key}`;
  const plain = h("input", { type: "password", id: `cred-plain-${key}`, autocomplete: "off" });
  const err = h("div");
  const secretRow = h("div", { class: "row" }, field("Secret scope", scopeSel).wrap, field("Secret key", keySel).wrap);
  const plainRow = field(`${label} (value)`, plain).wrap;
  const sync = () => { secretRow.hidden = mode.value !== "secret"; plainRow.hidden = mode.value !== "plain"; };
  mode.addEventListener("change", sync);
  scopeSel.addEventListener("change", async () => {
    err.replaceChildren();
    keySel.replaceChildren(h("option", { value: "" }, "Loading…"));
    if (!scopeSel.value) return;
    try {
      const secrets = (await api(`/api/2.0/secrets/list?scope=${enc(scopeSel.value)}`)).secrets || [];
      keySel.replaceChildren(h("option", { value: "" }, secrets.length ? "Choose a key" : "No keys in this scope"), ...secrets.map((s) => h("option", { value: s.key }, s.key)));
    } catch (e) { keySel.replaceChildren(); err.append(errorBox(e)); }
  });
  if (!scopes.length) mode.value = "plain";
  sync();
  const wrap = h("fieldset", {}, h("legend", {}, label), field("Credential", mode).wrap, secretRow, plainRow, err);
  return {
    wrap,
    apply(block) {
      if (mode.value === "secret") {
        if (!scopeSel.value || !keySel.value) throw new Error(`${label}: choose a secret scope and key.`);
        setPath(block, path, `{{secrets/${scopeSel.value}/${keySel.value}}}`);
      } else if (mode.value === "plain") {
        if (!plain.value) throw new Error(`${label}: type the value, or choose a secret.`);
        setPath(block, `${path}_plaintext`, plain.value);
      }
    },
  };
}

export async function createPage() {
  const main = ui.view;
  document.title = "Create endpoint · modelport";
  const name = h("input", { type: "text", id: "create-name", required: true, pattern: "[A-Za-z0-9_-]+", autocomplete: "off" });
  const kindTabs = h("fieldset", {}, h("legend", {}, "What does it serve?"));
  const kinds = [["registered", "A registered model"], ["foundation", "A foundation model"], ["external", "An external model"]];
  const radios = kinds.map(([v, label], i) => {
    const r = h("input", { type: "radio", name: "kind", value: v, id: `kind-${v}`, checked: i === 0 });
    kindTabs.append(h("label", { class: "inline", for: r.id }, r, label));
    return r;
  });
  const panel = h("div");
  const err = h("div", { "aria-live": "assertive" });
  const submit = h("button", { type: "submit", id: "create-submit" }, "Create endpoint");
  const form = h("form", { class: "card", id: "create-form", novalidate: true },
    field("Endpoint name", name, "Letters, digits, - and _.").wrap, kindTabs, panel,
    h("fieldset", {}, h("legend", {}, "Options"),
      h("label", { class: "inline", for: "create-inference" }, h("input", { type: "checkbox", id: "create-inference" }), "Log requests and responses to an inference table (main.serving.<name>_payload)")),
    err, h("div", { class: "actions" }, submit));
  main.append(h("h1", {}, "Create a serving endpoint"), form);

  // One builder per kind: a kind's panel that finishes loading late must not replace another's.
  const builders = {};
  const sizeSel = () => { const s = select(["Small", "Medium", "Large"]); return s; };

  const drawRegistered = async () => {
    const model = select([["", "Loading…"]]);
    model.id = "create-model";
    const version = select([["", "Choose a model first"]]);
    version.id = "create-version";
    const ename = h("input", { type: "text", id: "create-entity-name", placeholder: "model-version (default)" });
    const size = sizeSel(); size.id = "create-size";
    const s2z = h("input", { type: "checkbox", id: "create-s2z" });
    const perr = h("div");
    panel.replaceChildren(h("div", { class: "row" }, field("Registered model", model).wrap, field("Version", version).wrap),
      h("div", { class: "row" }, field("Served entity name (optional)", ename).wrap, field("Workload size", size).wrap),
      h("label", { class: "inline", for: s2z.id }, s2z, "Scale to zero when idle"), perr);
    try {
      const models = (await api("/api/2.0/mlflow/registered-models/search?max_results=1000")).registered_models || [];
      model.replaceChildren(h("option", { value: "" }, models.length ? "Choose a model" : "No registered models"), ...models.map((m) => h("option", { value: m.name }, m.name)));
    } catch (e) { perr.append(errorBox(e)); }
    model.addEventListener("change", async () => {
      version.replaceChildren(h("option", { value: "" }, "Loading…"));
      if (!model.value) return;
      try {
        const vs = ((await api(`/api/2.0/mlflow/model-versions/search?filter=${enc(`name='${model.value.replace(/'/g, "\\'")}'`)}`)).model_versions || [])
          .sort((a, b) => Number(b.version) - Number(a.version));
        version.replaceChildren(...vs.map((v) => h("option", { value: v.version }, `Version ${v.version}${v.aliases && v.aliases.length ? ` (@${v.aliases.join(", @")})` : ""} · ${fmtTime(v.creation_timestamp)}`)));
      } catch (e) { perr.append(errorBox(e)); }
    });
    builders.registered = () => {
      if (!model.value) throw new Error("Choose a registered model.");
      if (!version.value) throw new Error("Choose a version.");
      const e = { entity_name: model.value, entity_version: version.value, workload_size: size.value, scale_to_zero_enabled: s2z.checked };
      if (ename.value.trim()) e.name = ename.value.trim();
      return e;
    };
  };

  const drawFoundation = () => {
    const model = select([["system.ai.smollm2-135m-instruct", "SmolLM2 135M Instruct (chat)"], ["system.ai.all-minilm-l6-v2", "all-MiniLM-L6-v2 (embeddings)"]]);
    model.id = "create-foundation";
    const size = sizeSel(); size.id = "create-size";
    const s2z = h("input", { type: "checkbox", id: "create-s2z", checked: true });
    panel.replaceChildren(field("Foundation model", model, "Served on this machine (llama.cpp / onnxruntime).").wrap, field("Workload size", size).wrap,
      h("label", { class: "inline", for: s2z.id }, s2z, "Scale to zero when idle"));
    builders.foundation = () => ({ entity_name: model.value, entity_version: "1", workload_size: size.value, scale_to_zero_enabled: s2z.checked });
  };

  const drawExternal = async () => {
    let scopes = [];
    const perr = h("div");
    try { scopes = (await api("/api/2.0/secrets/scopes/list")).scopes || []; } catch (e) { perr.append(errorBox(e)); }
    if (!document.getElementById("kind-external").checked) return; // the user chose another kind meanwhile
    const provider = select(Object.keys(PROVIDERS), "openai");
    provider.id = "create-provider";
    const task = select([["llm/v1/chat", "Chat (llm/v1/chat)"], ["llm/v1/completions", "Completions (llm/v1/completions)"], ["llm/v1/embeddings", "Embeddings (llm/v1/embeddings)"]]);
    task.id = "create-task";
    const mname = h("input", { type: "text", id: "create-external-name", placeholder: "gpt-4o-mini" });
    const ename = h("input", { type: "text", id: "create-entity-name", placeholder: "the model name (default)" });
    const fieldsBox = h("div");
    let appliers = [];
    const drawFields = () => {
      appliers = [];
      fieldsBox.replaceChildren();
      for (const [path, label, kind] of PROVIDERS[provider.value].fields) {
        if (kind === "secret") {
          const p = secretPicker(path, label, scopes);
          fieldsBox.append(p.wrap);
          appliers.push(p.apply);
        } else if (Array.isArray(kind)) {
          const s = select(kind.map((k) => [k, k || "(default)"]));
          s.id = `ext-${path}`;
          fieldsBox.append(field(label, s).wrap);
          appliers.push((block) => { if (s.value) setPath(block, path, s.value); });
        } else {
          const inp = h("input", { type: "text", id: `ext-${path}`, required: kind === "required" });
          fieldsBox.append(field(label, inp).wrap);
          appliers.push((block) => {
            if (inp.value.trim()) setPath(block, path, inp.value.trim());
            else if (kind === "required") throw new Error(`${label} is required.`);
          });
        }
      }
    };
    provider.addEventListener("change", drawFields);
    drawFields();
    panel.replaceChildren(h("div", { class: "row" }, field("Provider", provider).wrap, field("Task", task).wrap),
      h("div", { class: "row" }, field("Provider's model name", mname).wrap, field("Served entity name (optional)", ename).wrap),
      h("h3", {}, "Provider settings"), fieldsBox, perr,
      scopes.length ? "" : h("p", { class: "muted" }, "No secret scopes yet: create one with `modelport secrets` or the secrets API to pick credentials from it."));
    builders.external = () => {
      if (!mname.value.trim()) throw new Error("Name the provider's model.");
      const block = {};
      for (const a of appliers) a(block);
      const e = { name: ename.value.trim() || mname.value.trim().replace(/[^A-Za-z0-9_-]/g, "-"), external_model: { provider: provider.value, name: mname.value.trim(), task: task.value, [PROVIDERS[provider.value].block]: block } };
      return e;
    };
  };

  const draw = () => {
    const kind = radios.find((r) => r.checked).value;
    err.replaceChildren();
    ({ registered: drawRegistered, foundation: drawFoundation, external: drawExternal })[kind]();
  };
  radios.forEach((r) => r.addEventListener("change", draw));
  draw();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const n = name.value.trim();
    try {
      if (!/^[A-Za-z0-9_-]{1,63}$/.test(n)) throw new Error("The endpoint name must be 1-63 letters, digits, - or _.");
      const kind = radios.find((r) => r.checked).value;
      if (!builders[kind]) throw new Error("The form is still loading: try again in a moment.");
      const entity = builders[kind]();
      const body = { name: n, config: { served_entities: [entity] } };
      if (document.getElementById("create-inference").checked) {
        body.ai_gateway = { inference_table_config: { catalog_name: "main", schema_name: "serving", table_name_prefix: n.replace(/-/g, "_"), enabled: true } };
      }
      submit.disabled = true;
      await api(EP, { method: "POST", body });
      toast(`Creating ${n}`);
      location.hash = `#/endpoints/${enc(n)}`;
    } catch (e) {
      err.append(errorBox(e));
    } finally {
      submit.disabled = false;
    }
  });
  name.focus();
}

// The playground's Completions and Embeddings tabs: a prompt completed by an llm/v1/completions
// endpoint (streamed when the endpoint streams), and texts embedded by an llm/v1/embeddings
// endpoint, shown with each vector's dimension, its first values and the cosine similarity of
// every pair of inputs (computed here, in the page). Both query
// POST /serving-endpoints/{name}/invocations, as any client does.

import { readSse } from "./agents.js";
import { ApiError, enc, errorBox, field, h, rawFetch, select } from "./core.js";
import { codePanel } from "./playground_code.js";
import { keep, recall } from "./playground_store.js";

const invocations = (name) => `/serving-endpoints/${enc(name)}/invocations`;

/** Restore the inputs of a form from what was kept under `key`, and keep them when the user
 * changes one (not before: nothing is written until the user does something). */
function remember(key, inputs) {
  const kept = recall(key) || {};
  for (const [k, inp] of Object.entries(inputs)) {
    if (kept[k] === undefined) continue;
    if (inp.tagName === "SELECT" && ![...inp.options].some((o) => o.value === kept[k])) continue;
    inp.value = kept[k];
  }
  const save = () => keep(key, Object.fromEntries(Object.entries(inputs).map(([k, inp]) => [k, inp.value])));
  for (const inp of Object.values(inputs)) inp.addEventListener("change", save);
  return save;
}

const stopsOf = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

// ---------- completions ----------

export function completionsPlayground(panel, eps) {
  const names = eps.map((e) => e.name);
  const sel = select([["", "Choose an endpoint"], ...names], names[0] || "");
  sel.id = "cp-endpoint";
  const prompt = h("textarea", { id: "cp-prompt", rows: 4, class: "prompt", placeholder: "Once upon a time… (Ctrl+Enter sends)" });
  const maxTok = h("input", { type: "number", id: "cp-max-tokens", min: 1, max: 4096, step: 1, value: 64 });
  const temp = h("input", { type: "number", id: "cp-temperature", min: 0, max: 2, step: 0.1, value: 0.7 });
  const stop = h("input", { type: "text", id: "cp-stop", placeholder: "comma-separated" });
  const send = h("button", { type: "submit", id: "cp-send" }, "Complete");
  const err = h("div");
  const out = h("div", { id: "cp-output", "aria-live": "polite" });
  const save = remember("completions", { endpoint: sel, prompt, max_tokens: maxTok, temperature: temp, stop });
  const request = () => {
    if (!sel.value) throw new Error("Choose an endpoint.");
    if (!prompt.value.trim()) throw new Error("Type a prompt.");
    const body = { prompt: prompt.value, max_tokens: Number(maxTok.value), temperature: Number(temp.value) };
    const stops = stopsOf(stop.value);
    if (stops.length) body.stop = stops;
    return body;
  };
  const code = codePanel("cp", () => [{ endpoint: sel.value, task: "llm/v1/completions", body: request() }]);
  const form = h("form", { class: "card", id: "cp-form" },
    field("Completions endpoint", sel).wrap,
    field("Prompt", prompt).wrap,
    h("div", { class: "row" }, field("Max tokens", maxTok).wrap, field("Temperature", temp).wrap, field("Stop sequences", stop).wrap),
    err, h("div", { class: "actions" }, send, code.button));
  if (!eps.length) panel.append(h("p", { class: "notice" }, "No completions endpoints yet: create one (an external model with the task llm/v1/completions)."));
  panel.append(form, code.panel, out);
  prompt.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); } });
  wireForm(form, { code, err, send, request, save }, (body) => complete(sel.value, body, out));
}

/** The code view follows the form; a submit builds the request (its error shown in ``err``),
 * saves the settings and runs ``run(body)`` with the button disabled. */
function wireForm(form, { code, err, send, request, save }, run) {
  form.addEventListener("input", code.refresh);
  form.addEventListener("change", code.refresh);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    let body;
    try { body = request(); } catch (e) { err.append(errorBox(e)); return; }
    save();
    send.disabled = true;
    await run(body);
    send.disabled = false;
  });
}

async function complete(name, body, out) {
  const text = h("div", { class: "completion" }, h("span", { class: "prompt-echo" }, body.prompt), h("strong", { class: "content" }));
  const stats = h("div", { class: "stats" }, "waiting…");
  const box = h("section", { class: "answer", "aria-label": `Completion from ${name}` }, h("h2", {}, name), text, stats);
  out.replaceChildren(box);
  const content = text.querySelector(".content");
  const t0 = performance.now();
  let first = null;
  let usage = null;
  let finish = null;
  let streamed = true;
  try {
    let res;
    try {
      res = await rawFetch(invocations(name), { method: "POST", body: { ...body, stream: true, stream_options: { include_usage: true } } });
    } catch (e) {
      // an endpoint that does not stream says so: ask again for the whole answer
      if (!(e instanceof ApiError) || e.status !== 400 || !/stream/i.test(e.message)) throw e;
      streamed = false;
      res = await rawFetch(invocations(name), { method: "POST", body });
    }
    const onChunk = (chunk) => {
      if (chunk && chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices || []) {
        const d = c.text ?? (c.delta && c.delta.content) ?? "";
        if (d) {
          if (first === null) first = performance.now() - t0;
          content.textContent += d;
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    };
    if ((res.headers.get("content-type") || "").includes("text/event-stream")) await readSse(res, (_t, data) => onChunk(data));
    else { streamed = false; onChunk(await res.json()); }
    const total = performance.now() - t0;
    stats.textContent = `${(total / 1000).toFixed(2)} s total · ${streamed ? `streamed, first token ${first === null ? "–" : (first / 1000).toFixed(2) + " s"}` : "not streamed"}` +
      ` · ${finish ? `finish: ${finish} · ` : ""}` + (usage ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens` : "no usage reported");
    box.dataset.done = "true";
    box.dataset.streamed = String(streamed);
  } catch (e) {
    stats.replaceChildren(errorBox(e));
    box.dataset.done = "error";
  }
}

// ---------- embeddings ----------

/** Cosine similarity of two vectors. */
export function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

export function embeddingsPlayground(panel, eps) {
  const names = eps.map((e) => e.name);
  const sel = select([["", "Choose an endpoint"], ...names], names[0] || "");
  sel.id = "em-endpoint";
  const inputs = h("textarea", { id: "em-inputs", rows: 5, class: "prompt", placeholder: "The cat sat on the mat.\nA kitten is resting on a rug.\nStock markets fell today." });
  const send = h("button", { type: "submit", id: "em-send" }, "Embed");
  const err = h("div");
  const out = h("div", { id: "em-output", "aria-live": "polite" });
  const save = remember("embeddings", { endpoint: sel, inputs });
  const texts = () => inputs.value.split("\n").map((s) => s.trim()).filter(Boolean);
  const request = () => {
    if (!sel.value) throw new Error("Choose an endpoint.");
    const input = texts();
    if (!input.length) throw new Error("Type at least one input, one per line.");
    return { input };
  };
  const code = codePanel("em", () => [{ endpoint: sel.value, task: "llm/v1/embeddings", body: request() }]);
  const form = h("form", { class: "card", id: "em-form" },
    field("Embeddings endpoint", sel).wrap,
    field("Inputs, one per line", inputs, "Each line is embedded; with two or more the page shows the cosine similarity of each pair.").wrap,
    err, h("div", { class: "actions" }, send, code.button));
  if (!eps.length) panel.append(h("p", { class: "notice" }, "No embeddings endpoints yet: create one (an external model with the task llm/v1/embeddings), or turn on the system endpoints."));
  panel.append(form, code.panel, out);
  wireForm(form, { code, err, send, request, save }, async (body) => {
    out.replaceChildren(h("p", { class: "muted" }, "Embedding…"));
    try {
      const t0 = performance.now();
      const res = await (await rawFetch(invocations(sel.value), { method: "POST", body })).json();
      const ms = performance.now() - t0;
      const vectors = [...(res.data || [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0)).map((d) => d.embedding);
      if (vectors.length !== body.input.length || vectors.some((v) => !Array.isArray(v))) throw new Error("The endpoint did not answer one vector per input.");
      out.replaceChildren(embeddingsView(body.input, vectors, ms, res.usage));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  });
}

const FIRST = 5;

function embeddingsView(texts, vectors, ms, usage) {
  const label = (i) => `#${i + 1}`;
  const vecTable = h("div", { class: "table-wrap" }, h("table", { id: "em-vectors", class: "responsive" },
    h("caption", { class: "sr-only" }, "Vectors"),
    h("thead", {}, h("tr", {}, ["Input", "Text", "Dimension", `First ${FIRST} values`].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, vectors.map((v, i) => h("tr", { "data-index": String(i) },
      h("td", { "data-label": "Input" }, label(i)),
      h("td", { "data-label": "Text" }, texts[i]),
      h("td", { "data-label": "Dimension", class: "em-dim" }, String(v.length)),
      h("td", { "data-label": `First ${FIRST} values`, class: "em-first" }, h("code", {}, `[${v.slice(0, FIRST).map((x) => x.toFixed(4)).join(", ")}${v.length > FIRST ? ", …" : ""}]`)))))));
  const parts = [h("h2", {}, "Vectors"),
    h("p", { class: "muted" }, `${vectors.length} vector${vectors.length === 1 ? "" : "s"} of dimension ${vectors[0] ? vectors[0].length : 0} in ${ms.toFixed(0)} ms` +
      (usage && usage.prompt_tokens !== undefined ? ` · ${usage.prompt_tokens} tokens` : "")), vecTable];
  if (vectors.length > 1) {
    const cell = (i, j) => {
      const s = cosine(vectors[i], vectors[j]);
      const td = h("td", { class: "sim", "data-i": String(i), "data-j": String(j), "data-value": String(s) }, s.toFixed(3));
      // the closer to 1, the darker (through the CSSOM: the CSP refuses style attributes)
      const a = Math.max(0, Math.min(1, s));
      td.style.backgroundColor = `rgba(31, 95, 191, ${(a * 0.55).toFixed(3)})`;
      if (a > 0.6) td.style.color = "#fff";
      return td;
    };
    parts.push(h("h2", {}, "Cosine similarity"),
      h("p", { class: "muted" }, "Between each pair of inputs, computed in this page from the vectors: 1 is the same direction, 0 unrelated."),
      h("div", { class: "table-wrap" }, h("table", { id: "em-similarity" },
        h("caption", { class: "sr-only" }, "Cosine similarity between the inputs"),
        h("thead", {}, h("tr", {}, h("td", {}), vectors.map((_, j) => h("th", { scope: "col", title: texts[j] }, label(j))))),
        h("tbody", {}, vectors.map((_, i) => h("tr", {}, h("th", { scope: "row", title: texts[i] }, label(i)), vectors.map((__, j) => cell(i, j))))))));
  }
  return h("section", { class: "card", id: "em-result", "aria-label": "Embeddings" }, parts);
}

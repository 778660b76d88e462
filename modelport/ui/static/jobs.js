// Bulk jobs (OpenAI's Batch API under /serving-endpoints, docs/batch.md): the list with each job's
// state, progress, owner and files, one job's page, and Cancel while a job runs; below it the
// table jobs of `modelport batch run` (/api/2.0/modelport/batch/jobs). Like features.js, app.js
// imports these pages and calls them only after both modules have run.

import { api, enc, errorBox, every, fmtTime, h, toast } from "./core.js";

const BATCHES = "/serving-endpoints/batches";
const TABLE_JOBS = "/api/2.0/modelport/batch/jobs";
const TABLE_RUNNING = new Set(["queued", "running"]);
const FILES = "/serving-endpoints/files";
const RUNNING = new Set(["validating", "in_progress", "finalizing"]);
const STATE_CLASS = {
  completed: "ready",
  failed: "failed",
  expired: "failed",
  cancelled: "notready",
  validating: "updating",
  in_progress: "updating",
  finalizing: "updating",
  cancelling: "updating",
  queued: "updating",
  running: "updating",
};

/** The moments a job records, in the order they come. */
const TIMES = {
  in_progress_at: "Started",
  finalizing_at: "Finalizing",
  completed_at: "Completed",
  failed_at: "Failed",
  expired_at: "Expired",
  cancelling_at: "Cancel asked",
  cancelled_at: "Cancelled",
};

function stateBadge(b) {
  return h("span", { class: `badge state-${STATE_CLASS[b.status] || "notready"}`, "data-status": b.status }, b.status.replace("_", " "));
}

/** "12 of 20 · 1 failed" and a progress bar (answered lines over all lines). */
function progressOf(b) {
  const c = b.request_counts || { total: 0, completed: 0, failed: 0 };
  const done = c.completed + c.failed;
  const text = `${done} of ${c.total}${c.failed ? ` · ${c.failed} failed` : ""}`;
  return h("div", { class: "job-progress", "data-counts": `${c.completed}/${c.failed}/${c.total}` },
    h("progress", { max: String(c.total || 1), value: String(done), "aria-label": `Lines answered: ${text}` }),
    h("span", {}, text));
}

function fileLinks(b) {
  const links = [];
  if (b.output_file_id) links.push(h("a", { href: `${FILES}/${enc(b.output_file_id)}/content`, "data-file": "output", download: `${b.id}-output.jsonl` }, "Output"));
  if (b.error_file_id) links.push(h("a", { href: `${FILES}/${enc(b.error_file_id)}/content`, "data-file": "error", download: `${b.id}-errors.jsonl` }, "Errors"));
  if (!links.length) return RUNNING.has(b.status) || b.status === "cancelling" ? h("span", { class: "muted" }, "when it ends") : "–";
  return h("span", { class: "file-links" }, ...links.flatMap((a, i) => (i ? [" · ", a] : [a])));
}

/** A Cancel button for a running job; ``after`` runs with the job as the cancel answered it. */
function cancelButton(b, after) {
  if (!RUNNING.has(b.status)) return null;
  const button = h("button", { type: "button", class: "secondary", "data-cancel": b.id, "aria-label": `Cancel ${b.id}` }, "Cancel");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const got = await api(`${BATCHES}/${enc(b.id)}/cancel`, { method: "POST" });
      toast(`Cancelling ${b.id}`);
      after(got);
    } catch (e) {
      button.disabled = false;
      toast(e.message);
    }
  });
  return button;
}

/** Every job of the caller (admins: all), newest first, following the cursor pages. */
async function allBatches() {
  const found = [];
  let after = "";
  for (let i = 0; i < 50; i++) {
    const page = await api(`${BATCHES}?limit=100${after ? `&after=${enc(after)}` : ""}`);
    found.push(...(page.data || []));
    if (!page.has_more || !page.last_id) break;
    after = page.last_id;
  }
  return found.sort((a, b) => b.created_at - a.created_at);
}

// ---------- the list ----------

export async function jobsPage(main) {
  document.title = "Jobs · modelport";
  const count = h("p", { class: "muted", "aria-live": "polite", id: "jobs-count" });
  const body = h("tbody");
  const table = h("section", { class: "card" }, count,
    h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Status", "Progress", "Owner", "Created", "Endpoint", "Files", ""].map((c) => h("th", { scope: "col" }, c)))),
      body)));
  const empty = h("p", { class: "notice", id: "jobs-empty", hidden: true },
    "No bulk job yet: upload a JSONL file and start one with the openai client (client.batches.create) against <server>/serving-endpoints (docs/batch.md).");
  main.append(h("h1", {}, "Jobs"),
    h("p", { class: "muted" }, "Bulk jobs of the OpenAI Batch API: each line is sent to its serving endpoint as the job's owner. You see your own jobs (admins: all)."),
    empty, table);
  let last = "";
  const draw = (jobs) => {
    const text = JSON.stringify(jobs);
    if (text === last) return;
    last = text;
    empty.hidden = jobs.length > 0;
    table.hidden = !jobs.length;
    const running = jobs.filter((b) => RUNNING.has(b.status) || b.status === "cancelling").length;
    count.textContent = `${jobs.length} job(s)${running ? `, ${running} running` : ""}`;
    body.replaceChildren(...jobs.map((b) => h("tr", { "data-batch": b.id },
      h("td", { "data-label": "Job" }, h("a", { href: `#/jobs/${enc(b.id)}` }, b.id)),
      h("td", { "data-label": "Status" }, stateBadge(b)),
      h("td", { "data-label": "Progress" }, progressOf(b)),
      h("td", { "data-label": "Owner" }, b.owner || "–"),
      h("td", { "data-label": "Created" }, fmtTime(b.created_at * 1000)),
      h("td", { "data-label": "Endpoint" }, h("code", {}, b.endpoint)),
      h("td", { "data-label": "Files" }, fileLinks(b)),
      h("td", {}, cancelButton(b, () => refresh())))));
  };
  const refresh = async () => draw(await allBatches());
  await refresh();
  every(3000, refresh, table);
  tableJobs(main).catch((e) => console.warn(e)); // the OpenAI jobs above stand on their own
}

/** The table jobs (`modelport batch run`): rows done of all, failed rows, input, output table. */
async function tableJobs(main) {
  const body = h("tbody");
  const section = h("section", { class: "card", id: "table-jobs-card", "aria-labelledby": "table-jobs-title", hidden: true },
    h("h2", { id: "table-jobs-title" }, "Table jobs"),
    h("p", { class: "muted" }, "modelport batch run: a file or a Delta table scored into a Delta table, as the job's owner."),
    h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "table-jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Status", "Progress", "Owner", "Created", "Endpoint", "Input", "Output table", ""].map((c) => h("th", { scope: "col" }, c)))),
      body)));
  main.append(section);
  const cancel = (j) => {
    if (!TABLE_RUNNING.has(j.status)) return null;
    const button = h("button", { type: "button", class: "secondary", "data-cancel": j.id, "aria-label": `Cancel ${j.id}` }, "Cancel");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`${TABLE_JOBS}/${enc(j.id)}/cancel`, { method: "POST" });
        toast(`Cancelling ${j.id}`);
        await refresh();
      } catch (e) {
        button.disabled = false;
        toast(e.message);
      }
    });
    return button;
  };
  const progress = (j) => {
    const r = j.rows || { total: 0, done: 0, failed: 0 };
    const text = `${r.done} of ${r.total}${r.failed ? ` · ${r.failed} failed` : ""}`;
    return h("div", { class: "job-progress" },
      h("progress", { max: String(r.total || 1), value: String(r.done), "aria-label": `Rows done: ${text}` }), h("span", {}, text));
  };
  let last = "";
  const refresh = async () => {
    const jobs = (await api(TABLE_JOBS)).jobs || [];
    const text = JSON.stringify(jobs);
    if (text === last) return;
    last = text;
    section.hidden = !jobs.length;
    body.replaceChildren(...jobs.map((j) => h("tr", { "data-table-job": j.id },
      h("td", { "data-label": "Job" }, j.id),
      h("td", { "data-label": "Status" }, stateBadge(j)),
      h("td", { "data-label": "Progress" }, progress(j),
        j.error ? h("div", { class: "error" }, j.error) : null,
        (j.top_errors || []).length ? h("ul", { class: "muted" }, j.top_errors.map((e) => h("li", {}, `${e.count} × ${e.message}`))) : null),
      h("td", { "data-label": "Owner" }, j.owner || "–"),
      h("td", { "data-label": "Created" }, fmtTime(j.created_at)),
      h("td", { "data-label": "Endpoint" }, h("code", {}, j.endpoint)),
      h("td", { "data-label": "Input" }, j.input.name),
      h("td", { "data-label": "Output table" }, h("code", {}, j.output_table)),
      h("td", {}, cancel(j)))));
  };
  every(3000, refresh, section);
}

// ---------- one job ----------

export async function jobPage(main, id) {
  document.title = `${id} · Jobs · modelport`;
  const url = `${BATCHES}/${enc(id)}`;
  const box = h("div");
  main.append(box);
  let last = "";
  const draw = (b) => {
    const text = JSON.stringify(b);
    if (text === last) return;
    last = text;
    const c = b.request_counts || {};
    const when = Object.entries(TIMES).filter(([k]) => b[k]).flatMap(([k, label]) => [h("dt", {}, label), h("dd", {}, fmtTime(b[k] * 1000))]);
    const meta = Object.entries(b.metadata || {});
    const errors = ((b.errors || {}).data) || [];
    box.replaceChildren(
      h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
      h("h1", { id: "job-title" }, b.id, " ", stateBadge(b)),
      h("div", { class: "grid2" },
        h("section", { class: "card", "aria-labelledby": "job-progress-title" },
          h("h2", { id: "job-progress-title" }, "Progress"),
          progressOf(b),
          h("dl", { class: "facts", id: "job-counts" },
            h("dt", {}, "Lines"), h("dd", { "data-count": "total" }, String(c.total ?? 0)),
            h("dt", {}, "Answered 200"), h("dd", { "data-count": "completed" }, String(c.completed ?? 0)),
            h("dt", {}, "Failed"), h("dd", { "data-count": "failed" }, String(c.failed ?? 0))),
          errors.length ? h("div", { class: "error", role: "alert", id: "job-errors" },
            h("ul", {}, errors.map((e) => h("li", {}, `${e.code ? `${e.code}: ` : ""}${e.message}${e.line ? ` (line ${e.line})` : ""}`)))) : null,
          h("div", { class: "actions" }, cancelButton(b, draw))),
        h("section", { class: "card", "aria-labelledby": "job-about-title" },
          h("h2", { id: "job-about-title" }, "Job"),
          h("dl", { class: "facts", id: "job-facts" },
            h("dt", {}, "Owner"), h("dd", { id: "job-owner" }, b.owner || "–"),
            h("dt", {}, "Endpoint"), h("dd", {}, h("code", {}, b.endpoint)),
            h("dt", {}, "Input file"), h("dd", {}, h("a", { href: `${FILES}/${enc(b.input_file_id)}/content`, download: `${b.input_file_id}.jsonl` }, b.input_file_id)),
            h("dt", {}, "Results"), h("dd", { id: "job-files" }, fileLinks(b)),
            h("dt", {}, "Created"), h("dd", {}, fmtTime(b.created_at * 1000)),
            ...when,
            h("dt", {}, "Expires"), h("dd", {}, fmtTime(b.expires_at * 1000)),
            ...meta.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))));
  };
  draw(await api(url));
  every(2000, async () => draw(await api(url)), box);
}

// ---------- the SQL box of the inference-tables page ----------

function sqlCell(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "null");
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** A statement box that runs any read-only SQL (ai_query included) as the signed-in user. */
export function sqlBox(section, example) {
  const text = h("textarea", { id: "sql-text", rows: "5", spellcheck: "false", "aria-describedby": "sql-help" });
  text.value = example;
  const run = h("button", { type: "submit", id: "sql-run" }, "Run");
  const info = h("p", { class: "muted", "aria-live": "polite", id: "sql-info" });
  const result = h("div", { id: "sql-result" });
  const form = h("form", { id: "sql-form" },
    h("label", { for: "sql-text" }, "Statement"), text,
    h("p", { class: "muted", id: "sql-help" }, "Read-only SQL over the tables you may read, as you: ai_query(endpoint, request) and the AI functions query endpoints with your permissions and rate limits (docs/batch.md). Ctrl+Enter runs it."),
    h("div", { class: "actions" }, run), info, result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    result.replaceChildren();
    info.textContent = "Running…";
    run.disabled = true;
    const started = performance.now();
    try {
      const res = await api("/api/2.0/modelport/tables/query", { method: "POST", body: { sql: text.value } });
      const cols = res.columns || [];
      const rows = res.rows || [];
      info.textContent = `${rows.length} row(s)${res.truncated ? " (truncated)" : ""} in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
      result.append(h("div", { class: "table-wrap" }, h("table", { id: "sql-rows" },
        h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((v) => h("td", {}, sqlCell(v)))))))));
    } catch (e) {
      info.textContent = "";
      result.append(errorBox(e));
    } finally {
      run.disabled = false;
    }
  });
  text.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  section.append(h("h2", { id: "sql-title" }, "SQL"), form);
}

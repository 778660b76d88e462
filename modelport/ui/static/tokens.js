// My tokens (#/tokens): the caller's personal access tokens (Databricks' token API: /api/2.0/token/*),
// created with a lifetime and a comment, the value shown once, revoked with a confirmation. Admins
// also see every principal's tokens (token-management).

import { api, errorBox, field, fmtTime, h, SESSION, select, toast, ui } from "./core.js";

const TOKEN = "/api/2.0/token";
const MANAGEMENT = "/api/2.0/token-management/tokens";
const SESSION_COMMENT = "browser session"; // the comment the server gives a sign-in's own token
const LIFETIMES = [
  ["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"], ["2592000", "30 days"],
  ["7776000", "90 days"], ["31536000", "1 year"], ["-1", "No expiry"], ["custom", "Custom (seconds)"],
];

/** "in 3 days", "2 hours ago": how far a time (ms) is from now, in the largest whole unit. */
export function fromNow(ms) {
  const diff = Number(ms) - Date.now();
  const abs = Math.abs(diff) / 1000;
  const units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  const [unit, size] = units.find(([, s]) => abs >= s) || units[3];
  const n = Math.floor(abs / size);
  const text = `${n} ${unit}${n === 1 ? "" : "s"}`;
  return diff >= 0 ? `in ${text}` : `${text} ago`;
}

function expiryCell(expiry) {
  if (expiry === undefined || expiry === null || Number(expiry) < 0) return h("span", { "data-expiry": "never" }, "Never");
  const expired = Number(expiry) <= Date.now();
  return h("span", { "data-expiry": expired ? "expired" : "expires", title: fmtTime(expiry) },
    expired ? h("span", { class: "badge state-failed" }, "Expired") : "", expired ? " " : "",
    `${fmtTime(expiry)} (${fromNow(expiry)})`);
}

function tokenTable(id, columns, rows) {
  return h("div", { class: "table-wrap" }, h("table", { class: "responsive", id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "No tokens.")))));
}

export async function tokensPage() {
  const main = ui.view;
  document.title = "My tokens · modelport";
  const me = await api(SESSION);
  main.append(h("h1", {}, "My tokens"),
    h("p", { class: "muted" }, `Personal access tokens of ${me.user_name}: use one as "Authorization: Bearer <token>" with the REST API, the databricks-sdk, the OpenAI client or mlflow. A token acts with all your permissions; revoke the ones you no longer use.`));

  // ---- create ----
  const comment = h("input", { type: "text", id: "token-comment", maxlength: "500", placeholder: "e.g. CI pipeline" });
  const lifetime = select(LIFETIMES, "7776000");
  lifetime.id = "token-lifetime";
  const custom = h("input", { type: "number", id: "token-seconds", min: "1", step: "1", inputmode: "numeric" });
  const customWrap = field("Lifetime in seconds", custom, "Up to 10 years (315360000 seconds).").wrap;
  customWrap.hidden = true;
  lifetime.addEventListener("change", () => { customWrap.hidden = lifetime.value !== "custom"; });
  const createErr = h("div", { id: "token-create-error" });
  const created = h("div", { id: "token-created" });
  const form = h("form", { class: "card", id: "token-form", "aria-labelledby": "token-form-title" },
    h("h2", { id: "token-form-title" }, "Generate a new token"),
    h("div", { class: "row" }, field("Comment", comment, "What the token is for: shown in the list below.").wrap,
      field("Lifetime", lifetime).wrap, customWrap),
    createErr,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "token-create" }, "Generate token")));
  const listBox = h("div");
  const listErr = h("div");
  const mine = h("section", { class: "card", "aria-labelledby": "tokens-title" },
    h("h2", { id: "tokens-title" }, "Your tokens"), listErr, listBox);
  main.append(form, created, mine);

  const revoke = async (info, url, opts) => {
    const what = info.comment ? `"${info.comment}"` : info.token_id;
    const session = info.comment === SESSION_COMMENT;
    const warn = session ? " If it is the session you are using, you are signed out." : " Anything using it is refused from then on.";
    if (!confirm(`Revoke token ${what}?${warn}`)) return;
    listErr.replaceChildren();
    try {
      await api(url, opts);
      toast("Token revoked");
      await load();
    } catch (e) { listErr.append(errorBox(e)); }
  };

  const load = async () => {
    const infos = ((await api(`${TOKEN}/list`)).token_infos || []).sort((a, b) => b.creation_time - a.creation_time);
    listBox.replaceChildren(tokenTable("tokens", ["Comment", "Token id", "Created", "Expires", ""], infos.map((t) => {
      const btn = h("button", { type: "button", class: "danger", "data-revoke": t.token_id, "aria-label": `Revoke token ${t.comment || t.token_id}` }, "Revoke");
      btn.addEventListener("click", () => revoke(t, `${TOKEN}/delete`, { method: "POST", body: { token_id: t.token_id } }));
      return h("tr", { "data-token-id": t.token_id },
        h("td", { "data-label": "Comment" }, t.comment || h("span", { class: "muted" }, "(none)"),
          t.comment === SESSION_COMMENT ? h("span", { class: "muted" }, " — a console sign-in") : ""),
        h("td", { "data-label": "Token id" }, h("code", {}, t.token_id)),
        h("td", { "data-label": "Created" }, fmtTime(t.creation_time)),
        h("td", { "data-label": "Expires" }, expiryCell(t.expiry_time)),
        h("td", {}, btn));
    })));
    if (me.is_admin) await loadAll();
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    createErr.replaceChildren();
    const body = {};
    if (comment.value.trim()) body.comment = comment.value.trim();
    if (lifetime.value === "custom") {
      if (!/^\d+$/.test(custom.value.trim())) {
        createErr.append(errorBox("Give the lifetime as a whole number of seconds."));
        custom.focus();
        return;
      }
      body.lifetime_seconds = Number(custom.value.trim());
    } else if (lifetime.value !== "-1") body.lifetime_seconds = Number(lifetime.value);
    try {
      const res = await api(`${TOKEN}/create`, { method: "POST", body });
      showValue(res);
      form.reset();
      customWrap.hidden = true;
      lifetime.value = "7776000";
      await load();
    } catch (e) { createErr.append(errorBox(e)); }
  });

  const showValue = (res) => {
    const value = h("input", { type: "text", id: "new-token-value", readonly: true, value: res.token_value, autocomplete: "off", spellcheck: "false" });
    const copy = h("button", { type: "button", class: "secondary", id: "copy-token" }, "Copy");
    copy.addEventListener("click", async () => {
      value.select();
      try { await navigator.clipboard.writeText(value.value); toast("Token copied"); } catch { toast("Copy failed: select the text and copy it"); }
    });
    const done = h("button", { type: "button", id: "token-done" }, "I have copied it");
    done.addEventListener("click", () => { created.replaceChildren(); document.getElementById("token-create").focus(); });
    const title = h("h2", { id: "new-token-title", tabindex: "-1" }, "Your new token");
    created.replaceChildren(h("section", { class: "card notice", "aria-labelledby": "new-token-title" },
      title,
      h("p", { role: "alert", id: "token-warning" }, "Copy this token now and keep it somewhere safe: it is not shown again. Anyone with it can act as you until it expires or you revoke it."),
      field("Token value", value).wrap,
      h("p", { class: "muted" }, `Token id ${res.token_info.token_id} · expires: `, expiryCell(res.token_info.expiry_time)),
      h("div", { class: "actions" }, copy, done)));
    title.focus();
  };

  // ---- admins: every principal's tokens ----
  let allBox = null;
  const loadAll = async () => {
    if (!allBox) {
      allBox = h("div");
      main.append(h("section", { class: "card", "aria-labelledby": "all-tokens-title", id: "all-tokens-card" },
        h("h2", { id: "all-tokens-title" }, "Every principal's tokens"),
        h("p", { class: "muted" }, "Admins only (token management): tokens of every user and service principal."), allBox));
    }
    try {
      const infos = ((await api(MANAGEMENT)).token_infos || []).sort((a, b) => b.creation_time - a.creation_time);
      allBox.replaceChildren(tokenTable("all-tokens", ["Owner", "Comment", "Created by", "Created", "Expires", ""], infos.map((t) => {
        const btn = h("button", { type: "button", class: "danger", "data-revoke-any": t.token_id, "aria-label": `Revoke token ${t.comment || t.token_id} of ${t.owner_name}` }, "Revoke");
        btn.addEventListener("click", () => revoke(t, `${MANAGEMENT}/${encodeURIComponent(t.token_id)}`, { method: "DELETE" }));
        return h("tr", { "data-token-id": t.token_id },
          h("td", { "data-label": "Owner" }, t.owner_name || String(t.owner_id)),
          h("td", { "data-label": "Comment" }, t.comment || h("span", { class: "muted" }, "(none)")),
          h("td", { "data-label": "Created by" }, t.created_by_username || "–"),
          h("td", { "data-label": "Created" }, fmtTime(t.creation_time)),
          h("td", { "data-label": "Expires" }, expiryCell(t.expiry_time)),
          h("td", {}, btn));
      })));
    } catch (e) { allBox.replaceChildren(errorBox(e)); }
  };

  try { await load(); } catch (e) { listErr.append(errorBox(e)); }
}

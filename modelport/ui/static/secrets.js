// Secret scopes (#/secrets, #/secrets/<scope>): scopes, the keys of one (names and last update,
// never values: the page never reads a secret), putting a key (the value goes in a password field
// and is only ever sent), deleting keys and scopes, and the scope's ACLs (READ / WRITE / MANAGE).
// Databricks' secrets API: /api/2.0/secrets/*.

import { api, enc, errorBox, field, fmtTime, h, select, toast, ui } from "./core.js";

const S = "/api/2.0/secrets";
const LEVELS = ["READ", "WRITE", "MANAGE"];

function table(id, columns, rows, empty) {
  return h("div", { class: "table-wrap" }, h("table", { class: "responsive", id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)))));
}

export async function secretsPage(scope) {
  const main = ui.view;
  document.title = scope ? `${scope} · Secrets · modelport` : "Secrets · modelport";
  main.append(h("h1", {}, "Secret scopes"),
    h("p", { class: "muted" }, "Secrets hold credentials endpoints use (referenced as {{secrets/<scope>/<key>}} in an external model's config). This page shows key names only: values can be written, never read back here."));

  // ---- scopes ----
  const listErr = h("div", { id: "scopes-error" });
  const listBox = h("div");
  const name = h("input", { type: "text", id: "scope-name", required: true, autocomplete: "off", maxlength: "128" });
  const manager = select([["", "Only me (the creator)"], ["users", "All users"]]);
  manager.id = "scope-manager";
  const createErr = h("div", { id: "scope-create-error" });
  const form = h("form", { id: "scope-form", "aria-labelledby": "scope-form-title" },
    h("h3", { id: "scope-form-title" }, "New scope"),
    h("div", { class: "row" }, field("Scope name", name, "Letters, digits, dashes, underscores and periods.").wrap,
      field("Who may manage it", manager).wrap,
      h("div", { style: "flex:0" }, h("button", { type: "submit", id: "scope-create" }, "Create scope"))),
    createErr);
  const detail = h("div", { id: "scope-detail" });
  main.append(h("section", { class: "card", "aria-labelledby": "scopes-title" },
    h("h2", { id: "scopes-title" }, "Scopes"), listErr, listBox, form), detail);

  const loadScopes = async () => {
    const scopes = ((await api(`${S}/scopes/list`)).scopes || []).sort((a, b) => a.name.localeCompare(b.name));
    listBox.replaceChildren(table("scopes", ["Scope", "Backend", ""], scopes.map((s) => {
      const del = h("button", { type: "button", class: "danger", "data-delete-scope": s.name, "aria-label": `Delete scope ${s.name}` }, "Delete");
      del.addEventListener("click", () => deleteScope(s.name));
      return h("tr", { "data-scope": s.name, "aria-current": s.name === scope ? "true" : false },
        h("td", { "data-label": "Scope" }, h("a", { href: `#/secrets/${enc(s.name)}` }, s.name)),
        h("td", { "data-label": "Backend" }, s.backend_type || "DATABRICKS"),
        h("td", {}, del));
    }), "No secret scopes yet."));
  };

  const deleteScope = async (s) => {
    if (!confirm(`Delete scope ${s} and every secret in it? Endpoints that reference them fail on their next start.`)) return;
    listErr.replaceChildren();
    try {
      await api(`${S}/scopes/delete`, { method: "POST", body: { scope: s } });
      toast(`Deleted scope ${s}`);
      if (s === scope) location.hash = "#/secrets";
      else await loadScopes();
    } catch (e) { listErr.append(errorBox(e)); }
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    createErr.replaceChildren();
    const body = { scope: name.value.trim() };
    if (manager.value) body.initial_manage_principal = manager.value;
    try {
      await api(`${S}/scopes/create`, { method: "POST", body });
      toast(`Created scope ${body.scope}`);
      location.hash = `#/secrets/${enc(body.scope)}`;
    } catch (e) { createErr.append(errorBox(e)); }
  });

  try { await loadScopes(); } catch (e) { listErr.append(errorBox(e)); }
  if (scope) await drawScope(detail, scope);
}

async function drawScope(detail, scope) {
  const title = h("h2", { id: "scope-title", tabindex: "-1" }, `Scope ${scope}`);
  // ---- keys ----
  const keysErr = h("div", { id: "keys-error" });
  const keysBox = h("div");
  const key = h("input", { type: "text", id: "secret-key", required: true, autocomplete: "off", maxlength: "128" });
  // write-only: never filled from the server, emptied after each put
  const value = h("input", { type: "password", id: "secret-value", required: true, autocomplete: "new-password", spellcheck: "false" });
  const putErr = h("div", { id: "secret-put-error" });
  const put = h("form", { id: "secret-form", "aria-labelledby": "secret-form-title" },
    h("h3", { id: "secret-form-title" }, "Put a secret"),
    h("div", { class: "row" }, field("Key", key, "An existing key is overwritten.").wrap,
      field("Value", value, "Write-only: it is stored encrypted and never shown.").wrap,
      h("div", { style: "flex:0" }, h("button", { type: "submit", id: "secret-put" }, "Save secret"))),
    putErr);
  // ---- ACLs ----
  const aclErr = h("div", { id: "acl-error" });
  const aclBox = h("div");
  const principal = h("input", { type: "text", id: "acl-principal", required: true, autocomplete: "off", placeholder: "user, group or service principal" });
  const level = select(LEVELS, "READ");
  level.id = "acl-permission";
  const aclFormErr = h("div", { id: "acl-put-error" });
  const aclForm = h("form", { id: "acl-form", "aria-labelledby": "acl-form-title" },
    h("h3", { id: "acl-form-title" }, "Grant or change a permission"),
    h("div", { class: "row" }, field("Principal", principal).wrap, field("Permission", level).wrap,
      h("div", { style: "flex:0" }, h("button", { type: "submit", id: "acl-put" }, "Save permission"))),
    aclFormErr);
  detail.replaceChildren(
    h("section", { class: "card", "aria-labelledby": "scope-title", "data-scope-detail": scope },
      title, h("h3", {}, "Keys"), keysErr, keysBox, put),
    h("section", { class: "card", "aria-labelledby": "acls-title" },
      h("h2", { id: "acls-title" }, "Permissions"),
      h("p", { class: "muted" }, "READ lists keys and reads values through the API (endpoints, jobs); WRITE also puts and deletes keys; MANAGE also changes these permissions and deletes the scope. Admins hold every permission."),
      aclErr, aclBox, aclForm));

  const loadKeys = async () => {
    keysErr.replaceChildren();
    try {
      const found = ((await api(`${S}/list?scope=${enc(scope)}`)).secrets || []).sort((a, b) => a.key.localeCompare(b.key));
      keysBox.replaceChildren(table("secret-keys", ["Key", "Last updated", ""], found.map((s) => {
        const del = h("button", { type: "button", class: "danger", "data-delete-key": s.key, "aria-label": `Delete secret ${s.key}` }, "Delete");
        del.addEventListener("click", async () => {
          if (!confirm(`Delete secret ${s.key} from ${scope}?`)) return;
          keysErr.replaceChildren();
          try {
            await api(`${S}/delete`, { method: "POST", body: { scope, key: s.key } });
            toast(`Deleted ${s.key}`);
            await loadKeys();
          } catch (e) { keysErr.append(errorBox(e)); }
        });
        return h("tr", { "data-key": s.key },
          h("td", { "data-label": "Key" }, h("code", {}, s.key)),
          h("td", { "data-label": "Last updated" }, fmtTime(s.last_updated_timestamp)),
          h("td", {}, del));
      }), "No secrets in this scope."));
    } catch (e) { keysBox.replaceChildren(); keysErr.append(errorBox(e)); }
  };

  const loadAcls = async () => {
    aclErr.replaceChildren();
    try {
      const items = ((await api(`${S}/acls/list?scope=${enc(scope)}`)).items || []).sort((a, b) => a.principal.localeCompare(b.principal));
      aclBox.replaceChildren(table("scope-acls", ["Principal", "Permission", ""], items.map((a) => {
        const del = h("button", { type: "button", class: "danger", "data-delete-acl": a.principal, "aria-label": `Remove ${a.principal}'s permission` }, "Remove");
        del.addEventListener("click", async () => {
          if (!confirm(`Remove ${a.principal}'s ${a.permission} permission on ${scope}?`)) return;
          aclErr.replaceChildren();
          try {
            await api(`${S}/acls/delete`, { method: "POST", body: { scope, principal: a.principal } });
            toast(`Removed ${a.principal}`);
            await loadAcls();
          } catch (e) { aclErr.append(errorBox(e)); }
        });
        return h("tr", { "data-principal": a.principal },
          h("td", { "data-label": "Principal" }, a.principal),
          h("td", { "data-label": "Permission" }, h("span", { "data-permission": a.permission }, a.permission)),
          h("td", {}, del));
      }), "No permissions granted."));
      aclForm.hidden = false;
    } catch (e) {
      aclBox.replaceChildren();
      aclForm.hidden = true; // changing them needs MANAGE too: the same refusal
      aclErr.append(errorBox(e));
    }
  };

  put.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    putErr.replaceChildren();
    const body = { scope, key: key.value.trim(), string_value: value.value };
    try {
      await api(`${S}/put`, { method: "POST", body });
      value.value = "";
      toast(`Saved ${body.key}`);
      key.value = "";
      await loadKeys();
      key.focus();
    } catch (e) { putErr.append(errorBox(e)); }
  });

  aclForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    aclFormErr.replaceChildren();
    try {
      await api(`${S}/acls/put`, { method: "POST", body: { scope, principal: principal.value.trim(), permission: level.value } });
      toast(`${principal.value.trim()}: ${level.value}`);
      principal.value = "";
      await loadAcls();
    } catch (e) { aclFormErr.append(errorBox(e)); }
  });

  await Promise.all([loadKeys(), loadAcls()]);
  title.focus();
}

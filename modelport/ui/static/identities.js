// Users, groups and service principals (#/admin), through the SCIM API (/api/2.0/preview/scim/v2):
// list and search, create, change group members, delete; which groups each user is in. Admins only
// (the API refuses others' writes; the page says so instead of offering forms that would fail).

import { api, arrowTabs, enc, errorBox, field, h, SESSION, toast, ui } from "./core.js";

const SCIM = "/api/2.0/preview/scim/v2";
const KINDS = [
  { key: "users", path: "Users", title: "Users", one: "user" },
  { key: "groups", path: "Groups", title: "Groups", one: "group" },
  { key: "sps", path: "ServicePrincipals", title: "Service principals", one: "service principal" },
];
const BUILT_IN = new Set(["admins", "users"]);

const nameOf = (p) => p.userName || p.applicationId || p.displayName;
const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

function table(id, columns, rows, empty) {
  return h("div", { class: "table-wrap" }, h("table", { class: "responsive", id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)))));
}

export async function identitiesPage() {
  const main = ui.view;
  document.title = "Users and groups · modelport";
  const me = await api(SESSION);
  main.append(h("h1", {}, "Users, groups and service principals"));
  if (!me.is_admin) {
    main.append(h("section", { class: "card", id: "admin-only" },
      h("p", { role: "status" }, `Only admins (members of the "admins" group) manage users, groups and service principals; ${me.user_name} is not one.`),
      h("p", {}, "You are in: ", me.groups.length ? me.groups.join(", ") : "no groups", "."),
      h("p", { class: "muted" }, "Ask an admin to add you to a group or to create a service principal for you. Your own tokens are on ", h("a", { href: "#/tokens" }, "My tokens"), ".")));
    return;
  }
  main.append(h("p", { class: "muted" }, "Principals of this server (SCIM API). Permissions on endpoints, tables, secret scopes and registered models are granted to these names."));

  const data = { users: [], groups: [], sps: [] };
  const loadAll = async () => {
    const answers = await Promise.all(KINDS.map((k) => api(`${SCIM}/${k.path}`)));
    KINDS.forEach((k, i) => { data[k.key] = (answers[i].Resources || []).sort((a, b) => nameOf(a).localeCompare(nameOf(b))); });
  };

  // principals known to the server, offered when naming a member
  const datalist = h("datalist", { id: "principal-names" });
  const search = h("input", { type: "search", id: "identity-search", placeholder: "name or group" });
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Principal kind" });
  const panel = h("section", { class: "card", role: "tabpanel", id: "identity-panel" });
  const detail = h("div", { id: "group-detail" });
  main.append(datalist, h("div", { class: "row" }, field("Search", search, "Filters the list by name, display name or group.").wrap), tabs, panel, detail);
  let current = "users";
  const buttons = KINDS.map((k) => {
    const b = h("button", { type: "button", role: "tab", id: `tab-${k.key}`, "aria-controls": "identity-panel", "aria-selected": "false" }, k.title);
    b.addEventListener("click", () => { current = k.key; draw(); });
    return b;
  });
  tabs.append(...buttons);
  arrowTabs(buttons);

  const matches = (p) => {
    const q = search.value.trim().toLowerCase();
    if (!q) return true;
    const names = [nameOf(p), p.displayName, ...(p.groups || []).map((g) => g.display)];
    return names.some((n) => String(n || "").toLowerCase().includes(q));
  };

  const remove = async (kind, p, err) => {
    if (!confirm(`Delete ${kind.one} ${nameOf(p)}? Their tokens stop working and their grants are removed.`)) return;
    err.replaceChildren();
    try {
      await api(`${SCIM}/${kind.path}/${enc(p.id)}`, { method: "DELETE" });
      toast(`Deleted ${nameOf(p)}`);
      if (kind.key === "groups") detail.replaceChildren();
      await refresh();
    } catch (e) { err.append(errorBox(e)); }
  };

  /** Deactivate or reactivate a user or service principal (SCIM PATCH of 'active'): a deactivated
   * principal keeps its tokens, groups and grants, but every request with its tokens is refused. */
  const setActive = async (kind, p, active, err) => {
    if (!active && !confirm(`Deactivate ${kind.one} ${nameOf(p)}? Every request with their tokens is refused until they are activated again.`)) return;
    err.replaceChildren();
    try {
      await api(`${SCIM}/${kind.path}/${enc(p.id)}`, { method: "PATCH", body: { schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], Operations: [{ op: "replace", path: "active", value: active }] } });
      toast(`${active ? "Activated" : "Deactivated"} ${nameOf(p)}`);
      await refresh();
    } catch (e) { err.append(errorBox(e)); }
  };

  const groupsCell = (p) => (p.groups || []).length ? p.groups.map((g) => g.display).join(", ") : h("span", { class: "muted" }, "none");

  const toggle = (kind, p, err) => {
    const active = p.active !== false;
    const b = h("button", { type: "button", class: "secondary", "data-active-toggle": nameOf(p), "aria-label": `${active ? "Deactivate" : "Activate"} ${kind.one} ${nameOf(p)}` }, active ? "Deactivate" : "Activate");
    b.addEventListener("click", () => setActive(kind, p, !active, err));
    return b;
  };

  const draw = () => {
    const kind = KINDS.find((k) => k.key === current);
    buttons.forEach((b, i) => {
      const on = KINDS[i].key === current;
      b.setAttribute("aria-selected", String(on));
      b.tabIndex = on ? 0 : -1;
    });
    panel.setAttribute("aria-labelledby", `tab-${current}`);
    const err = h("div", { id: "identity-error" });
    const rows = data[current].filter(matches).map((p) => {
      const del = BUILT_IN.has(nameOf(p)) && kind.key === "groups" ? "" :
        h("button", { type: "button", class: "danger", "aria-label": `Delete ${kind.one} ${nameOf(p)}`, "data-delete": nameOf(p) }, "Delete");
      if (del) del.addEventListener("click", () => remove(kind, p, err));
      if (kind.key === "groups") {
        const manage = h("button", { type: "button", class: "secondary", "data-members": nameOf(p), "aria-label": `Members of ${nameOf(p)}` }, "Members");
        manage.addEventListener("click", () => drawGroup(p.id));
        return h("tr", { "data-principal": nameOf(p) },
          h("td", { "data-label": "Group" }, nameOf(p)),
          h("td", { "data-label": "Members" }, String((p.members || []).length)),
          h("td", {}, h("div", { class: "actions" }, manage, del)));
      }
      return h("tr", { "data-principal": nameOf(p) },
        h("td", { "data-label": kind.key === "users" ? "User name" : "Application id" }, h("code", {}, nameOf(p))),
        h("td", { "data-label": "Display name" }, p.displayName || "–"),
        h("td", { "data-label": "Groups" }, groupsCell(p)),
        h("td", { "data-label": "Status" }, p.active === false ? h("span", { class: "badge state-notready" }, "Inactive") : h("span", { class: "badge state-ready" }, "Active")),
        h("td", {}, h("div", { class: "actions" }, toggle(kind, p, err), del)));
    });
    const columns = kind.key === "groups" ? ["Group", "Members", ""] :
      [kind.key === "users" ? "User name" : "Application id", "Display name", "Groups", "Status", ""];
    panel.replaceChildren(
      h("h2", {}, kind.title, h("span", { class: "muted" }, ` (${rows.length} of ${data[current].length})`)),
      table(`${kind.key}-table`, columns, rows, search.value.trim() ? "Nothing matches the search." : `No ${kind.title.toLowerCase()} yet.`),
      err,
      createForm(kind));
  };

  const createForm = (kind) => {
    const err = h("div", { id: `create-${kind.key}-error` });
    const fields = [];
    const name = h("input", { type: "text", id: `new-${kind.key}-name`, autocomplete: "off" });
    const display = h("input", { type: "text", id: `new-${kind.key}-display`, autocomplete: "off" });
    const groups = h("input", { type: "text", id: `new-${kind.key}-groups`, list: "principal-names", autocomplete: "off" });
    const admin = h("input", { type: "checkbox", id: `new-${kind.key}-admin` });
    if (kind.key === "users") {
      name.required = true;
      fields.push(field("User name", name, "Usually an e-mail address.").wrap, field("Display name", display).wrap,
        field("Groups", groups, "Comma separated, optional.").wrap);
    } else if (kind.key === "sps") {
      display.required = true;
      fields.push(field("Display name", display).wrap, field("Application id", name, "Leave empty for a generated UUID.").wrap,
        field("Groups", groups, "Comma separated, optional.").wrap);
    } else {
      name.required = true;
      fields.push(field("Group name", name).wrap, field("Members", groups, "Comma separated user, group or service principal names, optional.").wrap);
    }
    const submit = h("button", { type: "submit", id: `create-${kind.key}` }, `Create ${kind.one}`);
    const form = h("form", { id: `create-${kind.key}-form`, "aria-labelledby": `create-${kind.key}-title` },
      h("h3", { id: `create-${kind.key}-title` }, `New ${kind.one}`),
      h("div", { class: "row" }, fields),
      kind.key === "groups" ? "" : h("label", { class: "inline", for: admin.id }, admin, "Admin (member of the admins group)"),
      err, h("div", { class: "actions" }, submit));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      err.replaceChildren();
      let body;
      if (kind.key === "groups") body = { displayName: name.value.trim(), members: list(groups.value).map((value) => ({ value })) };
      else {
        body = { displayName: display.value.trim() || undefined, groups: list(groups.value).map((value) => ({ value })) };
        body[kind.key === "users" ? "userName" : "applicationId"] = name.value.trim() || undefined;
        if (admin.checked) body.modelport_admin = true;
      }
      try {
        const made = await api(`${SCIM}/${kind.path}`, { method: "POST", body });
        toast(`Created ${nameOf(made)}`);
        await refresh();
        document.getElementById(`new-${kind.key}-name`)?.focus();
      } catch (e) { err.append(errorBox(e)); }
    });
    return form;
  };

  const drawGroup = async (id) => {
    const err = h("div", { id: "members-error" });
    let group;
    try { group = await api(`${SCIM}/Groups/${enc(id)}`); } catch (e) { detail.replaceChildren(errorBox(e)); return; }
    const rows = (group.members || []).map((m) => {
      const rm = h("button", { type: "button", class: "danger", "data-remove-member": m.display, "aria-label": `Remove ${m.display} from ${group.displayName}` }, "Remove");
      rm.addEventListener("click", async () => {
        err.replaceChildren();
        try {
          await api(`${SCIM}/Groups/${enc(id)}`, { method: "PATCH", body: { schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], Operations: [{ op: "remove", path: `members[value eq "${m.value}"]` }] } });
          toast(`Removed ${m.display}`);
          await refresh();
          await drawGroup(id);
        } catch (e) { err.append(errorBox(e)); }
      });
      return h("tr", { "data-member": m.display }, h("td", { "data-label": "Member" }, m.display), h("td", {}, rm));
    });
    const who = h("input", { type: "text", id: "add-member-name", list: "principal-names", autocomplete: "off", required: true });
    const add = h("form", { id: "add-member-form" },
      h("div", { class: "row" }, field("Add a member", who, "A user, group or service principal name.").wrap,
        h("div", { style: "flex:0" }, h("button", { type: "submit", id: "add-member" }, "Add"))), err);
    add.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      err.replaceChildren();
      try {
        await api(`${SCIM}/Groups/${enc(id)}`, { method: "PATCH", body: { schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], Operations: [{ op: "add", path: "members", value: [{ value: who.value.trim() }] }] } });
        toast(`Added ${who.value.trim()}`);
        await refresh();
        await drawGroup(id);
        document.getElementById("add-member-name")?.focus();
      } catch (e) { err.append(errorBox(e)); }
    });
    const title = h("h2", { id: "group-title", tabindex: "-1" }, `Members of ${group.displayName}`);
    const focusTitle = !detail.contains(document.activeElement);
    detail.replaceChildren(h("section", { class: "card", "aria-labelledby": "group-title", "data-group": group.displayName },
      title, table("members-table", ["Member", ""], rows, "No members."), add));
    if (focusTitle) title.focus();
  };

  const refresh = async () => {
    await loadAll();
    datalist.replaceChildren(...["users", "groups", "sps"].flatMap((k) => data[k].map((p) => h("option", { value: nameOf(p) }))));
    draw();
  };
  search.addEventListener("input", draw);
  await refresh();
}

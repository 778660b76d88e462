// modelport serving console and AI playground: hand-written ES modules, no build step.
// Every page calls the same REST API as any client, with the session the user signed in with.
// This module is the router, the login page and the start; each page is a module of its own
// (endpoints.js, endpoint.js, create.js, playground.js, tables.js, audit.js, features.js, ...),
// the shared helpers are in core.js.

import { auditPage } from "./audit.js";
import { ApiError, csrfToken, errorBox, errorMessage, field, h, SESSION, ui } from "./core.js";
import { createPage } from "./create.js";
import { endpointPage } from "./endpoint.js";
import { endpointsPage } from "./endpoints.js";
import { featureTablePage, featureTablesPage } from "./features.js";
import { jobPage, jobsPage } from "./jobs.js";
import { monitorPage, monitorsPage } from "./monitors.js";
import { playgroundPage } from "./playground.js";
import { tablesPage } from "./tables.js";
import { usagePage } from "./usage.js";
import { identitiesPage } from "./identities.js";
import { modelPage, modelsPage } from "./models.js";
import { secretsPage } from "./secrets.js";
import { tokensPage } from "./tokens.js";

// MLflow's own UI routes (its run links are <server>/#/experiments/...): shown by /mlflow/.
const MLFLOW_HASH = /^#\/(experiments|models|compare-runs|compare-experiments|metric|prompts|logged-models)(\/|\?|$)/;
const root = document.getElementById("main");

// ---------- router ----------

const routes = [
  [/^#\/login$/, loginPage],
  [/^#\/endpoints$/, endpointsPage],
  [/^#\/endpoints\/([^/]+)$/, endpointPage],
  [/^#\/create$/, createPage],
  [/^#\/playground$/, playgroundPage],
  [/^#\/tables$/, tablesPage],
  [/^#\/tables\/([^/]+)$/, tablesPage],
  [/^#\/audit$/, auditPage],
  [/^#\/usage$/, usagePage],
  [/^#\/tokens$/, tokensPage],
  [/^#\/admin$/, identitiesPage],
  [/^#\/secrets$/, () => secretsPage()],
  [/^#\/secrets\/([^/]+)$/, secretsPage],
  [/^#\/registry$/, modelsPage],
  [/^#\/registry\/([^/]+)$/, modelPage],
  [/^#\/features$/, () => featureTablesPage(ui.view)],
  [/^#\/features\/([^/]+)$/, (name) => featureTablePage(ui.view, name)],
  [/^#\/jobs$/, () => jobsPage(ui.view)],
  [/^#\/jobs\/([^/]+)$/, (id) => jobPage(ui.view, id)],
  [/^#\/monitors$/, () => monitorsPage(ui.view)],
  [/^#\/monitors\/([^/]+)$/, (table) => monitorPage(ui.view, table)],
];

// Where to go instead of this UI: MLflow's UI for one of its links, or after signing in there.
function mlflowTarget() {
  if (MLFLOW_HASH.test(location.hash)) return `/mlflow/${location.hash}`;
  const bare = !location.hash || location.hash === "#/";
  if (bare && new URLSearchParams(location.search).get("next") === "/mlflow/") return `/mlflow/${location.hash}`;
  return null;
}

/** The session check of a page drawn before it (see render): a 401 goes to the login page. */
async function checkSession() {
  const res = await fetch(SESSION, { credentials: "same-origin" });
  if (res.status !== 401) return;
  sessionStorage.setItem("modelport.loginMessage", await errorMessage(res));
  ui.signedIn = false;
  if (location.hash !== "#/login") location.hash = "#/login";
}

async function render() {
  for (const c of ui.cleanups) c();
  ui.cleanups = [];
  let hash = location.hash || "#/endpoints";
  if (ui.signedIn === null) {
    if (csrfToken() && !mlflowTarget() && hash !== "#/login") {
      // The session's CSRF cookie is here: draw the page at once and ask about the session beside
      // it (one round trip less before the first paint). A session that has ended is answered 401
      // by whichever request comes first, which shows the login page with the reason.
      ui.signedIn = true;
      checkSession();
    } else {
      const res = await fetch(SESSION, { credentials: "same-origin" });
      ui.signedIn = res.ok;
      // a session that has expired or was revoked (its cookies are still here): say why
      if (res.status === 401 && csrfToken()) sessionStorage.setItem("modelport.loginMessage", await errorMessage(res));
    }
  }
  const mlflow = mlflowTarget();
  if (mlflow && ui.signedIn) {
    location.replace(mlflow);
    return;
  }
  if (!ui.signedIn && hash !== "#/login") {
    if (mlflow) sessionStorage.setItem("modelport.next", mlflow);
    location.hash = "#/login";
    return;
  }
  document.getElementById("nav").hidden = !ui.signedIn;
  document.getElementById("menu-toggle").hidden = !ui.signedIn;
  closeMenu();
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (hash.startsWith(`#/${a.dataset.nav}`)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (m) {
      const view = h("div", { class: "view" });
      root.replaceChildren(view);
      ui.view = view;
      try {
        await page(...m.slice(1).map(decodeURIComponent));
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) view.append(errorBox(err));
      }
      return;
    }
  }
  location.hash = "#/endpoints";
}

// ---------- login ----------

function loginPage() {
  const main = ui.view;
  document.title = "Log in · modelport";
  const input = h("input", { type: "password", id: "token", autocomplete: "current-password", required: true });
  const err = h("div");
  const pending = sessionStorage.getItem("modelport.loginMessage");
  if (pending) {
    err.append(errorBox(pending));
    sessionStorage.removeItem("modelport.loginMessage");
  }
  const form = h("form", { class: "card login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to modelport"),
    field("Access token", input, "A personal access token (dapi…) or the admin token.").wrap,
    err,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Log in")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const value = input.value.trim();
    try {
      const res = await fetch(SESSION, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: value }),
      });
      if (!res.ok) throw new Error(await errorMessage(res));
      ui.signedIn = true;
      const next = sessionStorage.getItem("modelport.next");
      sessionStorage.removeItem("modelport.next");
      if (next && next.startsWith("/mlflow/")) location.assign(next);
      else location.hash = "#/endpoints";
    } catch (e) {
      err.append(errorBox(e));
    }
  });
  main.append(form);
  input.focus();
}

// ---------- start ----------

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await fetch(SESSION, { method: "DELETE", credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken() } });
  } finally {
    ui.signedIn = false;
    location.hash = "#/login";
  }
});
// At narrow widths (app.css) the navigation folds behind a "Menu" button; a page change folds it.
const menuToggle = document.getElementById("menu-toggle");
function closeMenu() {
  document.querySelector("header.top").classList.remove("menu-open");
  menuToggle.setAttribute("aria-expanded", "false");
}
menuToggle.addEventListener("click", () => {
  const open = document.querySelector("header.top").classList.toggle("menu-open");
  menuToggle.setAttribute("aria-expanded", String(open));
});
window.addEventListener("hashchange", render);
render();

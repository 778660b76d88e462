// The endpoints list (#/endpoints): search, state filter, polled every 3 s.

import { api, enc, entitiesOf, entityDesc, EP, errorBox, every, field, fmtTime, h, select, stateBadge, stateOf, trafficText, ui } from "./core.js";

// ---------- endpoints list ----------

export async function endpointsPage() {
  const main = ui.view;
  document.title = "Endpoints · modelport";
  const search = h("input", { type: "search", id: "ep-search", placeholder: "name, model, creator" });
  const stateSel = select([["", "All states"], ["ready", "Ready"], ["updating", "Updating"], ["failed", "Failed"], ["notready", "Not ready"]]);
  stateSel.id = "ep-state";
  const body = h("tbody");
  const count = h("p", { class: "muted", "aria-live": "polite" });
  const err = h("div");
  let all = [];
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const st = stateSel.value;
    const rows = all.filter((ep) => {
      if (st && stateOf(ep)[0] !== st) return false;
      if (!q) return true;
      const hay = [ep.name, ep.creator, ...entitiesOf(ep).map((e) => `${e.name} ${entityDesc(e)}`)].join(" ").toLowerCase();
      return hay.includes(q);
    });
    count.textContent = `${rows.length} of ${all.length} endpoints`;
    body.replaceChildren(...rows.map((ep) => h("tr", { "data-endpoint": ep.name },
      h("td", { "data-label": "Name" }, h("a", { href: `#/endpoints/${enc(ep.name)}` }, ep.name)),
      h("td", { "data-label": "State" }, stateBadge(ep)),
      h("td", { "data-label": "Served entities" }, entitiesOf(ep).map((e) => h("div", {}, h("strong", {}, e.name || ""), " ", h("span", { class: "muted" }, entityDesc(e))))),
      h("td", { "data-label": "Traffic" }, trafficText(ep)),
      h("td", { "data-label": "Creator" }, ep.creator || "–"),
      h("td", { "data-label": "Last update" }, fmtTime(ep.last_updated_timestamp)))));
  };
  search.addEventListener("input", draw);
  stateSel.addEventListener("change", draw);
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Serving endpoints"), h("a", { href: "#/create", class: "button" }, "Create endpoint")),
    h("section", { class: "card" },
      h("div", { class: "row" }, field("Search", search).wrap, field("State", stateSel).wrap),
      count, err,
      h("div", { class: "table-wrap" }, h("table", { class: "responsive", id: "endpoints" },
        h("thead", {}, h("tr", {}, ["Name", "State", "Served entities", "Traffic", "Creator", "Last update"].map((t) => h("th", { scope: "col" }, t)))),
        body))));
  every(3000, async () => {
    try {
      all = ((await api(EP)).endpoints || []).sort((a, b) => a.name.localeCompare(b.name));
      err.replaceChildren();
      draw();
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
  }, main);
}

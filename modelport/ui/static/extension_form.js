// modelport's extension blocks of an endpoint's config as a form: shadow traffic (config.shadow:
// a served entity with 0% of the live traffic gets a copy of a share of the queries) and the
// rollout policy (config.rollout: the update moves traffic to a candidate step by step and rolls
// back on a breach). Both go with PUT .../serving-endpoints/{name}/config, with the served
// entities and the traffic split of the configuration card: "Check" sends it with
// ?dry_run=true and shows the changes the server answers, "Apply" sends it. See docs/rollouts.md.

import { api, field, h, select, toast } from "./core.js";
import { checkbox, clone, FieldErrors, numberValue } from "./gateway_form.js";

const DEFAULT_STEP_SECONDS = 300;

function show(v) {
  if (v === undefined || v === null) return "–";
  // one line, with spaces after the separators, so that a long value wraps between fields
  return typeof v === "string" ? v : JSON.stringify(v, null, 1).replace(/\n\s*/g, " ");
}

/** The dry run's answer: the config version it would make, its changes and the rollout plan. */
export function diffView(report) {
  const changes = report.diff || [];
  const plan = report.rollout;
  return h("div", { id: "config-diff", "data-changes": String(changes.length) },
    h("h4", {}, `Check passed: config version ${report.next_config_version ?? "?"} would change ${changes.length === 1 ? "1 thing" : `${changes.length} things`}`),
    changes.length ? h("div", { class: "table-wrap" }, h("table", { class: "responsive diff" },
      h("thead", {}, h("tr", {}, ["What", "Change", "Before", "After"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, changes.map((c) => h("tr", { "data-path": c.path, "data-change": c.change },
        h("td", { "data-label": "What" }, h("code", {}, c.path)),
        h("td", { "data-label": "Change" }, c.change),
        h("td", { "data-label": "Before" }, h("code", {}, show(c.before))),
        h("td", { "data-label": "After" }, h("code", {}, show(c.after)))))))) : h("p", { class: "muted" }, "Nothing would change."),
    plan ? h("p", { id: "config-diff-plan" }, `Rollout: ${plan.candidate} takes ${plan.steps.join("% → ")}% of the traffic from ${Object.keys(plan.incumbents || {}).join(", ")}; first step: `,
      (plan.first_traffic || []).map((r) => `${r.served_entity_name} ${r.traffic_percentage}%`).join(", "), ".") : "");
}

/**
 * Draw the shadow and rollout form into `box`.
 * - `cfg`: the config shown (detail.config or pending_config);
 * - `baseConfig()`: {served_entities, traffic_config} as the configuration card has them now;
 * - `problemsOf(config)`: the card's client-side checks of a config (list of texts);
 * - `trafficInputs`: {entity name: its traffic input}, for messages about a route;
 * - `url`: the endpoint's API URL; `refresh()`: redraw the page after an update.
 * Returns {onTraffic}: call it when the traffic inputs change (the shadow's choices follow).
 */
export function extensionForm(box, { cfg, baseConfig, problemsOf, trafficInputs, url, refresh }) {
  const names = (cfg.served_entities || []).map((e) => e.name);
  const shadowNow = cfg.shadow || null;
  const policyNow = cfg.rollout || null;
  const formErr = h("div", { "aria-live": "assertive", id: "extension-form-errors" });
  const errors = new FieldErrors(formErr);
  const result = h("div", { "aria-live": "polite", id: "extension-result" });
  const form = h("form", { id: "extension-form", novalidate: true, "aria-labelledby": "ext-title" });

  // shadow
  const shadowOn = checkbox("shadow-enabled", !!shadowNow, "Send a copy of the queries to a shadow");
  const shadowEntity = h("select", { id: "shadow-entity" });
  const shadowPct = h("input", { type: "number", id: "shadow-percentage", min: 0, max: 100, step: "any", value: shadowNow ? shadowNow.percentage : 100 });
  const shadowSet = h("fieldset", { id: "shadow-set" }, h("legend", {}, "Shadow traffic"),
    h("p", { class: "muted" }, "A served entity with 0% of the live traffic answers a copy of a share of the queries; its answers are recorded in the inference table (shadow_of) and never returned."),
    shadowOn.wrap,
    h("div", { class: "row" },
      field("Shadow entity (0% traffic)", shadowEntity).wrap,
      field("Share of the queries copied (%)", shadowPct, "Above 0, at most 100.").wrap));
  const onTraffic = () => {
    const routes = baseConfig().traffic_config.routes;
    const zero = routes.filter((r) => Number(r.traffic_percentage) === 0).map((r) => r.served_entity_name);
    const keep = shadowEntity.value || (shadowNow || {}).served_entity_name || "";
    const choices = zero.length ? zero : [];
    if (keep && !choices.includes(keep) && names.includes(keep)) choices.push(keep);
    shadowEntity.replaceChildren(...(choices.length ? choices : [""]).map((n) => h("option", { value: n }, n || "(no entity has 0% traffic)")));
    shadowEntity.value = choices.includes(keep) ? keep : (choices[0] || "");
  };
  onTraffic();
  errors.register("config.shadow", shadowSet);
  errors.register("config.shadow.served_entity_name", shadowEntity);
  errors.register("config.shadow.percentage", shadowPct);

  // rollout policy
  const p = policyNow || {};
  const ro = {
    on: checkbox("rollout-enabled", false, "Roll this update out step by step"),
    candidate: select([["", "The entity whose traffic this update raises"], ...names], p.candidate || ""),
    steps: h("input", { type: "text", value: (p.steps || [5, 25, 50, 100]).join(", "), autocomplete: "off" }),
    step_seconds: h("input", { type: "number", min: 1, step: 1, value: p.step_seconds ?? DEFAULT_STEP_SECONDS }),
    evaluation_seconds: h("input", { type: "number", min: 1, step: 1, value: p.evaluation_seconds ?? "" }),
    max_error_rate: h("input", { type: "number", min: 0, max: 1, step: "any", value: p.max_error_rate ?? "" }),
    max_p99_ms: h("input", { type: "number", min: 0, step: "any", value: p.max_p99_ms ?? "" }),
    min_agreement: h("input", { type: "number", min: 0, max: 1, step: "any", value: p.min_agreement ?? "" }),
    min_requests_per_step: h("input", { type: "number", min: 0, step: 1, value: p.min_requests_per_step ?? "" }),
    webhook_url: h("input", { type: "url", value: p.webhook_url || "", autocomplete: "off" }),
  };
  for (const [k, el] of Object.entries(ro)) {
    if (k === "on") continue;
    el.id = `rollout-${k.replace(/_/g, "-")}`;
    errors.register(`config.rollout.${k}`, el);
  }
  const rolloutSet = h("fieldset", { id: "rollout-set" }, h("legend", {}, "Rollout policy"),
    h("p", { class: "muted" }, "The candidate takes the traffic of the split above one step at a time; at the first breach of a limit the previous config comes back. Limits left empty are not checked."),
    ro.on.wrap,
    h("div", { class: "row" },
      field("Candidate", ro.candidate).wrap,
      field("Steps (% of the traffic, rising)", ro.steps, "Such as 5, 25, 50, 100; 100 is added when missing.").wrap),
    h("div", { class: "row" },
      field("Seconds per step", ro.step_seconds).wrap,
      field("Evaluate every (seconds)", ro.evaluation_seconds, "Empty: every 10 s (or each step).").wrap,
      field("Min requests per step", ro.min_requests_per_step).wrap),
    h("div", { class: "row" },
      field("Max error rate (0 to 1)", ro.max_error_rate).wrap,
      field("Max p99 latency (ms)", ro.max_p99_ms).wrap,
      field("Min agreement with the incumbents (0 to 1)", ro.min_agreement).wrap),
    field("Webhook URL (each decision is POSTed here)", ro.webhook_url).wrap);
  errors.register("config.rollout", rolloutSet);
  for (const [i, name] of names.entries()) {
    if (trafficInputs[name]) errors.register(`config.traffic_config.routes[${i}].traffic_percentage`, trafficInputs[name]);
  }

  const collect = (problems) => {
    const body = baseConfig();
    if (shadowOn.input.checked) {
      const s = clone(shadowNow && shadowNow.served_entity_name === shadowEntity.value ? shadowNow : {}) || {};
      s.served_entity_name = shadowEntity.value;
      if (!s.served_entity_name) problems.push([shadowEntity, "Choose the shadow: give a served entity 0% traffic first."]);
      const pct = numberValue(shadowPct, problems, { label: "The share", above: 0, max: 100, required: true });
      if (pct !== undefined) s.percentage = pct;
      body.shadow = s;
    }
    if (ro.on.input.checked) {
      const r = {};
      if (ro.candidate.value) r.candidate = ro.candidate.value;
      const steps = ro.steps.value.split(/[\s,;%]+/).filter(Boolean).map(Number);
      if (!steps.length) problems.push([ro.steps, "Give the steps, such as 5, 25, 50, 100."]);
      else if (steps.some((s) => !Number.isFinite(s) || s <= 0 || s > 100)) problems.push([ro.steps, "Each step must be a number above 0 and at most 100."]);
      else if (steps.some((s, i) => i && s <= steps[i - 1])) problems.push([ro.steps, "The steps must rise from one to the next."]);
      else r.steps = steps;
      const num = (k, opts) => {
        const v = numberValue(ro[k], problems, opts);
        if (v !== undefined && v !== null) r[k] = v;
        return v;
      };
      const stepSeconds = num("step_seconds", { label: "Seconds per step", min: 1, integer: true, required: true });
      num("evaluation_seconds", { label: "The evaluation interval", min: 1, max: stepSeconds || undefined, integer: true });
      num("max_error_rate", { label: "The error rate", min: 0, max: 1 });
      num("max_p99_ms", { label: "The p99 latency", above: 0 });
      num("min_agreement", { label: "The agreement", min: 0, max: 1 });
      num("min_requests_per_step", { label: "The requests per step", min: 0, integer: true });
      const hook = ro.webhook_url.value.trim();
      if (hook && !/^https?:\/\//.test(hook)) problems.push([ro.webhook_url, "The webhook must be an http:// or https:// URL."]);
      else if (hook) r.webhook_url = hook;
      body.rollout = r;
    }
    return body;
  };

  // Enter in a field checks (the safe default); Apply is a click of its own.
  const check = h("button", { type: "submit", class: "secondary", id: "check-config" }, "Check (dry run)");
  const apply = h("button", { type: "button", id: "apply-config" }, "Apply");
  const send = async (dryRun) => {
    errors.clear();
    result.replaceChildren();
    const problems = [];
    const body = collect(problems);
    if (problems.length) { errors.showProblems(problems); return; }
    const texts = problemsOf(body);
    if (texts.length) {
      formErr.append(h("div", { class: "error", role: "alert" }, h("strong", {}, "Not sent: "), h("ul", {}, texts.map((t) => h("li", {}, t)))));
      return;
    }
    check.disabled = true;
    apply.disabled = true;
    try {
      if (dryRun) {
        const report = await api(`${url}/config?dry_run=true`, { method: "PUT", body });
        result.replaceChildren(diffView(report));
      } else {
        await api(`${url}/config`, { method: "PUT", body });
        toast(body.rollout ? "Rollout started" : "Config update started");
        await refresh();
      }
    } catch (e) {
      errors.show(e);
    } finally {
      check.disabled = false;
      apply.disabled = false;
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); send(true); });
  apply.addEventListener("click", () => send(false));

  form.append(h("h3", { id: "ext-title" }, "Shadow traffic and rollout"),
    h("p", { class: "muted" }, "Sent with the served entities and the traffic split above as the next config version."),
    shadowSet, rolloutSet, formErr, h("div", { class: "actions" }, check, apply), result);
  box.append(form);
  return { onTraffic, form, collect, errors, buttons: [check, apply] };
}

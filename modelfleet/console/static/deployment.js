// One deployment: state, versions and weights, routing table, online test, live charts, events.
import { ApiError, badge, el, errorBox, get, request, table, when } from "./api.js";
import { liveCharts } from "./charts.js";

const REFRESH_MS = 3000;

function versionsTable(d) {
  return table(["Version", "Model", "Weight", "Allocations", "Threads / allocation"],
    d.versions.map((v) => [v.version_id, v.model_id, `${v.weight}%`, String(v.allocations), String(v.threads_per_allocation)]));
}

function routingTable(d) {
  const rows = [];
  for (const [node, routes] of Object.entries(d.routing_table)) {
    for (const r of routes) {
      rows.push([node, r.version_id, badge(r.routing_state), `${r.current_allocations} / ${r.target_allocations}`, r.reason || ""]);
    }
  }
  return rows.length
    ? table(["Node", "Version", "Routing state", "Allocations (current / target)", "Reason"], rows)
    : el("p", { class: "muted" }, "No allocations placed.");
}

function eventsTable(events) {
  return events.length
    ? table(["At", "Event", "From → to", "Reason"], events.slice().reverse().map((e) =>
      [when(e.at), e.type + (e.node_id ? ` (${e.node_id})` : ""), `${e.from_state || "—"} → ${e.to_state || "—"}`, e.reason || ""]))
    : el("p", { class: "muted" }, "No events.");
}

// A starting value for a tensor of `shape`: zeros, dynamic dimensions taken as 1.
function sampleValue(spec) {
  const dims = spec.shape.map((n) => (n < 0 ? 1 : n));
  const leaf = spec.datatype === "BYTES" ? "text" : spec.datatype === "BOOL" ? false : 0;
  const build = (i) => (i === dims.length ? leaf : Array.from({ length: dims[i] }, () => build(i + 1)));
  return build(0);
}

function shapeOf(value) {
  const shape = [];
  let v = value;
  while (Array.isArray(v)) {
    shape.push(v.length);
    v = v[0];
  }
  return shape;
}

// For outputs of one row of scores, the index of the highest: what a classifier predicts.
function predictions(outputs) {
  return outputs.filter((o) => o.data.length > 1 && o.shape.length === 2 && o.shape[0] === 1 && typeof o.data[0] === "number")
    .map((o) => {
      const best = o.data.reduce((bi, v, i, a) => (v > a[bi] ? i : bi), 0);
      return el("span", { class: "badge", dataset: { output: o.name, argmax: String(best) } }, `${o.name}: argmax ${best}`);
    });
}

// The online test: a form built from the model's OIP input signature.
async function testForm(deploymentId) {
  let meta;
  try {
    meta = await get(`/v2/models/${encodeURIComponent(deploymentId)}`);
  } catch (e) {
    return el("p", { class: "muted" }, `No online test: ${e.message}`);
  }
  const fields = meta.inputs.map((spec) => {
    const area = el("textarea", { id: `test-input-${spec.name}`, name: spec.name, spellcheck: "false" });
    area.value = JSON.stringify(sampleValue(spec));
    return { spec, area };
  });
  const result = el("pre", { id: "test-result", hidden: true });
  const prediction = el("p", { id: "test-prediction" });
  const latency = el("p", { id: "test-latency", class: "muted" });
  const failure = el("div", { id: "test-error" });
  const run = el("button", { id: "test-run", type: "submit" }, "Run inference");
  const form = el("form", { id: "test-form" },
    fields.map(({ spec, area }) => el("div", { class: "field" },
      el("label", { for: area.id }, `${spec.name} · ${spec.datatype} · shape [${spec.shape.join(", ")}]`), area)),
    run, latency, failure, prediction, result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    failure.replaceChildren();
    run.disabled = true;
    try {
      const inputs = fields.map(({ spec, area }) => {
        let value;
        try { value = JSON.parse(area.value); } catch (e) { throw new Error(`${spec.name}: not JSON (${e.message})`); }
        const data = Array.isArray(value) ? value.flat(Infinity) : [value];
        return { name: spec.name, datatype: spec.datatype, shape: Array.isArray(value) ? shapeOf(value) : [1], data };
      });
      const answer = await request("POST", `/v2/models/${encodeURIComponent(deploymentId)}/infer`, { inputs });
      const version = answer.headers.get("x-model-version");
      latency.textContent = `${answer.elapsed.toFixed(1)} ms` + (version ? ` · version ${version}` : "");
      latency.dataset.ms = answer.elapsed.toFixed(3);
      result.textContent = JSON.stringify(answer.body.outputs, null, 1);
      prediction.replaceChildren(...predictions(answer.body.outputs));
      result.hidden = false;
    } catch (e) {
      failure.replaceChildren(errorBox(e));
    } finally {
      run.disabled = false;
    }
  });
  return form;
}

export async function deploymentPage(main, deploymentId) {
  let d;
  try {
    d = await get(`/api/v1/deployments/${encodeURIComponent(deploymentId)}`);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 403)) {
      main.replaceChildren(el("h1", {}, deploymentId),
        el("p", { class: "error-message", id: "refused", role: "alert" },
          `Deployment '${deploymentId}' was not found in your project.`));
      return;
    }
    throw e;
  }
  const state = el("span", { id: "deployment-state" });
  const reason = el("p", { class: "muted", id: "deployment-reason" });
  const versions = el("div", { id: "versions" });
  const routing = el("div", { id: "routing-table" });
  const events = el("div", { id: "events" });
  const show = (view, history) => {
    state.replaceChildren(badge(view.state));
    state.dataset.state = view.state;
    reason.textContent = view.reason || "";
    versions.replaceChildren(versionsTable(view));
    routing.replaceChildren(routingTable(view));
    if (history) events.replaceChildren(eventsTable(history));
  };
  const history = await get(`/api/v1/deployments/${encodeURIComponent(deploymentId)}/events`).then((b) => b.events, () => []);
  show(d, history);
  const charts = liveCharts(deploymentId);
  main.replaceChildren(
    el("h1", {}, `Deployment ${d.deployment_id} `, state),
    reason,
    el("p", { class: "muted" }, `${d.kind} · priority ${d.priority} · queue ${d.queue_capacity} · batch ≤ ${d.max_batch_size} · `,
      el("code", {}, `POST ${d.inference_url}`)),
    el("section", { class: "card" }, el("h2", {}, "Versions and weights"), versions),
    el("section", { class: "card" }, el("h2", {}, "Routing table"), routing),
    el("section", { class: "card", id: "online-test" }, el("h2", {}, "Online test"), await testForm(deploymentId)),
    el("section", { class: "card" }, el("h2", {}, "Live monitoring"), charts.element),
    el("section", { class: "card" }, el("h2", {}, "Event history"), events));
  charts.start();
  const timer = setInterval(async () => {
    try {
      const [view, h] = await Promise.all([
        get(`/api/v1/deployments/${encodeURIComponent(deploymentId)}`),
        get(`/api/v1/deployments/${encodeURIComponent(deploymentId)}/events`).then((b) => b.events),
      ]);
      show(view, h);
    } catch (e) {
      reason.replaceChildren(errorBox(e));
    }
  }, REFRESH_MS);
  return () => {
    clearInterval(timer);
    charts.stop();
  };
}

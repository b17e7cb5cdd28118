// The console's router and list pages. Pages are paths under /console (the gateway serves the
// same shell for each); links marked data-nav change pages without a reload.
import { ApiError, badge, el, errorBox, get, request, session, table, when } from "./api.js";
import { deploymentPage } from "./deployment.js";

const main = document.getElementById("main");
let leave = () => {}; // the current page's clean-up (timers)

export function go(path) {
  history.pushState({}, "", path);
  route();
}

function link(href, text) {
  return el("a", { href, "data-nav": true }, text);
}

function setPage(...children) {
  main.replaceChildren(...children);
}

async function loginPage(message) {
  const input = el("input", { id: "login-key", type: "password", autocomplete: "off", placeholder: "mfk_…:…" });
  const form = el("form", { class: "login card", id: "login-form" },
    el("h1", {}, "Log in"),
    el("p", { class: "muted" }, "With an API key (id:secret). It stays in this tab only and you see its project only."),
    message ? errorBox(message) : null,
    el("div", { class: "field" }, el("label", { for: "login-key" }, "API key"), input),
    el("button", { id: "login-submit", type: "submit" }, "Log in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    session.set(input.value.trim());
    try {
      await get("/console/api/whoami");
      const next = new URLSearchParams(location.search).get("next");
      go(next && next.startsWith("/console/") ? next : "/console/deployments");
    } catch (e) {
      session.clear();
      loginPage(e);
    }
  });
  setPage(form);
  input.focus();
}

async function deploymentsPage() {
  const { deployments } = await get("/api/v1/deployments");
  const rows = deployments.map((d) => [
    link(`/console/deployments/${encodeURIComponent(d.deployment_id)}`, d.deployment_id),
    d.kind,
    badge(d.state),
    d.versions.map((v) => `${v.version_id} (${v.weight}%)`).join(", "),
    d.versions.map((v) => `${v.allocations}×${v.threads_per_allocation}`).join(", "),
    when(d.updated_at),
  ]);
  setPage(el("h1", {}, "Deployments and services"),
    el("section", { class: "card" }, rows.length
      ? table(["Deployment", "Kind", "State", "Versions (weight)", "Allocations × threads", "Updated"], rows)
      : el("p", { class: "muted", id: "empty" }, "No deployments yet.")));
}

async function nodesPage() {
  const { nodes } = await get("/api/v1/nodes");
  // edge nodes report the revision they run; cloud nodes have none
  const rows = nodes.map((n) => [n.node_id, n.kind, badge(n.state), String(n.processors),
    `${(n.memory_bytes / 2 ** 30).toFixed(1)} GiB`, n.pool || "—", n.revision ?? "—", when(n.last_heartbeat),
    when(n.registered_at)]);
  setPage(el("h1", {}, "Nodes"), el("section", { class: "card" },
    table(["Node", "Kind", "State", "Processors", "Memory", "Pool", "Revision", "Last heartbeat", "Registered"], rows)));
}

// Pipelines live in their own face (/mlops); a platform without it answers 404 there.
const PIPELINES = "/mlops/api/v1";

async function pipelinesOrNothing(render) {
  try {
    return await render();
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && e.code === "route_not_found") {
      setPage(el("h1", {}, "Pipelines"), el("p", { class: "muted" }, "This platform runs no pipelines."));
      return;
    }
    throw e;
  }
}

function executionRows(items) {
  return items.map((x) => [link(`/console/executions/${encodeURIComponent(x.execution_id)}`, x.execution_id),
    badge(x.status), x.deployment_name || "—", x.pipeline_name || "—", when(x.created_at), when(x.end_date), x.error || ""]);
}

const EXECUTION_HEADERS = ["Execution", "Status", "Deployment", "Pipeline", "Created", "Ended", "Error"];

async function pipelinesPage() {
  return pipelinesOrNothing(async () => {
    const deployments = await get(`${PIPELINES}/deployments`);
    const rows = deployments.map((d) => [link(`/console/pipelines/${encodeURIComponent(d.name)}`, d.name),
      d.pipeline_name, d.execution_rule, d.mode, badge(d.status), d.is_enabled ? "yes" : "no", when(d.created_at)]);
    setPage(el("h1", {}, "Pipeline deployments"), el("section", { class: "card" }, rows.length
      ? table(["Deployment", "Pipeline", "Rule", "Mode", "Status", "Enabled", "Created"], rows)
      : el("p", { class: "muted" }, "No pipeline deployments yet.")));
  });
}

async function pipelineDeploymentPage(name) {
  return pipelinesOrNothing(async () => {
    const d = await get(`${PIPELINES}/deployments/${encodeURIComponent(name)}`);
    const items = await get(`${PIPELINES}/deployments/${encodeURIComponent(name)}/executions`);
    setPage(el("h1", {}, `Pipeline deployment ${d.name} `, badge(d.status)),
      el("p", { class: "muted" }, `pipeline ${d.pipeline.name} · ${d.execution_rule} · ${d.mode}`, d.reason ? ` · ${d.reason}` : ""),
      el("section", { class: "card" }, el("h2", {}, "Executions"),
        items.length ? table(EXECUTION_HEADERS, executionRows(items)) : el("p", { class: "muted" }, "No executions yet.")));
  });
}

async function executionsPage() {
  return pipelinesOrNothing(async () => {
    const deployments = await get(`${PIPELINES}/deployments`);
    const lists = await Promise.all(deployments.map((d) => get(`${PIPELINES}/deployments/${encodeURIComponent(d.name)}/executions`)));
    const items = lists.flat().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    setPage(el("h1", {}, "Executions"), el("section", { class: "card" },
      items.length ? table(EXECUTION_HEADERS, executionRows(items)) : el("p", { class: "muted" }, "No executions yet.")));
  });
}

async function executionPage(id) {
  return pipelinesOrNothing(async () => {
    const x = await get(`${PIPELINES}/executions/${encodeURIComponent(id)}?include_io_values=false`);
    const logs = el("pre", { id: "execution-logs" });
    const show = async () => {
      const pages = (await request("POST", `${PIPELINES}/executions/${encodeURIComponent(id)}/logs`, {})).body;
      logs.textContent = pages.flat().map((l) => `${l.timestamp} ${l.message}`).join("\n") || "(no log lines yet)";
    };
    await show();
    setPage(el("h1", {}, `Execution ${id} `, badge(x.status || "")),
      el("p", { class: "muted" }, `deployment ${x.deployment_name || "—"} · pipeline ${x.pipeline_name || "—"}`),
      el("section", { class: "card" }, el("h2", {}, "Log"), logs));
    const timer = setInterval(() => show().catch(() => {}), 2000);
    return () => clearInterval(timer);
  });
}

const PAGES = [
  [/^\/console\/deployments\/([^/]+)$/, (m) => deploymentPage(main, decodeURIComponent(m[1]))],
  [/^\/console\/(deployments)?\/?$/, () => deploymentsPage()],
  [/^\/console\/nodes$/, () => nodesPage()],
  [/^\/console\/executions$/, () => executionsPage()],
  [/^\/console\/executions\/([^/]+)$/, (m) => executionPage(decodeURIComponent(m[1]))],
  [/^\/console\/pipelines$/, () => pipelinesPage()],
  [/^\/console\/pipelines\/([^/]+)$/, (m) => pipelineDeploymentPage(decodeURIComponent(m[1]))],
];

async function route() {
  leave();
  leave = () => {};
  const path = location.pathname.replace(/\/+$/, "") || "/console";
  const loggedIn = Boolean(session.key());
  document.getElementById("nav").hidden = !loggedIn;
  document.getElementById("logout").hidden = !loggedIn;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", path.startsWith(a.getAttribute("href")));
  if (!loggedIn || path === "/console/login") {
    document.getElementById("project").hidden = true;
    return loginPage();
  }
  try {
    const who = await get("/console/api/whoami");
    const badgeEl = document.getElementById("project");
    badgeEl.textContent = `project ${who.project_id}`;
    badgeEl.hidden = false;
    for (const [pattern, render] of PAGES) {
      const m = path.match(pattern);
      if (m) {
        const cleanup = await render(m);
        if (typeof cleanup === "function") leave = cleanup;
        return;
      }
    }
    setPage(el("h1", {}, "Not found"), el("p", { class: "error-message" }, "No such page."));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      session.clear();
      return loginPage(e);
    }
    setPage(errorBox(e));
  }
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-nav]");
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
  ev.preventDefault();
  go(a.getAttribute("href"));
});
document.getElementById("logout").addEventListener("click", () => {
  session.clear();
  go("/console/login");
});
window.addEventListener("popstate", route);
route();

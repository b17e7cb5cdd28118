// Live charts of one deployment from the platform's own stats: the gateway's per-second counts
// (requests/s, errors, 429s, p50/p99) and the nodes' heartbeat stats (queue depth, cache hits).
import { el, get } from "./api.js";

const POLL_MS = 1000;
const KEEP = 120; // seconds shown

function chart(title, series, id) {
  const holder = el("div", { class: "chart", id }, el("h3", {}, title));
  const opts = {
    width: 360, height: 180,
    scales: { x: { time: true } },
    series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 1.5, spanGaps: true, points: { size: 4 } }))],
    axes: [{}, { size: 50 }],
  };
  const plot = new uPlot(opts, [[], ...series.map(() => [])], holder);
  return { holder, plot };
}

export function liveCharts(deploymentId) {
  const traffic = chart("Requests per second", [["req/s", "#2f6fdf"], ["errors/s", "#c0392b"], ["429/s", "#b7791f"]], "chart-traffic");
  const latency = chart("Latency (ms)", [["p50", "#1e8e3e"], ["p99", "#8e44ad"]], "chart-latency");
  const nodes = chart("Nodes", [["queue depth", "#2f6fdf"], ["cache hits/s", "#16a085"]], "chart-nodes");
  const summary = el("p", { id: "chart-summary", class: "muted" }, "Waiting for data…");
  const element = el("div", {}, summary, el("div", { class: "charts" }, traffic.holder, latency.holder, nodes.holder));
  const nodeSeries = { t: [], queue: [], hits: [] };
  let lastHits = null;
  let lastAt = null;
  let timer = null;

  async function poll() {
    let data;
    try {
      data = await get(`/console/api/deployments/${encodeURIComponent(deploymentId)}/chart`);
    } catch (e) {
      summary.textContent = `No chart data: ${e.message}`;
      return;
    }
    const pts = data.points;
    const t = pts.map((p) => p.at);
    traffic.plot.setData([t, pts.map((p) => p.requests), pts.map((p) => p.errors), pts.map((p) => p.rejected)]);
    latency.plot.setData([t, pts.map((p) => p.p50_ms), pts.map((p) => p.p99_ms)]);
    const hitsPerSecond = lastHits === null ? 0 : Math.max(0, data.nodes.cache_hits - lastHits) / Math.max(1, data.at - lastAt);
    lastHits = data.nodes.cache_hits;
    lastAt = data.at;
    nodeSeries.t.push(Math.floor(data.at));
    nodeSeries.queue.push(data.nodes.queue_depth);
    nodeSeries.hits.push(hitsPerSecond);
    for (const k of Object.keys(nodeSeries)) nodeSeries[k] = nodeSeries[k].slice(-KEEP);
    nodes.plot.setData([nodeSeries.t, nodeSeries.queue, nodeSeries.hits]);
    const total = pts.reduce((n, p) => n + p.requests, 0);
    const errors = pts.reduce((n, p) => n + p.errors, 0);
    const rejected = pts.reduce((n, p) => n + p.rejected, 0);
    const p99 = pts.map((p) => p.p99_ms).filter((v) => v !== null);
    summary.dataset.requests = String(total);
    summary.dataset.updatedAt = String(data.at);
    summary.textContent = `${total} requests in the last ${KEEP / 60} minutes · ${errors} errors · ${rejected} × 429` +
      (p99.length ? ` · last p99 ${p99[p99.length - 1].toFixed(2)} ms` : "") +
      ` · queue depth ${data.nodes.queue_depth} · cache hits ${data.nodes.cache_hits}`;
  }

  return {
    element,
    start() {
      poll();
      timer = setInterval(poll, POLL_MS);
    },
    stop() {
      clearInterval(timer);
    },
  };
}

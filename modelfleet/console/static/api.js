// The console's one door to the platform: every call carries the API key of this browser tab's
// session (sessionStorage, never a cookie) as an Authorization header.
const KEY = "modelfleet.apiKey";

export const session = {
  key: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => { sessionStorage.removeItem(KEY); pipelinesToken = null; },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Native errors are {"error": {"code", "message"}}, OIP ones {"error": "...", "code": "..."},
// the pipelines face's {"message", "name"}.
function errorOf(status, body) {
  const err = body && body.error;
  if (err && typeof err === "object") return new ApiError(status, err.code || "", err.message || "error");
  if (typeof err === "string") return new ApiError(status, body.code || "", err);
  if (body && typeof body.message === "string") return new ApiError(status, body.name || "", body.message); // pipelines face
  return new ApiError(status, "http_error", `HTTP ${status}`);
}

// The pipelines face (/mlops) takes a short-lived access token the API key is exchanged for.
let pipelinesToken = null;

async function pipelinesAuthorization(renew) {
  if (!pipelinesToken || renew) {
    const response = await fetch("/mlops/api/v1/auth/refresh", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: session.key() || "" }),
    });
    const parsed = await response.json().catch(() => null);
    if (!response.ok) throw errorOf(response.status, parsed);
    pipelinesToken = parsed.access_token;
  }
  return `Bearer ${pipelinesToken}`;
}

export async function request(method, path, body, renewed = false) {
  const pipelines = path.startsWith("/mlops/");
  const authorization = pipelines ? await pipelinesAuthorization(renewed) : `Bearer ${session.key() || ""}`;
  const headers = { authorization };
  const init = { method, headers };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const started = performance.now();
  const response = await fetch(path, init);
  const elapsed = performance.now() - started;
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = null; }
  if (pipelines && response.status === 401 && !renewed) return request(method, path, body, true);
  if (!response.ok) throw errorOf(response.status, parsed);
  return { body: parsed, headers: response.headers, elapsed };
}

export async function get(path) {
  return (await request("GET", path)).body;
}

// A DOM element; children are nodes or strings (set as text, never parsed as HTML).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function badge(state) {
  return el("span", { class: `badge state-${state}` }, state);
}

export function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function errorBox(e) {
  return el("p", { class: "error-message", role: "alert" }, e instanceof ApiError ? `${e.message} (${e.status} ${e.code})` : String(e));
}

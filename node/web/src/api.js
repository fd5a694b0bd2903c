// The node's JSON API, same origin as this page. Errors carry the node's stable code.

export class ApiError extends Error {
  constructor(message, code, status, body) {
    super(message);
    this.code = code;
    this.status = status;
    this.body = body;
  }
}

async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(`cannot reach this node: ${error.message}`, "node_unreachable", 0);
  }
  let value = null;
  try {
    value = await response.json();
  } catch {
    value = null;
  }
  if (!response.ok) {
    const message = value?.error ?? `HTTP ${response.status}`;
    throw new ApiError(message, value?.code ?? "http_error", response.status, value);
  }
  return value;
}

export const api = {
  status: () => request("GET", "/v1/status"),
  genesis: () => request("GET", "/v1/genesis"),
  account: (id) => request("GET", `/v1/accounts/${encodeURIComponent(id)}`),
  history: (id, cursor) =>
    request("GET", `/v1/accounts/${encodeURIComponent(id)}/ops` +
      (cursor ? `?cursor=${encodeURIComponent(cursor)}` : "")),
  handle: (name) => request("GET", `/v1/handles/${encodeURIComponent(name)}`),
  op: (id) => request("GET", `/v1/ops/${encodeURIComponent(id)}`),
  hype: (top) => request("GET", `/v1/hype?top=${top}`),
  hypeTarget: (target) => request("GET", `/v1/hype/${encodeURIComponent(target)}`),
  checkpoint: (height) => request("GET", `/v1/checkpoints/${height}`),
  onboarding: () => request("GET", "/v1/onboarding"),
  signup: (body) => request("POST", "/v1/onboarding/signup", body),
  submit: (envelopeHex) => request("POST", "/v1/ops", { envelope: envelopeHex }),
};

// The live event stream for one account; reconnects with a growing delay when it drops, each
// time resuming after the last event id `sinceOf()` returns (the node replays what was missed,
// or sends a `gap` event when that is no longer retained).
export function openEvents(accountId, onEvent, onState, sinceOf = () => null) {
  let socket = null;
  let delay = 500;
  let stopped = false;
  const connect = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams();
    if (accountId) params.set("account", accountId);
    const since = sinceOf();
    if (since !== null && since !== undefined) params.set("since", String(since));
    const query = params.toString() ? `?${params}` : "";
    socket = new WebSocket(`${scheme}://${location.host}/v1/events${query}`);
    socket.onopen = () => {
      delay = 500;
      onState("live");
    };
    socket.onmessage = (message) => {
      try {
        onEvent(JSON.parse(message.data));
      } catch {
        // a frame that is not JSON is ignored
      }
    };
    socket.onclose = () => {
      onState("reconnecting");
      if (!stopped) setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10_000);
    };
  };
  connect();
  return () => {
    stopped = true;
    socket?.close();
  };
}

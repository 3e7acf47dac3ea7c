// The live workflow view, built on the browser SDK (/sdk/index.js).
//
// A person signs in with a token (from the page's fragment, `/ui#token=...`, which the browser
// never sends to the server, or typed in) and sees, live, one workflow at a time: its state
// as a JSON tree and its tensor state as a heatmap, its events with their positions, who is
// present, the collaboration traffic, and control buttons whose replies and, after a
// reconnect, recorded outcomes are shown. The header shows the gateway serving the page's
// session, the connection state and the message rate. A refusal (close 4400-4999, such as a
// refused token or a refused Origin) is shown as such and not retried.
//
// Fragment parameters: token, gw (WebSocket URLs, comma-separated; default this host's /ws),
// wf (the workflow to open), codec (msgpack or json), name (shown to others in presence).
//
// `window.frysView` exposes the view's model for the browser console and for tests.
import { ClientError, FrysClient, dataToJson, newId } from "../sdk/index.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const MAX_EVENTS_SHOWN = 300;
const MAX_LOG = 100;

/** Everything the page knows; rendered from here. */
const model = {
  /** @type {FrysClient | null} */
  client: null,
  /** @type {string | null} */
  workflow: null,
  /** @type {Array<import("../sdk/index.js").Subscription>} */
  subs: [],
  /** @type {Map<string, Array<{seq: number, from: string | undefined, data: unknown, gap: boolean}>>} */
  events: new Map(),
  /** @type {Map<number, import("../sdk/tensor.js").TensorValue>} */
  tensors: new Map(),
  /** @type {unknown} */
  state: undefined,
  /** @type {number | undefined} */
  stateSeq: undefined,
  /** @type {Map<string, Record<string, unknown>>} */
  members: new Map(),
  /** @type {Array<{cid: string, action: string, workflow: string, reply?: unknown, error?: string, outcome?: unknown, outcomeNote?: string}>} */
  commands: [],
  /** @type {Set<string>} */
  workflows: new Set(),
  wildcard: false,
  /** @type {{code: number, reason: string} | null} */
  refusal: null,
  rate: 0,
};

// --- token and parameters -----------------------------------------------------------

/**
 * The claims of a JWT, read without verifying it: the page only uses them to list the
 * workflows the token grants (the gateway checks every right itself).
 * @param {string} token
 * @returns {Record<string, any>}
 */
function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

/** @param {string} token */
function learnGrants(token) {
  const grants = claimsOf(token)?.frys?.grants ?? {};
  model.wildcard = false;
  for (const pattern of Object.keys(grants)) {
    const parts = pattern.split(":");
    if (parts[0] !== "wf" || parts.length !== 3) continue;
    if (parts[1] === "*") model.wildcard = true;
    else model.workflows.add(parts[1]);
  }
}

/** @param {unknown} data */
function learnWorkflow(data) {
  if (data && typeof data === "object" && typeof (/** @type {any} */ (data).workflow) === "string") {
    const id = /** @type {any} */ (data).workflow;
    if (/^[A-Za-z0-9_-]{1,128}$/.test(id) && !model.workflows.has(id)) {
      model.workflows.add(id);
      renderWorkflows();
    }
  }
}

function defaultGateway() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

// --- connection ------------------------------------------------------------------------

/**
 * Sign in: one client for the page, reconnecting by itself.
 * @param {string} token
 * @param {string[]} urls
 * @param {{codec?: string, name?: string}} [options]
 */
function signIn(token, urls, options = {}) {
  model.client?.close();
  model.refusal = null;
  renderRefusal();
  learnGrants(token);
  const sub = claimsOf(token).sub;
  $("who").textContent = typeof sub === "string" ? sub : "–";
  const client = new FrysClient(urls, {
    token,
    name: options.name || "live view",
    caps: ["view"],
    codec: options.codec || "msgpack",
  });
  model.client = client;
  client.addEventListener("state", () => renderConnection());
  client.addEventListener("connected", () => {
    renderConnection();
    if (client.reconnects > 0) afterReconnect();
  });
  client.addEventListener("refused", (event) => {
    model.refusal = /** @type {CustomEvent} */ (event).detail;
    renderRefusal();
    renderConnection();
  });
  client.addEventListener("closed", () => renderConnection());
  client.start().catch(() => {}); // reported by the events above
  renderConnection();
  renderWorkflows();
  const wanted = model.workflow ?? new URLSearchParams(location.hash.slice(1)).get("wf") ?? [...model.workflows][0];
  model.workflow = null;
  if (wanted) openWorkflow(wanted);
}

/** A new session after an outage: re-read what a notice may have been lost for. */
function afterReconnect() {
  const client = model.client;
  if (client === null || model.workflow === null) return;
  refreshMembers();
  for (const command of model.commands.slice(-10)) fetchOutcome(command, 10);
}

/**
 * Ask the gateway for the recorded outcome of a command (docs/protocol.md §6.4): after a
 * reconnect the reply may have been lost with the connection; the outcome says whether the
 * command ran and what it answered.
 * @param {(typeof model.commands)[number]} command
 * @param {number} tries how often to ask again while none is recorded yet
 */
function fetchOutcome(command, tries) {
  const client = model.client;
  if (client === null) return;
  client
    .outcome(`wf:${command.workflow}:control`, command.cid)
    .then((data) => {
      command.outcome = data;
      command.outcomeNote = undefined;
      renderCommands();
    })
    .catch((error) => {
      if (error instanceof ClientError && error.code === 404 && tries > 1) {
        command.outcomeNote = "not recorded yet";
        renderCommands();
        setTimeout(() => fetchOutcome(command, tries - 1), 500);
      } else {
        command.outcomeNote = error instanceof ClientError ? `${error.code} ${error.reason}` : String(error.message);
        renderCommands();
      }
    });
}

// --- one workflow -------------------------------------------------------------------------

/** @param {string} workflow */
async function openWorkflow(workflow) {
  const client = model.client;
  if (client === null || workflow === model.workflow) return;
  for (const sub of model.subs.splice(0)) sub.unsubscribe().catch(() => {});
  model.workflow = workflow;
  model.workflows.add(workflow);
  model.state = undefined;
  model.stateSeq = undefined;
  model.tensors.clear();
  model.members.clear();
  $("presence-log").replaceChildren();
  $("collab").replaceChildren();
  $("stats").replaceChildren();
  $("workflow-title").textContent = `Workflow ${workflow}`;
  renderWorkflows();
  renderState();
  renderEvents();
  renderMembers();
  renderCommands();
  clearHeatmap();

  const channel = (/** @type {string} */ kind) => `wf:${workflow}:${kind}`;
  const subscribe = (/** @type {string} */ kind, /** @type {any} */ options, /** @type {string} */ panel) =>
    client
      .subscribe(channel(kind), options)
      .then((sub) => {
        if (model.workflow !== workflow) {
          sub.unsubscribe().catch(() => {});
          return;
        }
        model.subs.push(sub);
        if (kind === "presence") refreshMembers();
      })
      .catch((error) => note(panel, `Not subscribed: ${error.reason ?? error.message}`));

  if (!model.events.has(workflow)) model.events.set(workflow, []);
  await Promise.all([
    subscribe(
      "state",
      {
        onMessage: (/** @type {any} */ m) => {
          model.state = m.data;
          model.stateSeq = m.seq;
          learnWorkflow(m.data);
          renderState();
        },
        onTensor: (/** @type {import("../sdk/tensor.js").TensorValue} */ value) => {
          model.tensors.set(value.stream, value);
          if (value.stream === [...model.tensors.keys()].sort((a, b) => a - b)[0]) drawHeatmap(value);
        },
      },
      "state-tree",
    ),
    subscribe(
      "events",
      {
        onMessage: (/** @type {any} */ m) => {
          const list = model.events.get(workflow) ?? [];
          list.push({ seq: m.seq, from: m.from, data: m.data, gap: m.gap });
          if (list.length > 5000) list.splice(0, list.length - 5000);
          learnWorkflow(m.data);
          if (model.workflow === workflow) appendEvent(list[list.length - 1]);
        },
      },
      "events",
    ),
    subscribe(
      "presence",
      {
        onMessage: (/** @type {any} */ m) => {
          const notice = m.data ?? {};
          const member = notice.member ?? {};
          if (notice.type === "join") model.members.set(member.sid, member);
          if (notice.type === "leave") model.members.delete(member.sid);
          log("presence-log", `${notice.type === "join" ? "joined" : `left (${notice.reason ?? "left"})`}: ${who(member)}`);
          renderMembers();
        },
      },
      "members",
    ),
    subscribe(
      "collab",
      {
        onMessage: (/** @type {any} */ m) => {
          learnWorkflow(m.data);
          log("collab", `${m.from ?? "?"}: ${summary(m.data)}`);
        },
      },
      "collab",
    ),
  ]);
}

function refreshMembers() {
  const client = model.client;
  const workflow = model.workflow;
  if (client === null || workflow === null) return;
  client
    .presence(`wf:${workflow}:presence`)
    .then((members) => {
      if (model.workflow !== workflow) return;
      model.members = new Map(members.map((m) => [String(m.sid), m]));
      renderMembers();
    })
    .catch(() => {});
}

/** @param {string} action */
function sendCommand(action) {
  const client = model.client;
  const workflow = model.workflow;
  if (client === null || workflow === null) return;
  const command = { cid: newId(), action, workflow };
  model.commands.push(command);
  if (model.commands.length > 50) model.commands.shift();
  renderCommands();
  client
    .request(`wf:${workflow}:control`, { action }, { cid: command.cid, timeoutMs: 15_000 })
    .then((reply) => {
      Object.assign(command, { reply });
      renderCommands();
    })
    .catch((error) => {
      Object.assign(command, { error: error instanceof ClientError ? `${error.code} ${error.reason}` : error.message });
      renderCommands();
    });
}

// --- rendering ------------------------------------------------------------------------------

function renderConnection() {
  const client = model.client;
  const state = model.refusal ? "refused" : (client?.state ?? "signed out");
  const el = $("conn-state");
  el.textContent = state === "refused" ? `refused (${model.refusal?.code})` : state;
  el.dataset.state = state;
  $("gw-id").textContent = client?.gatewayId ?? "–";
  $("gw-reconnects").textContent = String(client?.reconnects ?? 0);
  $("signin").hidden = client !== null && !model.refusal && client.state !== "closed";
}

function renderRefusal() {
  const box = $("refusal");
  if (model.refusal === null) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  const { code, reason } = model.refusal;
  box.hidden = false;
  box.textContent =
    `The gateway refused this page (close ${code}: ${reason || "no reason given"}). ` +
    "It will not retry: sign in with another token, or open the view from an allowed address.";
}

function renderWorkflows() {
  const list = $("workflow-list");
  list.replaceChildren(
    ...[...model.workflows].sort().map((id) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = id;
      button.setAttribute("aria-current", String(id === model.workflow));
      button.addEventListener("click", () => openWorkflow(id));
      item.append(button);
      return item;
    }),
  );
  $("grant-note").textContent = model.wildcard
    ? "Your token covers every workflow: open one by id, or pick one seen in the traffic."
    : model.workflows.size === 0
      ? "Your token grants no workflow."
      : "";
  for (const button of document.querySelectorAll("[data-action]")) {
    /** @type {HTMLButtonElement} */ (button).disabled = model.workflow === null;
  }
}

function renderState() {
  const tree = $("state-tree");
  $("state-seq").textContent = model.stateSeq === undefined ? "" : `seq ${model.stateSeq}`;
  if (model.state === undefined) {
    tree.replaceChildren(paragraph("No state yet."));
    return;
  }
  const root = document.createElement("ul");
  root.append(treeItem(null, model.state));
  tree.replaceChildren(root);
}

/**
 * One node of the JSON tree (built with text nodes only: data is never HTML).
 * @param {string | null} key
 * @param {unknown} value
 * @returns {HTMLLIElement}
 */
function treeItem(key, value) {
  const item = document.createElement("li");
  if (key !== null) {
    const k = document.createElement("span");
    k.className = "key";
    k.textContent = `${key}: `;
    item.append(k);
  }
  if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    const flat = entries.every(([, v]) => v === null || typeof v !== "object");
    const text = dataToJson(value);
    if (flat && text.length <= 72) {
      // Small flat objects and lists read best on one line.
      const leaf = document.createElement("code");
      leaf.className = "lit";
      leaf.textContent = text;
      item.append(leaf);
      return item;
    }
    const label = document.createElement("span");
    label.className = "lit";
    label.textContent = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
    const children = document.createElement("ul");
    for (const [k, v] of entries.slice(0, 200)) children.append(treeItem(k, v));
    item.append(label, children);
    return item;
  }
  const leaf = document.createElement("code");
  leaf.className = typeof value === "string" ? "str" : typeof value === "number" ? "num" : "lit";
  leaf.textContent = value instanceof Uint8Array ? `<${value.length} bytes>` : dataToJson(value);
  item.append(leaf);
  return item;
}

function renderEvents() {
  const list = $("events");
  list.replaceChildren();
  const events = model.workflow === null ? [] : (model.events.get(model.workflow) ?? []);
  for (const event of events.slice(-MAX_EVENTS_SHOWN)) appendEvent(event);
}

/** @param {{seq: number, from: string | undefined, data: unknown, gap: boolean}} event */
function appendEvent(event) {
  const list = $("events");
  const item = document.createElement("li");
  item.dataset.seq = String(event.seq);
  const pos = span("pos", `#${event.seq}`);
  const from = span("from", event.from ?? "");
  const text = span("text", summary(event.data));
  if (event.gap) item.append(span("gap", "history lost before this event"));
  item.append(pos, from, text);
  list.prepend(item);
  while (list.children.length > MAX_EVENTS_SHOWN) list.lastElementChild?.remove();
}

function renderMembers() {
  const list = $("members");
  const members = [...model.members.values()].sort((a, b) => who(a).localeCompare(who(b)));
  list.replaceChildren(
    ...members.map((m) => {
      const item = document.createElement("li");
      item.textContent = `${who(m)} — ${m.kind ?? "user"} on ${m.gw ?? "?"}`;
      return item;
    }),
  );
  if (members.length === 0) list.append(paragraph("Nobody else yet."));
}

function renderCommands() {
  const body = $("commands");
  const rows = model.commands.filter((c) => c.workflow === model.workflow).slice(-10).reverse();
  body.replaceChildren(
    ...rows.map((c) => {
      const row = document.createElement("tr");
      row.dataset.cid = c.cid;
      const reply =
        c.reply !== undefined
          ? cell(dataToJson(c.reply), "status-ok")
          : c.error
            ? cell(c.error, "status-bad")
            : cell("waiting…", "status-wait");
      const outcome =
        c.outcome !== undefined ? cell(dataToJson(c.outcome), "status-ok outcome") : cell(c.outcomeNote ?? "", "status-wait");
      row.append(cell(c.action), cell(c.cid.slice(0, 8), "", c.cid), reply, outcome);
      return row;
    }),
  );
}

// --- heatmap ------------------------------------------------------------------------------------

const STOPS = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

/** @param {number} t in [0, 1] */
function colour(t) {
  const x = Math.min(Math.max(t, 0), 1) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2);
  const f = x - i;
  return STOPS[i].map((c, k) => Math.round(c + f * (STOPS[i + 1][k] - c)));
}

/**
 * The values of a tensor as numbers, one per element (complex: magnitude).
 * @param {import("../sdk/tensor.js").TensorValue} value
 * @returns {number[]}
 */
function numbers(value) {
  const out = [];
  const data = /** @type {ArrayLike<number | bigint>} */ (value.data);
  if (value.dtype.startsWith("complex")) {
    for (let i = 0; i < data.length; i += 2) out.push(Math.hypot(Number(data[i]), Number(data[i + 1])));
  } else {
    for (let i = 0; i < data.length; i++) out.push(Number(data[i]));
  }
  return out;
}

/** @param {import("../sdk/tensor.js").TensorValue} value */
function drawHeatmap(value) {
  const canvas = /** @type {HTMLCanvasElement} */ ($("heatmap"));
  const shape = value.shape;
  const cols = shape.length === 0 ? 1 : shape[shape.length - 1];
  const rows = shape.length < 2 ? 1 : shape[shape.length - 2];
  const values = numbers(value).slice(0, rows * cols); // the first 2-D slice
  const finite = values.filter(Number.isFinite);
  const low = finite.length ? Math.min(...finite) : 0;
  const high = finite.length ? Math.max(...finite) : 0;
  const span = high - low || 1;
  if (rows * cols > 0) {
    const image = new ImageData(cols, rows);
    values.forEach((v, i) => {
      const [r, g, b] = Number.isFinite(v) ? colour((v - low) / span) : [255, 0, 255];
      image.data.set([r, g, b, 255], i * 4);
    });
    const source = document.createElement("canvas");
    source.width = cols;
    source.height = rows;
    /** @type {CanvasRenderingContext2D} */ (source.getContext("2d")).putImageData(image, 0, 0);
    const context = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    context.imageSmoothingEnabled = false;
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(source, 0, 0, canvas.width, canvas.height);
  }
  const description =
    `stream ${value.stream}, ${value.dtype} [${shape.join(" × ")}], sequence ${value.sequence}, ` +
    `values ${fmt(low)} to ${fmt(high)}` +
    (value.precision === "EXACT" ? "" : `, ${value.precision.toLowerCase()}`);
  canvas.setAttribute("aria-label", `Heatmap of ${description}`);
  $("tensor-caption").textContent = description;
}

function clearHeatmap() {
  const canvas = /** @type {HTMLCanvasElement} */ ($("heatmap"));
  canvas.getContext("2d")?.clearRect(0, 0, canvas.width, canvas.height);
  canvas.setAttribute("aria-label", "No tensor yet");
  $("tensor-caption").textContent = "No tensor yet.";
}

async function refreshStats() {
  const client = model.client;
  const workflow = model.workflow;
  if (client === null || workflow === null || model.tensors.size === 0 || client.state !== "connected") return;
  try {
    const { streams } = await client.stats(`wf:${workflow}:state`);
    $("stats").replaceChildren(
      ...Object.entries(streams ?? {}).map(([stream, s]) => {
        const row = document.createElement("tr");
        row.append(
          cell(stream),
          cell(String(s.frames ?? 0)),
          cell(bytes(Number(s.bytes_wire ?? 0))),
          cell(bytes(Number(s.bytes_raw ?? 0))),
          cell(s.ratio == null ? "–" : `${Number(s.ratio).toFixed(1)}×`),
          cell(s.latency_ms == null ? "–" : `${Number(s.latency_ms).toFixed(1)} ms`),
        );
        return row;
      }),
    );
  } catch {
    // the next tick tries again
  }
}

// --- small helpers --------------------------------------------------------------------------

/** @param {Record<string, unknown>} member */
function who(member) {
  const name = member?.name ? String(member.name) : "";
  const sub = member?.sub ? String(member.sub) : "?";
  return name && name !== sub ? `${name} (${sub})` : sub;
}

/** @param {unknown} data */
function summary(data) {
  const text = data instanceof Uint8Array ? `<${data.length} bytes>` : dataToJson(data);
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

/** @param {number} n */
function fmt(n) {
  return Number.isInteger(n) ? String(n) : n.toPrecision(4);
}

/** @param {number} n */
function bytes(n) {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

/**
 * @param {string} className
 * @param {string} text
 */
function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

/**
 * @param {string} text
 * @param {string} [className]
 * @param {string} [title]
 */
function cell(text, className = "", title = "") {
  const td = document.createElement("td");
  const code = document.createElement("code");
  code.textContent = text;
  td.append(code);
  if (className) td.className = className;
  if (title) td.title = title;
  return td;
}

/** @param {string} text */
function paragraph(text) {
  const p = document.createElement("p");
  p.className = "note";
  p.textContent = text;
  return p;
}

/**
 * @param {string} id
 * @param {string} text
 */
function log(id, text) {
  const list = $(id);
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  list.prepend(item);
  while (list.children.length > MAX_LOG) list.lastElementChild?.remove();
}

/**
 * @param {string} id
 * @param {string} text
 */
function note(id, text) {
  $(id).replaceChildren(paragraph(text));
}

// --- wiring ---------------------------------------------------------------------------------

function start() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token") ?? sessionStorage.getItem("frys-token") ?? "";
  const urls = (params.get("gw") ?? "").split(",").map((u) => u.trim()).filter(Boolean);
  const options = { codec: params.get("codec") ?? undefined, name: params.get("name") ?? undefined };
  /** @type {HTMLInputElement} */ ($("gateways")).value = (urls.length ? urls : [defaultGateway()]).join(", ");
  if (params.has("token")) {
    // Keep the token out of the address bar and the history; this tab remembers it.
    sessionStorage.setItem("frys-token", token);
    params.delete("token");
    history.replaceState(null, "", `${location.pathname}${params.size ? `#${params}` : ""}`);
  }
  $("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = /** @type {HTMLInputElement} */ ($("token")).value.trim();
    const gateways = /** @type {HTMLInputElement} */ ($("gateways")).value.split(",").map((u) => u.trim()).filter(Boolean);
    if (!typed) return;
    sessionStorage.setItem("frys-token", typed);
    signIn(typed, gateways.length ? gateways : [defaultGateway()], options);
  });
  $("open-workflow").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = /** @type {HTMLInputElement} */ ($("workflow-id"));
    if (input.validity.valid) openWorkflow(input.value.trim());
    input.value = "";
  });
  $("note").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = /** @type {HTMLInputElement} */ ($("note-text"));
    const text = input.value.trim();
    if (!text || model.client === null || model.workflow === null) return;
    input.value = "";
    model.client.publish(`wf:${model.workflow}:events`, { type: "note", text }).catch((error) => {
      log("collab", `note not published: ${error.reason ?? error.message}`);
    });
  });
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => sendCommand(/** @type {string} */ (/** @type {HTMLElement} */ (button).dataset.action)));
  }
  let seen = 0;
  setInterval(() => {
    const total = model.client?.counters.messagesIn ?? 0;
    model.rate = total - seen;
    seen = total;
    $("gw-rate").textContent = String(model.rate);
  }, 1000);
  setInterval(refreshStats, 2000);
  renderWorkflows();
  renderConnection();
  if (token) signIn(token, urls.length ? urls : [defaultGateway()], options);
}

/** The view's model, for the browser console and for tests. */
// @ts-ignore: a property of the page's global object
window.frysView = {
  model,
  get client() {
    return model.client;
  },
  /** Events received on a workflow, in order: `{seq, from, data, gap}`. */
  events: (/** @type {string} */ workflow) => [...(model.events.get(workflow) ?? [])],
  /** The decoded tensor of a stream as plain arrays: `{dtype, shape, sequence, data}`, with
   * the keyframes and deltas the page applied on its workflow's state channel. */
  tensor(stream = 0) {
    const value = model.tensors.get(stream);
    if (value === undefined) return null;
    const frames = model.subs.find((s) => s.channel === `wf:${model.workflow}:state`)?.tensors;
    return {
      dtype: value.dtype,
      shape: value.shape,
      sequence: value.sequence,
      data: Array.from(value.data, Number),
      keyframes: frames?.keyframes ?? 0,
      deltas: frames?.deltas ?? 0,
    };
  },
  openWorkflow,
  sendCommand,
};

start();

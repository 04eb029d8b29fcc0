// Renders /api/state and follows /api/events. Text only goes through textContent: names and
// messages come from specs and the swarm, never trusted as markup.
"use strict";

const open = new Set(); // object ids whose details are shown (kept across updates)
let paused = false;
let last = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function table(caption, headers, rows) {
  return el("table", {},
    caption ? el("caption", { text: caption }) : null,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows));
}

function readyCell(o) {
  if (!o.ready) return el("td", {}, "");
  const [have, want] = o.ready.split("/");
  return el("td", { class: have === want ? "ready-ok" : "ready-bad", text: o.ready });
}

// Whether a condition's status is good news: Degraded=False is healthy, Progressing is neither.
function health(c) {
  if (c.status === "Unknown") return "unknown";
  if (c.type === "Progressing") return "neutral";
  const good = c.type === "Degraded" ? c.status === "False" : c.status === "True";
  return good ? "good" : "bad";
}

function conditions(o) {
  return o.conditions.map((c) =>
    el("span", { class: `cond ${health(c)}`, title: c.message || null, text: `${c.type}=${c.status} (${c.reason})` }));
}

function objectRows(o) {
  const id = o.id;
  const shown = open.has(id);
  const toggle = el("button", {
    type: "button", "data-focus": `obj:${id}`, "aria-expanded": String(shown),
    "aria-label": `${shown ? "Hide" : "Show"} details of ${id}`, text: shown ? "Hide" : "Details",
    onclick: () => { shown ? open.delete(id) : open.add(id); render(); },
  });
  const rows = [el("tr", { "data-id": id },
    el("td", {}, toggle),
    el("td", { text: o.kind.replace(/^Swarm/, "") }),
    el("th", { scope: "row", text: o.name }),
    el("td", { text: o.source }),
    readyCell(o),
    el("td", { text: o.update || "" }),
    el("td", { class: "mono", text: o.image || "" }),
    el("td", {}, conditions(o), o.errors.map((e) => el("div", { class: "error mono", text: e }))),
    el("td", { text: o.age }))];
  if (shown) {
    const lines = [
      ["Swarm name", o.swarm_name], ["Spec", o.file || (o.in_specs ? null : "not in these specs")],
      ["Source", o.source], ["Revision", o.revision], ["Digest", o.digest],
      ["Task error", o.task_error && `${o.task_error.task} on ${o.task_error.node || "?"}: ${o.task_error.state}: ${o.task_error.error}`],
      ...o.conditions.filter((c) => c.message).map((c) => [c.type, `${c.reason}: ${c.message}`]),
    ].filter(([, v]) => v);
    rows.push(el("tr", { class: "detail" }, el("td", { colspan: 9 },
      el("dl", {}, lines.map(([k, v]) => [el("dt", { text: k }), el("dd", { class: "mono", text: v })])))));
  }
  return rows;
}

function renderObjects(state) {
  const box = document.getElementById("objects");
  if (!state.objects.length) return box.replaceChildren(el("p", { class: "empty", text: "No objects." }));
  const groups = new Map();
  for (const o of state.objects) {
    const ns = o.namespace || "(no namespace)";
    if (!groups.has(ns)) groups.set(ns, []);
    groups.get(ns).push(o);
  }
  box.replaceChildren(...[...groups].map(([ns, objs]) =>
    table(`namespace ${ns}`, ["", "Kind", "Name", "Source", "Ready", "Update", "Image", "Conditions", "Age"],
      objs.flatMap(objectRows))));
}

function renderTasks(state) {
  const box = document.getElementById("tasks");
  const services = state.objects.filter((o) => o.kind === "SwarmService");
  if (!services.length) return box.replaceChildren(el("p", { class: "empty", text: "No services." }));
  const names = new Map((state.nodes || []).map((n) => [n.id, n.hostname || n.id.slice(0, 12)]));
  const nodeIds = [...names.keys()];
  for (const s of services) for (const t of s.tasks) if (t.node && !names.has(t.node)) { names.set(t.node, t.node.slice(0, 12)); nodeIds.push(t.node); }
  const unassigned = services.some((s) => s.tasks.some((t) => !t.node));
  const columns = unassigned ? [...nodeIds, ""] : nodeIds;
  const rows = services.map((s) => el("tr", {},
    el("th", { scope: "row", text: `${s.namespace ? s.namespace + "/" : ""}${s.name}` }),
    columns.map((node) => el("td", {}, s.tasks.filter((t) => (t.node || "") === node).map((t) => [
      el("span", { class: `task ${t.state}`, "data-task": t.id, title: `task ${t.id}, desired ${t.desired}`, text: `${t.slot ?? ""} ${t.state}`.trim() }),
      t.error ? el("div", { class: "error", text: t.error }) : null,
    ])))));
  box.replaceChildren(table("", ["Service", ...columns.map((n) => names.get(n) || "(not assigned)")], rows));
}

function nodeRow(n) {
  const state = n.state + (n.message ? ` (${n.message})` : "");
  return el("tr", {}, el("th", { scope: "row", text: n.hostname + (n.unknown ? " (not in the spec)" : "") }),
    el("td", { text: n.role }), el("td", { text: n.availability }),
    el("td", { class: n.state === "ready" ? null : "error", text: state }),
    el("td", { text: n.leader ? "leader" : (n.reachability || "") }),
    el("td", { class: "mono", text: n.address || "" }), el("td", { class: "mono", text: (n.id || "").slice(0, 12) }));
}

function renderNodes(state) {
  const box = document.getElementById("nodes");
  const headers = ["Node", "Role", "Availability", "State", "Leader / reachability", "Address", "ID"];
  const tables = [];
  if (state.nodes) tables.push(table("default engine", headers, state.nodes.map(nodeRow)));
  for (const c of state.clusters || []) tables.push(table(`cluster ${c.name}`, headers, c.nodes.map(nodeRow)));
  if (!tables.length) return box.replaceChildren(el("p", { class: "empty", text: "Not read yet." }));
  box.replaceChildren(...tables);
}

const SYMBOL = { create: "+", update: "~", recreate: "±", delete: "-" };

function renderPlan(state) {
  const steps = state.plan || [];
  document.getElementById("plan-section").hidden = !steps.length;
  const blocked = steps.find((s) => s.blocked);
  document.getElementById("plan-note").textContent = blocked ? `Refused: ${blocked.blocked}`
    : state.read_only ? "What applying these specs would change (read-only: nothing is applied)."
    : "Planned and not carried out yet.";
  document.getElementById("plan").replaceChildren(...steps.map((s) => el("li", {},
    `${SYMBOL[s.action] || ""} ${s.action} ${s.id} (${s.reason})`,
    s.fields.length ? el("span", { class: "mono" }, ": ", s.fields.join(", ")) : null)));
}

function renderOrigin(state) {
  const o = state.origin;
  document.getElementById("origin-section").hidden = !o || o.kind !== "git";
  if (!o || o.kind !== "git") return;
  const short = (r) => (r ? r.slice(0, 12) : "—");
  const rows = [
    ["Repository", `${o.repository} ${o.ref} ${o.path}`], ["Tracked", short(o.tracked)],
    ["Last attempted", short(o.attempted)], ["Last applied", short(o.applied)], ["Released", short(o.released)],
    ...Object.entries(o.failed || {}).map(([r, why]) => [`Failed ${short(r)}`, why]),
    ["Fetch error", o.fetch_error], ["Suspended", o.suspended ? "yes" : null],
  ].filter(([, v]) => v);
  document.getElementById("origin").replaceChildren(...rows.flatMap(([k, v]) =>
    [el("dt", { text: k }), el("dd", { class: "mono", text: v })]));
}

function renderUnmanaged(state) {
  const items = state.unmanaged || [];
  document.getElementById("unmanaged-section").hidden = !items.length;
  document.getElementById("unmanaged").replaceChildren(items.length ? table("", ["Type", "Name", "Cluster"],
    items.map((u) => el("tr", {}, el("td", { text: u.type }), el("th", { scope: "row", text: u.name }),
      el("td", { text: u.cluster || "default" })))) : "");
}

function renderPasses(state) {
  document.getElementById("passes").replaceChildren(...state.passes.map((p) => {
    const items = [
      ...p.changes.map((c) => el("li", { class: c.ok ? null : "error" },
        `${SYMBOL[c.action] || ""} ${c.action} ${c.id} (${c.reason})`,
        c.fields.length ? el("span", { class: "mono" }, ": ", c.fields.join(", ")) : null,
        c.deferred ? " — deferred" : null, c.error ? ` — ${c.error}` : null)),
      ...p.drift.map((d) => el("li", { text: `drift corrected: ${d}` })),
      ...p.spec_errors.map((e) => el("li", { class: "error mono", text: e })),
      ...p.plan_errors.map((e) => el("li", { class: "error", text: e })),
      ...Object.entries(p.held).map(([k, v]) => el("li", { class: "error", text: `${k}: ${v}` })),
      ...Object.entries(p.waiting).map(([k, v]) => el("li", { text: `${k}: ${v}` })),
      ...Object.entries(p.unreachable).map(([k, v]) => el("li", { class: "error", text: `${k}: ${v}` })),
    ];
    const when = p.at ? new Date(p.at).toLocaleTimeString() : "";
    const quiet = p.quiet_after ? el("div", { class: "muted", text: `then ${p.quiet_after} pass${p.quiet_after === 1 ? "" : "es"} with no change` }) : null;
    return el("li", {}, quiet, el("span", { class: p.ok ? null : "error" }, `${when} · ${p.duration_ms} ms · ${p.ok ? "ok" : "not ok"}`),
      items.length ? el("ul", {}, items) : el("span", { class: "muted", text: " · no change" }));
  }));
}

function render() {
  if (!last) return;
  const focused = document.activeElement && document.activeElement.getAttribute("data-focus");
  const state = last;
  renderOrigin(state);
  renderPlan(state);
  renderObjects(state);
  renderUnmanaged(state);
  renderTasks(state);
  renderNodes(state);
  renderPasses(state);
  const errors = document.getElementById("errors");
  errors.replaceChildren(...state.spec_errors.map((e) => el("li", { text: e })));
  document.getElementById("errors-section").hidden = !state.spec_errors.length;
  // A re-render replaces the buttons: keep the keyboard where it was.
  if (focused) {
    const again = document.querySelector(`[data-focus="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

function meta(text) {
  document.getElementById("meta").textContent = text;
}

function take(state) {
  if (paused) return;
  last = state;
  document.body.dataset.version = String(state.version);
  meta(`source ${state.source}${state.read_only ? " · read-only" : ""} · updated ${new Date().toLocaleTimeString()} · live`);
  render();
}

function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("state", (e) => take(JSON.parse(e.data)));
  events.onerror = () => meta("connection lost; reconnecting…");
}

document.addEventListener("DOMContentLoaded", () => {
  const pause = document.getElementById("pause");
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume live updates" : "Pause live updates";
  });
  connect();
});

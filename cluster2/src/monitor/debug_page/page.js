// The debug page's script: no framework, no build step. It reads two pushed streams (the
// cluster's state every heartbeat, and the lifecycle events) and renders them; actions are
// POSTs confirmed in a dialog. Every text from the cluster is inserted as text, never as HTML.
"use strict";

const WINDOW_SECS = 600; // the charts show the last ten minutes
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("cluster2-token") || "";
const history = new Map(); // pid -> [sample]
const totalRps = []; // [{at, value}]
let lastState = null;
let selected = null; // the pid shown in the detail panel
let logStream = null;

// ---- talking to the monitor ----

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function askToken() {
  const dialog = $("token");
  $("token-input").value = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  token = $("token-input").value.trim();
  sessionStorage.setItem("cluster2-token", token);
}

async function api(path, options) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const o = Object.assign({}, options || {});
    o.headers = headers(o.headers);
    const response = await fetch(path, o);
    if (response.status === 401) { await askToken(); continue; }
    return response;
  }
  throw new Error("the monitor refused the token");
}

async function errorText(response) {
  const text = await response.text();
  try { return JSON.parse(text).error || text; } catch (_) { return text || response.statusText; }
}

// Server-sent events over fetch, so that the token can travel in a header.
function stream(pathFn, onEvent, onState) {
  let stopped = false;
  let controller = null;
  (async function run() {
    let delay = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        const response = await api(pathFn(), { signal: controller.signal, headers: { Accept: "text/event-stream" } });
        // A process that is gone stays gone: say so and stop asking.
        if (response.status === 404) { onState(false, await errorText(response)); return; }
        if (!response.ok) throw new Error(await errorText(response));
        onState(true);
        delay = 500;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let type = "message", data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) type = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (data.length) onEvent(type, data.join("\n"));
          }
        }
      } catch (e) {
        if (stopped) return;
        onState(false, e.message);
      }
      if (stopped) return;
      onState(false);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  })();
  return { stop() { stopped = true; if (controller) controller.abort(); } };
}

// ---- formatting ----

function fmtSecs(s) {
  if (s == null) return "–";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " m " + Math.floor(s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " m";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}
function fmtBytes(b) {
  if (b == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + " " + units[i];
}
const fmtNum = (n, digits) => (n == null ? "–" : Number(n).toLocaleString(undefined, { maximumFractionDigits: digits || 0 }));
const fmtTime = (unix) => new Date(unix * 1000).toLocaleTimeString();

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}

function toast(text, error) {
  const t = $("toast");
  t.textContent = text;
  t.className = "show" + (error ? " error" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.className = ""), 3500);
}

// ---- charts: SVG polylines over the last ten minutes ----

const SVG = "http://www.w3.org/2000/svg";
function spark(points, now) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 200 32");
  svg.setAttribute("preserveAspectRatio", "none");
  drawInto(svg, points, now);
  return svg;
}
function drawInto(svg, points, now) {
  svg.textContent = "";
  if (!points.length) return;
  const max = Math.max(...points.map((p) => p.value), 1e-9);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map((p) => {
    const x = 200 * (1 - (now - p.at) / WINDOW_SECS);
    const y = 30 - 28 * (p.value / max);
    return x.toFixed(1) + "," + y.toFixed(1);
  }).join(" "));
  svg.append(line);
}
function series(pid, field) {
  return (history.get(pid) || []).map((s) => ({ at: s.at_unix_secs, value: Number(s[field]) || 0 }));
}
// A worker's latest heartbeat as a chart sample, placed when the master received it. The same
// heartbeat comes in every state until the next one; the clocks behind its time jitter by
// microseconds, so anything within a millisecond of the last sample is that sample.
function sampleOf(w, now) {
  const hb = w.heartbeat;
  if (!hb) return null;
  return {
    at_unix_secs: now - hb.age_secs,
    requests_per_second: hb.requests_per_second,
    cpu_percent: hb.cpu_percent,
    memory_bytes: hb.memory_bytes,
    open_connections: hb.open_connections,
    event_loop_lag_secs: hb.event_loop_lag_secs,
  };
}
function remember(pid, sample) {
  if (!sample) return;
  const list = history.get(pid) || [];
  if (list.length && list[list.length - 1].at_unix_secs >= sample.at_unix_secs - 1e-3) return;
  list.push(sample);
  const oldest = sample.at_unix_secs - WINDOW_SECS;
  while (list.length && list[0].at_unix_secs < oldest) list.shift();
  history.set(pid, list);
}

// ---- rendering the state ----

const COLUMNS = [
  ["requests_per_second", (hb) => fmtNum(hb && hb.requests_per_second, 1)],
  ["cpu_percent", (hb) => (hb ? hb.cpu_percent.toFixed(1) + " %" : "–")],
  ["memory_bytes", (hb) => fmtBytes(hb && hb.memory_bytes)],
  ["open_connections", (hb) => fmtNum(hb && hb.open_connections)],
  ["event_loop_lag_secs", (hb) => fmtSecs(hb && hb.event_loop_lag_secs)],
];

function actionButton(label, pid, action, danger, path, question) {
  return el("button", {
    type: "button", class: danger ? "danger" : "", "data-action": action, "data-pid": String(pid),
    onclick: () => act(question || label + " worker " + pid + "?", path || "/workers/" + pid + "/" + action),
  }, label);
}

function renderWorkers(state) {
  const body = $("workers").tBodies[0];
  body.textContent = "";
  const now = state.at_unix_secs;
  for (const w of state.workers) {
    remember(w.pid, sampleOf(w, now));
    const pidCell = el("td", { class: "pid" }, el("button", { type: "button", title: "debug this worker", onclick: () => select(w.pid) }, String(w.pid)));
    const row = el("tr", { "data-pid": String(w.pid), class: w.pid === selected ? "selected" : "" },
      el("td", {}, String(w.worker) + (w.successor_of ? " ↻" : "")),
      pidCell,
      el("td", { class: "state state-" + w.state }, w.state + (w.debugging === "new" ? " · debug worker, held" : w.debugging ? " · debug session" : "")),
      el("td", {}, fmtSecs(w.uptime_secs)),
      el("td", {}, String(w.restarts)),
    );
    if (w.log_filter) row.title = "log filter: " + w.log_filter;
    for (const [field, show] of COLUMNS) {
      row.append(el("td", {}, el("span", { class: "v" }, show(w.heartbeat)), spark(series(w.pid, field), now)));
    }
    const age = w.heartbeat ? w.heartbeat.age_secs : null;
    row.append(el("td", { class: age != null && age > 5 ? "ev-warn" : "" }, age == null ? "none yet" : fmtSecs(age) + " ago"));
    const actions = el("td", { class: "actions" });
    if (w.debugging === "new") {
      if (w.state === "paused") {
        actions.append(actionButton("Release", w.pid, "release", false, "/debug/workers/" + w.pid + "/release",
          "Release debug worker " + w.pid + " into traffic? It takes the place of worker " + w.worker + ", which drains and stops."));
      }
      actions.append(actionButton("Dismiss", w.pid, "dismiss", true, "/debug/workers/" + w.pid + "/dismiss",
        "Dismiss debug worker " + w.pid + "? It stops without serving."));
    } else if (w.debugging) {
      actions.append(actionButton("End session", w.pid, "end-session", true, "/debug/workers/" + w.pid + "/session/end",
        "End the debug session of " + w.pid + "? It stops."));
    } else {
      if (w.state === "listening") actions.append(actionButton("Pause", w.pid, "pause"));
      if (w.state === "paused") actions.append(actionButton("Resume", w.pid, "resume"));
      if (w.state === "listening" || w.state === "paused") {
        actions.append(actionButton("Debug", w.pid, "session", false, "/debug/workers/" + w.pid + "/session",
          "Take worker " + w.pid + " out of traffic for a debug session? A successor warms up and takes its place first."));
        actions.append(actionButton("Replace", w.pid, "replace", true));
      }
    }
    row.append(actions);
    body.append(row);
  }
  for (const pid of [...history.keys()]) if (!state.workers.some((w) => w.pid === pid)) history.delete(pid);
}

function renderState(state) {
  lastState = state;
  $("master").textContent = "master pid " + state.pid;
  const ecv = $("ecv");
  ecv.textContent = state.ecv.up ? "ECV up" : "ECV down: " + state.ecv.reason;
  ecv.className = "badge " + (state.ecv.up ? "up" : "down");
  $("phase").textContent = state.phase;
  const t = state.totals;
  $("t-rps").textContent = fmtNum(t.requests_per_second, 1);
  $("t-requests").textContent = fmtNum(t.requests);
  const serving = state.workers.filter((w) => w.state === "listening").length;
  $("t-serving").textContent = serving + " / " + state.workers.length;
  $("t-restarts").textContent = fmtNum(t.restarts);
  $("t-replacements").textContent = fmtNum(t.replacements);
  totalRps.push({ at: state.at_unix_secs, value: t.requests_per_second });
  while (totalRps.length && totalRps[0].at < state.at_unix_secs - WINDOW_SECS) totalRps.shift();
  drawInto($("t-rps-chart"), totalRps, state.at_unix_secs);
  renderWorkers(state);
  renderQueue(state.death_queue);
  renderCaches(state.caches);
  renderStatuses(state.statuses);
}

function renderQueue(queue) {
  const box = $("queue");
  box.textContent = "";
  if (!queue.length) { box.className = "muted"; box.textContent = "empty"; return; }
  box.className = "";
  const list = el("ol");
  for (const q of queue) {
    list.append(el("li", {}, (q.in_progress ? "replacing " : "waiting: ") + "worker " + q.worker + " (pid " + q.pid + ")" +
      (q.successor ? " → pid " + q.successor : "") + (q.attempt > 1 ? ", try " + q.attempt : "") + ": " + q.reason.kind.replace(/_/g, " ")));
  }
  box.append(list);
}

function renderCaches(caches) {
  const body = $("caches").tBodies[0];
  body.textContent = "";
  $("cache-note").textContent = caches.error ? caches.error : "";
  for (const ns of caches.namespaces || []) {
    body.append(el("tr", {}, el("td", {}, ns.namespace), el("td", {}, fmtNum(ns.entries)), el("td", {}, fmtBytes(ns.bytes)),
      el("td", {}, fmtNum(ns.hits)), el("td", {}, fmtNum(ns.misses)), el("td", {}, fmtNum(ns.loads)), el("td", {}, fmtNum(ns.lock_waits))));
  }
}

function renderStatuses(statuses) {
  const box = $("statuses");
  box.textContent = "";
  const names = Object.keys(statuses).sort();
  if (!names.length) box.append(el("p", { class: "muted" }, "no status registered"));
  for (const name of names) {
    box.append(el("div", { class: "status-name" }, name));
    const entries = statuses[name];
    if (!Array.isArray(entries)) { box.append(el("div", { class: "status-entry ev-bad" }, JSON.stringify(entries))); continue; }
    for (const e of entries) {
      const who = (e.role === "worker" ? "worker " + e.worker : e.role) + " (pid " + e.pid + ")";
      box.append(el("div", { class: "status-entry" + (e.error ? " ev-bad" : "") }, who + ": " + (e.error ? e.error : JSON.stringify(e.status))));
    }
  }
}

// ---- the timeline of lifecycle events ----

function describe(e) {
  const w = e.worker != null ? "worker " + e.worker + " (pid " + e.pid + ") " : "";
  const reason = e.reason && e.reason.kind ? " — " + e.reason.kind.replace(/_/g, " ") : "";
  switch (e.event) {
    case "exited": {
      const how = e.exit.signal_name ? "killed by " + e.exit.signal_name : "exited with status " + e.exit.status + (e.exit.meaning ? " (" + e.exit.meaning + ")" : "");
      return [w + how + (e.expected ? "" : " — crash"), e.expected ? "" : "ev-bad"];
    }
    case "restart_scheduled": return ["worker " + e.worker + " restarts in " + fmtSecs(e.delay_secs) + " (crash " + e.crash_streak + " in a row)", "ev-warn"];
    case "queued": return [w + "queued for replacement" + reason, "ev-warn"];
    case "replacing": return [w + "being replaced" + reason, "ev-warn"];
    case "replaced": return ["worker " + e.worker + " replaced: pid " + e.pid + " → " + e.successor + " in " + fmtSecs(e.took_secs) + reason, "ev-ok"];
    case "successor_failed": return [w + "successor failed (try " + e.attempt + " of " + e.tries + "): " + e.why, "ev-bad"];
    case "replacement_failed": return [w + "replacement given up: " + e.why, "ev-bad"];
    case "start_failed": return [w + e.stage + " failed: " + e.error, "ev-bad"];
    case "cannot_accept": return [w + "cannot take new connections: " + e.why, "ev-bad"];
    case "accepting": return [w + "takes new connections again", "ev-ok"];
    case "debug_session_started": return [w + "out of traffic for a debug session", "ev-warn"];
    case "debug_session_ended": return [w + "debug session ended", ""];
    case "debug_worker_started": return ["debug worker pid " + e.pid + " started for worker " + e.worker + ", logging at " + e.filter + ", held out of traffic", "ev-warn"];
    case "debug_worker_released": return ["debug worker pid " + e.pid + " released: serves as worker " + e.worker + (e.replaced ? " in place of pid " + e.replaced : ""), "ev-ok"];
    case "debug_worker_dismissed": return ["debug worker pid " + e.pid + " dismissed", ""];
    case "ecv": return ["ECV " + (e.up ? "up" : "down") + " (" + e.reason + ")", e.up ? "ev-ok" : "ev-warn"];
    case "cache_manager_up": return ["cache manager up" + (e.pid ? " (pid " + e.pid + ")" : " (in the master)"), "ev-ok"];
    case "cache_manager_down": return ["cache manager (pid " + e.pid + ") down", "ev-bad"];
    case "ready": return ["ready: " + e.workers.length + " workers serve", "ev-ok"];
    case "starting": return ["starting " + e.workers + " workers on " + e.app, ""];
    case "shutting_down": return ["shutting down: " + e.why, "ev-warn"];
    default: return [w + e.event.replace(/_/g, " "), e.event === "listening" ? "ev-ok" : ""];
  }
}

let lastSeq = 0;
function onLifecycle(data) {
  const e = JSON.parse(data);
  lastSeq = Math.max(lastSeq, e.seq);
  const [text, cls] = describe(e);
  const list = $("timeline");
  list.prepend(el("li", { class: cls, "data-event": e.event }, el("time", {}, fmtTime(e.at_unix_secs)), text));
  while (list.children.length > 300) list.lastChild.remove();
}

// ---- actions ----

function confirmDialog(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

async function act(question, path, body, type) {
  if (!(await confirmDialog(question))) return;
  try {
    const response = await api(path, body === undefined ? { method: "POST" } : { method: "POST", headers: { "Content-Type": type || "application/json" }, body });
    if (!response.ok) { toast(await errorText(response), true); return; }
    toast("done: " + question.replace(/\?$/, ""));
  } catch (e) { toast(e.message, true); }
}

$("a-debug-new").addEventListener("click", async () => {
  const filter = $("a-new-filter").value.trim() || "debug";
  if (!(await confirmDialog("Start a new worker held out of traffic, logging at " + filter + " from its first line?"))) return;
  try {
    const response = await api("/debug/workers/new", { method: "POST", headers: { "Content-Type": "text/plain" }, body: filter });
    if (!response.ok) { toast(await errorText(response), true); return; }
    const started = await response.json();
    toast("debug worker " + started.pid + " starting for worker " + started.worker);
    select(started.pid);
  } catch (e) { toast(e.message, true); }
});
$("a-restart").addEventListener("click", () => act("Replace every worker, one at a time?", "/workers/restart"));
$("a-ecv-up").addEventListener("click", () => act("Mark the ECV up (let traffic in)?", (lastState && lastState.ecv_paths ? lastState.ecv_paths.mark_up : "/ecv/markUp")));
$("a-ecv-down").addEventListener("click", () => act("Mark the ECV down (load balancers stop sending traffic)?", (lastState && lastState.ecv_paths ? lastState.ecv_paths.mark_down : "/ecv/markDown")));
$("set-status").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("s-name").value.trim();
  const value = $("s-value").value.trim();
  try { JSON.parse(value); } catch (e) { toast("the value is not JSON: " + e.message, true); return; }
  act("Set status " + name + " to " + value + "?", "/statuses/" + encodeURIComponent(name), value);
});

// ---- one worker, in detail ----

function select(pid) {
  selected = pid;
  $("detail").hidden = false;
  $("d-pid").textContent = String(pid);
  $("d-logs").textContent = "";
  $("d-output").textContent = "";
  const shown = lastState && lastState.workers.find((w) => w.pid === pid);
  const filter = shown && shown.log_filter ? shown.log_filter : "";
  $("d-filter").placeholder = filter || "debug, info,my_app=trace";
  $("d-note").textContent = "live log lines of pid " + pid + (filter ? " · filter " + filter : "");
  if (logStream) logStream.stop();
  logStream = stream(() => "/debug/workers/" + pid + "/logs", (type, data) => {
    if (type === "dropped") { appendLog({ level: "WARN", message: data + " lines dropped (the page could not keep up)" }); return; }
    try { appendLog(JSON.parse(data)); } catch (_) { appendLog({ level: "INFO", message: data }); }
  }, (up, why) => { if (!up && why) $("d-note").textContent = "log stream: " + why; });
  if (lastState) renderWorkers(lastState);
}

function appendLog(line) {
  const box = $("d-logs");
  const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  const fields = line.fields && Object.keys(line.fields).length ? " " + Object.entries(line.fields).map(([k, v]) => k + "=" + v).join(" ") : "";
  box.append(el("div", { class: "l-" + (line.level || "INFO") }, (line.level || "") + " " + (line.target ? line.target + ": " : "") + line.message + fields));
  while (box.children.length > 2000) box.firstChild.remove();
  if (atBottom) box.scrollTop = box.scrollHeight;
}

async function setFilter(target) {
  const filter = $("d-filter").value.trim();
  if (!filter) { toast("write a filter first, e.g. debug", true); return; }
  await act("Set the log filter of " + (target === "all" ? "every process" : "pid " + target) + " to " + filter + "?", "/debug/workers/" + target + "/log-level", filter, "text/plain");
}
$("d-set-filter").addEventListener("click", () => setFilter(selected));
$("d-set-filter-all").addEventListener("click", () => setFilter("all"));
$("d-close").addEventListener("click", () => { if (logStream) logStream.stop(); selected = null; $("detail").hidden = true; });
$("d-profile").addEventListener("click", async () => {
  const out = $("d-output");
  out.textContent = "profiling pid " + selected + " for 10 s…";
  try {
    const response = await api("/debug/workers/" + selected + "/profile?seconds=10&format=svg");
    if (!response.ok) { out.textContent = await errorText(response); return; }
    const url = URL.createObjectURL(await response.blob());
    out.textContent = "";
    out.append(el("img", { src: url, alt: "CPU flame graph of pid " + selected }));
  } catch (e) { out.textContent = e.message; }
});
$("d-stacks").addEventListener("click", async () => {
  const out = $("d-output");
  out.textContent = "reading the thread stacks of pid " + selected + "…";
  try {
    const response = await api("/debug/workers/" + selected + "/stacks");
    out.textContent = "";
    out.append(el("pre", {}, response.ok ? await response.text() : await errorText(response)));
  } catch (e) { out.textContent = e.message; }
});

// ---- start ----

function linkState(up, why) {
  const link = $("link");
  link.textContent = up ? "live" : "reconnecting…" + (why ? " (" + why + ")" : "");
  link.className = "link " + (up ? "up" : "down");
}
stream(() => "/debug/stream", (type, data) => {
  if (type === "history") {
    const all = JSON.parse(data);
    for (const [pid, samples] of Object.entries(all)) history.set(Number(pid), samples);
  } else if (type === "state") {
    renderState(JSON.parse(data));
  }
}, linkState);
stream(() => "/events?since=" + lastSeq, (type, data) => onLifecycle(data), () => {});

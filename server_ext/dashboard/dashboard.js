// The abaco-nb dashboard page: plain JavaScript over the Abaco routes (no build step).
// window.ABACO_PAGE = {api: "/abaco" (Jupyter) | "" (standalone) | "/services/NAME" (JupyterHub),
//                      auth: "jupyter" | "token" | "hub", xsrf (hub: sent with every call)}.
"use strict";
(function () {
  const cfg = window.ABACO_PAGE || { api: "", auth: "token" };
  const TOKEN_KEY = "abaco-nb-token";
  const CONFIRM_MS = 5000;
  const MARKER = /^--- abaco-nb (?:call (-?\d+)|end) @([0-9.]+) ---$/gm;
  const state = { actors: [], actor: null, execution: null, details: {}, armed: null, logsTimer: null };
  const $ = (id) => document.getElementById(id);

  // -- authentication: Jupyter's cookie + XSRF header, or the service token ---------------------------
  if (cfg.auth === "token") {
    const params = new URLSearchParams(location.search);
    if (params.get("token")) {
      sessionStorage.setItem(TOKEN_KEY, params.get("token"));
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    }
  }
  function headers(write) {
    const h = {};
    if (cfg.auth === "token") {
      h["Authorization"] = "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "");
    } else if (cfg.auth === "hub") {
      h["X-XSRFToken"] = cfg.xsrf || "";  // jupyterhub checks it on every cookie-authenticated fetch
    } else if (write) {
      const m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
      if (m) h["X-XSRFToken"] = decodeURIComponent(m[1]);
    }
    return h;
  }
  async function api(path, method, body) {
    const opts = { method: method || "GET", headers: headers(method && method !== "GET"), credentials: "same-origin" };
    if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    const resp = await fetch(cfg.api + "/actors" + path, opts);
    const text = await resp.text();
    let data = null;
    try { data = JSON.parse(text); } catch (e) { data = null; }
    if (!resp.ok) throw new Error((data && data.message) || resp.status + " " + resp.statusText);
    return data ? data.result : text;
  }

  // -- small helpers ------------------------------------------------------------------------------------
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const get = (o, snake) => o[snake] !== undefined ? o[snake] : o[snake.replace(/_([a-z])/g, (_, c) => c.toUpperCase())];
  const time = (s) => s ? Date.parse(String(s).replace(/(\.\d{3})\d*/, "$1")) / 1000 : null;
  function outcome(e) {
    const status = e.status || "", code = get(e, "exit_code"), fs = get(e, "final_state") || {};
    const msg = String(get(e, "status_message") || "");
    if (["SUBMITTED", "REQUESTED", "QUEUED", ""].includes(status)) return "queued";
    if (status === "RUNNING") return "running";
    if (fs.OOMKilled) return "oom";
    if (/ancel|orce quit/.test(msg)) return "cancelled";
    if (status === "ERROR") return "error-status";
    if (code != null && code !== 0 && code !== "0") return "failed";
    return "ok";
  }
  function badge(e) {
    const kind = outcome(e), code = get(e, "exit_code");
    let text = e.status;
    if (kind === "oom") text = "OOM · exit " + code;
    else if (kind === "cancelled") text = "CANCELLED";
    else if ((kind === "failed" || kind === "error-status") && code != null && code !== 0) text += " · exit " + code;
    return `<span class="badge ${kind}">${esc(text)}</span>`;
  }
  function actorBadge(status) {
    const kind = { READY: "ok", ERROR: "failed", BUSY: "running", SUBMITTED: "queued", REQUESTED: "queued" }[status] || "warn";
    return `<span class="badge ${kind}">${esc(status)}</span>`;
  }
  const isExecutor = (a) => (a.hints || []).includes("abaco_nb_executor");
  function showError(err) {
    const el = $("error");
    el.hidden = !err; el.textContent = err ? String(err.message || err) : "";
  }

  // -- actors and executors ---------------------------------------------------------------------------
  async function loadActors() {
    try {
      return await api("/admin");  // one request: every actor with workers, queue and executions counts
    } catch (e) {
      const actors = await api("");
      return Promise.all(actors.map(async (a) => {
        const workers = await api("/" + a.id + "/workers").catch(() => []);
        const queue = await api("/" + a.id + "/messages").catch(() => ({}));
        return { ...a, workers: workers.length, messages: get(queue, "messages") || 0, executions: "" };
      }));
    }
  }
  function drawActors() {
    const rows = state.actors.map((a) => `<tr data-id="${esc(a.id)}" class="${a.id === state.actor ? "selected" : ""}">
      <td>${esc(a.name || "")}</td><td><code>${esc(a.id)}</code></td><td><code>${esc(a.image)}</code></td>
      <td>${actorBadge(a.status)}</td><td>${esc(a.workers)}</td><td>${esc(a.messages)}</td><td>${esc(a.executions)}</td></tr>`);
    $("actors").tBodies[0].innerHTML = rows.join("") || `<tr><td colspan="7" class="muted">no actors yet</td></tr>`;
    for (const tr of $("actors").tBodies[0].rows) if (tr.dataset.id) tr.onclick = () => selectActor(tr.dataset.id);
  }
  async function drawExecutors() {
    const executors = state.actors.filter(isExecutor);
    const rows = await Promise.all(executors.map(async (a) => {
      const summary = (await api("/" + a.id + "/executions").catch(() => ({}))).executions || [];
      const count = (pred) => summary.filter(pred).length;
      const cached = (e) => state.details[e.id];
      const failed = count((e) => cached(e) && ["failed", "oom", "error-status"].includes(outcome(cached(e))));
      return `<tr data-id="${esc(a.id)}"><td>${esc(a.name || a.id)}</td><td>${summary.length}</td>
        <td>${count((e) => e.status === "SUBMITTED")}</td><td>${count((e) => e.status === "RUNNING")}</td>
        <td>${count((e) => e.status === "COMPLETE") - failed}</td><td>${failed}</td></tr>`;
    }));
    $("executors").tBodies[0].innerHTML = rows.join("") || `<tr><td colspan="6" class="muted">no AbacoExecutor yet</td></tr>`;
    for (const tr of $("executors").tBodies[0].rows) if (tr.dataset.id) tr.onclick = () => selectActor(tr.dataset.id);
  }

  // -- one actor: executions, task stream, logs ---------------------------------------------------------
  function selectActor(id) {
    if (state.actor !== id) { state.execution = null; disarm(); $("logs").innerHTML = '<span class="muted">select an execution</span>'; $("log-id").textContent = ""; $("log-status").innerHTML = ""; }
    state.actor = id;
    setHash();
    drawActors();
    refreshActor();
  }
  async function refreshActor() {
    const id = state.actor;
    const actor = state.actors.find((a) => a.id === id);
    $("actor-panel").hidden = !actor;
    if (!actor) return;
    $("actor-id").textContent = actor.id;
    $("actor-name").textContent = actor.name || "";
    $("actor-facts").textContent = `image ${actor.image} · ${actor.stateless === false ? "stateful" : "stateless"}` +
      (get(actor, "status_message") ? " · " + get(actor, "status_message") : "");
    const summary = (await api("/" + id + "/executions")).executions || [];
    if (state.actor !== id) return;  // the user picked another actor meanwhile
    const recent = summary.slice(-25);
    const details = await Promise.all(recent.map(async (e) => {
      const c = state.details[e.id];
      if (c && ["COMPLETE", "ERROR"].includes(c.status)) return c;
      return (state.details[e.id] = await api("/" + id + "/executions/" + e.id));
    }));
    if (state.actor !== id) return;
    $("executions").tBodies[0].innerHTML = details.slice().reverse().map((e) => {
      const start = time(get(e, "start_time")), end = time(get(e, "finish_time"));
      const secs = start && end ? (end - start).toFixed(2) + " s" : "";
      const code = get(e, "exit_code");
      return `<tr data-id="${esc(e.id)}" class="${e.id === state.execution ? "selected" : ""}"><td><code>${esc(e.id)}</code></td>
        <td>${badge(e)}</td><td>${code == null ? "" : esc(code)}</td><td>${secs}</td><td><code>${esc(get(e, "worker_id") || "")}</code></td></tr>`;
    }).join("") || `<tr><td colspan="5" class="muted">no executions yet</td></tr>`;
    for (const tr of $("executions").tBodies[0].rows) if (tr.dataset.id) tr.onclick = () => selectExecution(tr.dataset.id);
    await drawStream(actor, details);
  }
  function parseCalls(text, finished) {
    const marks = [...text.matchAll(MARKER)].map((m) => ({ call: m[1], t: parseFloat(m[2]) }));
    const spans = [];
    marks.forEach((m, i) => {
      if (m.call === undefined) return;
      spans.push({ call: parseInt(m.call, 10), start: m.t, end: i + 1 < marks.length ? marks[i + 1].t : finished });
    });
    return spans;
  }
  const logCache = {};
  async function drawStream(actor, details) {
    const now = Date.now() / 1000;
    const bars = [];
    for (const e of details.slice(-20)) {
      const start = time(get(e, "start_time"));
      if (!start) continue;
      const end = time(get(e, "finish_time")) || (e.status === "RUNNING" ? now : start);
      const lane = get(e, "worker_id") || "?";
      let calls = [];
      if (isExecutor(actor)) {
        let text = logCache[e.id];
        if (text === undefined || e.status === "RUNNING") {
          text = await api("/" + actor.id + "/executions/" + e.id + "/logs").then((l) => (l && l.logs) || "").catch(() => "");
          if (["COMPLETE", "ERROR"].includes(e.status)) logCache[e.id] = text;
        }
        calls = parseCalls(text, e.status === "RUNNING" ? now : end);
      }
      if (calls.length) for (const c of calls) bars.push({ lane, start: c.start, end: c.end || now, kind: outcome(e), label: `call ${c.call} of ${e.id}`, id: e.id });
      else bars.push({ lane, start, end, kind: outcome(e), label: e.id, id: e.id });
    }
    const el = $("stream");
    if (!bars.length) { el.innerHTML = '<span class="muted">nothing has started yet</span>'; return; }
    const lanes = [...new Set(bars.map((b) => b.lane))];
    const t0 = Math.min(...bars.map((b) => b.start)), t1 = Math.max(...bars.map((b) => b.end));
    const span = Math.max(t1 - t0, 1e-3), W = 640, L = 110, H = 20;
    const colour = { ok: "#2e7d32", failed: "#c62828", "error-status": "#c62828", oom: "#6a1b9a", running: "#1565c0", queued: "#757575", cancelled: "#757575" };
    let svg = `<svg class="stream" viewBox="0 0 ${W} ${lanes.length * H + 22}" width="100%" style="max-width:${W}px">`;
    lanes.forEach((l, i) => { svg += `<text x="2" y="${i * H + 14}">worker ${esc(String(l).slice(0, 9))}</text><line class="lane" x1="${L}" x2="${W}" y1="${i * H + H}" y2="${i * H + H}"/>`; });
    for (const b of bars) {
      const x = L + (b.start - t0) / span * (W - L - 4), w = Math.max(1.5, (b.end - b.start) / span * (W - L - 4));
      svg += `<rect class="task-bar" data-id="${esc(b.id)}" x="${x.toFixed(1)}" y="${lanes.indexOf(b.lane) * H + 3}" width="${w.toFixed(1)}" height="${H - 6}" rx="2" fill="${colour[b.kind] || "#757575"}"><title>${esc(b.label)} ${(b.end - b.start).toFixed(3)} s</title></rect>`;
    }
    svg += `<text x="${L}" y="${lanes.length * H + 16}">0 s</text><text x="${W - 4}" y="${lanes.length * H + 16}" text-anchor="end">${span.toFixed(2)} s</text></svg>`;
    el.innerHTML = svg;
    for (const r of el.querySelectorAll(".task-bar")) r.onclick = () => selectExecution(r.dataset.id);
  }
  function selectExecution(id) {
    state.execution = id;
    setHash();
    for (const tr of $("executions").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.id === id);
    followLogs();
  }
  async function followLogs() {
    clearTimeout(state.logsTimer);
    const actor = state.actor, id = state.execution;
    if (!actor || !id) return;
    try {
      const e = await api("/" + actor + "/executions/" + id);
      const logs = await api("/" + actor + "/executions/" + id + "/logs");
      if (state.actor !== actor || state.execution !== id) return;  // switched meanwhile
      state.details[id] = e;
      $("log-id").textContent = id;
      $("log-status").innerHTML = badge(e);
      const text = (logs && logs.logs) || "";
      $("logs").innerHTML = text ? esc(text).replace(MARKER, (m, call) => call === undefined ? "" : `<span class="call">── call ${call} ──</span>`) : '<span class="muted">(no output)</span>';
      const box = $("logs"); box.scrollTop = box.scrollHeight;
      if (!["COMPLETE", "ERROR"].includes(e.status)) state.logsTimer = setTimeout(followLogs, 1000);
    } catch (err) { showError(err); }
  }

  // -- delete: armed for one actor, for a few seconds -----------------------------------------------------
  function disarm() { state.armed = null; $("delete").textContent = "Delete"; $("delete").classList.remove("armed"); }
  $("delete").onclick = async () => {
    const id = state.actor;
    if (!id) return;
    if (!state.armed || state.armed.id !== id || Date.now() > state.armed.until) {
      state.armed = { id, until: Date.now() + CONFIRM_MS };
      $("delete").textContent = "Confirm delete";
      $("delete").classList.add("armed");
      setTimeout(() => { if (state.armed && state.armed.id === id) disarm(); }, CONFIRM_MS);
      return;
    }
    disarm();
    try { await api("/" + id, "DELETE"); state.actor = null; setHash(); await refresh(); } catch (err) { showError(err); }
  };

  // -- the loop, the hash and the theme ---------------------------------------------------------------------
  function setHash() {
    const p = new URLSearchParams();
    if (state.actor) p.set("actor", state.actor);
    if (state.execution) p.set("execution", state.execution);
    history.replaceState(null, "", location.pathname + location.search + (p.toString() ? "#" + p : ""));
  }
  async function refresh() {
    try {
      state.actors = await loadActors();
      showError(null);
      drawActors();
      await drawExecutors();
      if (state.actor) await refreshActor(); else $("actor-panel").hidden = true;
      $("state").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) { showError(err); }
  }
  async function loop() {
    if ($("live").checked) await refresh();
    setTimeout(loop, 2000);
  }
  const dark = localStorage.getItem("abaco-nb-theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  document.documentElement.classList.toggle("dark", dark === "dark");
  $("theme").onclick = () => {
    const isDark = document.documentElement.classList.toggle("dark");
    localStorage.setItem("abaco-nb-theme", isDark ? "dark" : "light");
  };
  $("where").textContent = location.host + (cfg.api || "");
  const hash = new URLSearchParams(location.hash.slice(1));
  state.actor = hash.get("actor");
  state.execution = hash.get("execution");
  window.abacoPage = { state, refresh };
  refresh().then(() => { if (state.execution) followLogs(); setTimeout(loop, 2000); });
})();

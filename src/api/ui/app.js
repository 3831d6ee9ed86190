// CoreMachine operator page: the job list (/api/ui), a job page (/api/ui/jobs/{job_id}) and a
// platform request's page (/api/ui/requests/{request_id}).
// Plain browser JavaScript, no build step; every value from the API is escaped before display.
"use strict";

const REFRESH_MS = 5000;
const TERMINAL = ["completed", "completed_with_errors", "failed", "cancelled"];
const params = new URLSearchParams(location.search);

// ---------------------------------------------------------------- the function key
// The page itself (HTML, JS, CSS) is anonymous; the data calls are function-level. The operator's
// key is asked for once (when a call answers 401) and kept in this tab's sessionStorage only,
// sent as `x-functions-key`. A `?code=` in the address (the portal's "Get function URL") is taken
// the same way and removed from the address bar. Behind App Service Authentication with anonymous
// data functions no call answers 401 and no key is ever asked for (docs/operations.md).
const KEY_STORE = "coremachine.functionKey";
if (params.get("code")) {
  sessionStorage.setItem(KEY_STORE, params.get("code"));
  params.delete("code");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
}

function functionKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

/** A data call answered 401: the key is missing or wrong. */
class KeyNeeded extends Error {}

async function api(path, init = {}) {
  const headers = { Accept: "application/json", ...(init.headers || {}) };
  if (functionKey()) headers["x-functions-key"] = functionKey();
  const r = await fetch(path, { ...init, headers });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) throw new KeyNeeded(body.message || "this call needs a function key");
  if (!r.ok) {
    const e = new Error(`${r.status} ${body.error || ""}: ${body.message || r.statusText}`);
    e.status = r.status;
    e.body = body;
    throw e;
  }
  return body;
}

// Shows the key form in place of the view; `retry` re-renders the view once a key is entered.
function askForKey(why, retry) {
  clearTimeout(timer);
  const app = document.getElementById("app");
  const had = functionKey();
  app.innerHTML = `<form class="key-form" id="key-form" data-testid="key-form">
    <h1>Function key</h1>
    <p class="${had ? "error" : "muted"}" data-testid="key-why">${had ? "The key was refused: " : ""}${esc(why)}</p>
    <p class="muted">The job data behind this page needs a function key (Azure portal: the function app,
      App keys, or <code>az functionapp keys list</code>). It is kept for this browser tab only.</p>
    <label>function key <input type="password" name="key" autocomplete="off" required data-testid="key-input"></label>
    <button type="submit" data-testid="key-submit">Use key</button>
  </form>`;
  const form = document.getElementById("key-form");
  form.elements.key.focus();
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY_STORE, form.elements.key.value.trim());
    showForget();
    retry();
  });
}

function showForget() {
  document.getElementById("forget-key").hidden = !functionKey();
}

function esc(v) {
  if (v === null || v === undefined) return "";
  return String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? esc(ts) : d.toISOString().replace("T", " ");
}

function ms(v) {
  if (v === null || v === undefined) return "";
  return v < 1000 ? `${v} ms` : `${(v / 1000).toFixed(1)} s`;
}

// "[class] type: message", without repeating what the message already says.
function errorText(cls, type, message) {
  let text = message || "";
  if (type && !text.includes(type)) text = text ? `${type}: ${text}` : type;
  if (cls && !text.startsWith("[")) text = `[${cls}] ${text}`;
  return esc(text);
}

function badge(status) {
  return `<span class="badge ${esc(status)}">${esc(status)}</span>`;
}

function short(id) {
  return id ? `${esc(id.slice(0, 12))}…` : "";
}

let timer = null;
function schedule(fn) {
  clearTimeout(timer);
  if (document.getElementById("auto-refresh").checked) timer = setTimeout(fn, REFRESH_MS);
}

// Screen readers hear what changed (a job's status, an action's outcome), not each re-render.
let announced = "";
function announce(text) {
  if (text === announced) return;
  announced = text;
  document.getElementById("live").textContent = text;
}

function stamp() {
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// ---------------------------------------------------------------- actions

const LIVE = ["queued", "processing"];
const RESUBMITTABLE = ["failed", "cancelled"];
// The last action's outcome, shown above the view until the next action (survives re-renders).
let lastResult = null;

function post(path) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
}

// Asks for confirmation in the page's <dialog>; resolves to null (backed out) or { reason }.
function confirmAction({ title, text, confirm, reason = false }) {
  const dlg = document.getElementById("confirm");
  const form = dlg.querySelector("form");
  dlg.querySelector("h2").textContent = title;
  dlg.querySelector("p").textContent = text;
  const reasonField = dlg.querySelector(".reason");
  reasonField.hidden = !reason;
  form.elements.reason.value = "";
  form.elements.reason.required = reason;
  dlg.querySelector('[value="confirm"]').textContent = confirm;
  clearTimeout(timer); // no refresh under an open dialog
  return new Promise((resolve) => {
    dlg.onclose = () => resolve(dlg.returnValue === "confirm" ? { reason: form.elements.reason.value.trim() } : null);
    dlg.returnValue = "";
    dlg.showModal();
    (reason ? form.elements.reason : dlg.querySelector('[value="confirm"]')).focus();
  });
}

// What one action on one job did, in words (or why it was refused).
async function runAction(jobId, action, reason) {
  const id = `job ${jobId.slice(0, 12)}…`;
  try {
    if (action === "cancel") {
      const r = await post(`/api/jobs/${jobId}/cancel?reason=${encodeURIComponent(reason || "cancelled from the web page")}`);
      return { ok: true, text: `${id} cancelled: ${r.message}` };
    }
    const r = await post(`/api/jobs/${jobId}/resubmit?from=${action}`);
    const what = action === "failed_tasks"
      ? `${r.retried_tasks} failed task(s) of stage ${r.from_stage} queued again, ${r.kept_tasks} completed kept`
      : `starts at stage ${r.from_stage}${r.kept_stages.length ? ", stages " + r.kept_stages.join(", ") + " kept" : ""}`;
    return { ok: true, text: `${id} resubmitted as attempt ${r.attempt} (after a ${r.previous_status} attempt ${r.attempt - 1}): ${what}` };
  } catch (e) {
    if (e instanceof KeyNeeded) throw e;
    return { ok: false, text: `${id}: ${e.body && e.body.message ? e.body.message : e.message}` };
  }
}

function resultBanner() {
  if (!lastResult) return "";
  const cls = lastResult.every((r) => r.ok) ? "ok" : "error";
  return `<div class="result ${cls}" data-testid="action-result">${lastResult.map((r) => `<div class="${r.ok ? "" : "error"}">${esc(r.text)}</div>`).join("")}</div>`;
}

const ACTIONS = {
  cancel: { label: "Cancel job", title: "Cancel", confirm: "Cancel job", reason: true,
    text: "Queued tasks never run; running tasks finish and are recorded, but the job does not advance. The reason is recorded with the event." },
  failed_tasks: { label: "Retry failed tasks", title: "Retry the failed tasks", confirm: "Retry failed tasks",
    text: "A new attempt: only the failed or cancelled tasks of the stage where the job stopped run again; its completed tasks keep their results." },
  failed_stage: { label: "Resubmit from the failed stage", title: "Resubmit from the failed stage", confirm: "Resubmit",
    text: "A new attempt from the stage where the job stopped: all its tasks run again (the earlier attempt's are archived); earlier stages are kept." },
  start: { label: "Resubmit from the start", title: "Resubmit from stage 1", confirm: "Resubmit from the start",
    text: "A new attempt from stage 1: every stage runs again (the earlier attempt's tasks are archived)." },
};

// Confirms, runs `action` on every job of `jobIds`, keeps the outcome and re-renders.
async function act(action, jobIds, rerender) {
  const a = ACTIONS[action];
  const many = jobIds.length > 1 ? ` (${jobIds.length} jobs)` : "";
  const ok = await confirmAction({ title: a.title + many, text: a.text, confirm: a.confirm + many, reason: a.reason });
  if (!ok) return rerender();
  const results = [];
  try {
    for (const id of jobIds) results.push(await runAction(id, action, ok.reason));
  } catch (e) {
    return askForKey(e.message, rerender);
  }
  lastResult = results;
  announce(results.map((r) => r.text).join(". "));
  rerender();
}

// ---------------------------------------------------------------- job list

// "created within" choices of the list (hours), and its page size.
const WITHIN = { "1h": 1, "24h": 24, "7d": 168, "30d": 720 };
const PAGE = 50;

function duration(from, to) {
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  if (!(ms >= 0)) return "";
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function progress(done, total) {
  const pct = total ? Math.round((100 * done) / total) : 0;
  return `<span class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="${esc(total)}" aria-valuenow="${esc(done)}"
    title="${esc(done)} of ${esc(total)} tasks ended"><span style="width:${pct}%"></span></span> ${esc(done)} / ${esc(total)}`;
}

// Job ids ticked in the list (kept across the list's refreshes).
const selected = new Set();

async function renderList() {
  const app = document.getElementById("app");
  // Never re-render under the operator's typing.
  if (document.activeElement && document.activeElement.dataset.testid === "job-search") return schedule(renderList);
  document.getElementById("where").textContent = "jobs";
  const status = params.get("status") || "";
  const jobType = params.get("job_type") || "";
  const search = (params.get("q") || "").trim().toLowerCase();
  const within = WITHIN[params.get("within")] ? params.get("within") : "";
  const cursor = params.get("cursor") || "";
  let data;
  try {
    const q = new URLSearchParams();
    if (status) q.set("status", status);
    if (jobType) q.set("job_type", jobType);
    if (search) q.set("q", search);
    if (within) q.set("since", new Date(Date.now() - WITHIN[within] * 3600e3).toISOString());
    if (cursor) q.set("cursor", cursor);
    q.set("limit", String(PAGE));
    data = await api("/api/ui/data/jobs?" + q.toString());
  } catch (e) {
    if (e instanceof KeyNeeded) return askForKey(e.message, renderList);
    app.innerHTML = `<p class="error" data-testid="load-error">Could not load jobs: ${esc(e.message)}</p>`;
    schedule(renderList);
    return;
  }
  const opt = (v, cur) => `<option value="${esc(v)}"${v === cur ? " selected" : ""}>${esc(v || "any")}</option>`;
  const rows = data.jobs
    .map(
      (j) => `<tr data-testid="job-row" data-job-id="${esc(j.job_id)}" data-status="${esc(j.status)}" class="${esc(j.status)}">
        <td><input type="checkbox" data-testid="job-select" value="${esc(j.job_id)}" aria-label="select job ${short(j.job_id)}"${selected.has(j.job_id) ? " checked" : ""}></td>
        <td class="mono"><a href="${esc("/api/ui/jobs/" + j.job_id)}">${short(j.job_id)}</a></td>
        <td>${esc(j.job_type)}</td>
        <td>${badge(j.status)}</td>
        <td>${esc(j.stage)} / ${esc(j.total_stages)}</td>
        <td data-testid="job-progress">${progress(j.done_tasks, j.task_count)}${j.failed_tasks ? ` <span class="error">(${esc(j.failed_tasks)} failed)</span>` : ""}</td>
        <td>${esc(j.attempt)}</td>
        <td>${duration(j.created_at, j.completed_at)}</td>
        <td>${when(j.created_at)}</td>
        <td class="error">${esc(j.error_details || "")}</td>
      </tr>`
    )
    .join("");
  const shown = new Set(data.jobs.map((j) => j.job_id));
  for (const id of [...selected]) if (!shown.has(id)) selected.delete(id);
  const statusOf = new Map(data.jobs.map((j) => [j.job_id, j.status]));
  const pick = (ok) => [...selected].filter((id) => ok.includes(statusOf.get(id)));
  const bulk = () => {
    const n = selected.size;
    return `<div class="bulk" data-testid="bulk-actions">
      <span class="muted">${n} selected</span>
      <button type="button" data-bulk="cancel" data-testid="bulk-cancel"${pick(LIVE).length ? "" : " disabled"}>Cancel selected (${pick(LIVE).length})</button>
      <button type="button" data-bulk="failed_stage" data-testid="bulk-resubmit"${pick(RESUBMITTABLE).length ? "" : " disabled"}>Resubmit selected (${pick(RESUBMITTABLE).length})</button>
    </div>`;
  };
  app.innerHTML = `
    ${resultBanner()}
    <h1>Jobs</h1>
    <form class="filters" id="filters">
      <label>status <select name="status">${["", ...data.statuses].map((s) => opt(s, status)).join("")}</select></label>
      <label>type <select name="job_type">${["", ...data.job_types].map((t) => opt(t, jobType)).join("")}</select></label>
      <label>created within <select name="within">${["", ...Object.keys(WITHIN)].map((w) => opt(w, within)).join("")}</select></label>
      <label>job id <input name="q" value="${esc(search)}" placeholder="id or its first characters" size="16" maxlength="64" data-testid="job-search"></label>
      <span class="muted" data-testid="job-count">${esc(data.count)} job(s)${cursor ? " (a later page)" : ""}, newest first</span>
    </form>
    <div id="bulk">${bulk()}</div>
    ${data.jobs.length ? `<div class="scroll"><table data-testid="job-list"><thead><tr><th><input type="checkbox" id="select-all" aria-label="select every job shown"></th><th>job</th><th>type</th><th>status</th><th>stage</th>
      <th>progress</th><th>attempt</th><th>duration</th><th>created</th><th>error</th></tr></thead><tbody>${rows}</tbody></table></div>`
      : `<p class="empty" data-testid="job-list-empty">No jobs match.</p>`}
    <nav class="pager">${cursor ? `<button type="button" data-page="">first page</button>` : ""}${data.next_cursor ? `<button type="button" data-page="${esc(data.next_cursor)}" data-testid="jobs-next">next page</button>` : ""}</nav>`;
  app.querySelectorAll(".pager [data-page]").forEach((b) =>
    b.addEventListener("click", () => {
      const q = new URLSearchParams(location.search);
      b.dataset.page ? q.set("cursor", b.dataset.page) : q.delete("cursor");
      location.search = q.toString();
    })
  );
  const filters = document.getElementById("filters");
  const applyFilters = (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(filters).entries()) if (v.trim()) q.set(k, v.trim());
    location.search = q.toString();
  };
  filters.addEventListener("change", applyFilters);
  filters.addEventListener("submit", applyFilters);
  const list = document.querySelector('[data-testid="job-list"]');
  const refreshBulk = () => (document.getElementById("bulk").innerHTML = bulk());
  if (list) {
    list.addEventListener("change", (ev) => {
      const boxes = [...list.querySelectorAll('[data-testid="job-select"]')];
      if (ev.target.id === "select-all") boxes.forEach((b) => (b.checked = ev.target.checked));
      for (const b of boxes) b.checked ? selected.add(b.value) : selected.delete(b.value);
      refreshBulk();
    });
  }
  document.getElementById("bulk").addEventListener("click", (ev) => {
    const action = ev.target.dataset && ev.target.dataset.bulk;
    if (!action) return;
    const ids = pick(action === "cancel" ? LIVE : RESUBMITTABLE);
    act(action, ids, () => {
      selected.clear();
      renderList();
    });
  });
  stamp();
  schedule(renderList);
}

// ---------------------------------------------------------------- job page

function stageBar(s) {
  const total = Math.max(s.task_count || 0, 1);
  const order = ["completed", "failed", "processing", "queued", "cancelled"];
  const segs = order
    .filter((k) => s.tasks && s.tasks[k])
    .map((k) => `<span class="${k}" title="${k}: ${esc(s.tasks[k])}" style="width:${(100 * s.tasks[k]) / total}%"></span>`)
    .join("");
  const counts = order.filter((k) => s.tasks && s.tasks[k]).map((k) => `${k} ${esc(s.tasks[k])}`).join(", ");
  return `<div class="stage" data-testid="stage" data-stage="${esc(s.stage)}" data-status="${esc(s.status)}">
    <div><b>Stage ${esc(s.stage)}</b> ${esc(s.name || "")} ${badge(s.status)}</div>
    <div class="bar" data-testid="stage-bar" role="progressbar" aria-valuemin="0" aria-valuemax="${esc(total)}"
      aria-valuenow="${esc((s.tasks && (s.tasks.completed || 0) + (s.tasks.failed || 0)) || 0)}">${segs}</div>
    <div class="muted">${esc(s.task_count)} task(s)${counts ? ": " + counts : ""}${s.retries ? `, ${esc(s.retries)} retr${s.retries === 1 ? "y" : "ies"}` : ""}${s.duration_ms != null ? ", " + ms(s.duration_ms) : ""}${rateAndEta(s)}</div>
  </div>`;
}

// The job's events, fetched incrementally: the first load reads up to EVENT_PAGES pages from
// the start, every refresh only what came after the last event seen (`after` cursor).
const EVENT_PAGES = 5;
const EVENTS_SHOWN = 500;
let eventCache = { jobId: null, events: [], after: 0, more: false };

async function newEvents(jobId) {
  if (eventCache.jobId !== jobId) eventCache = { jobId, events: [], after: 0, more: false };
  let more = false;
  for (let page = 0; page < EVENT_PAGES; page++) {
    const p = await api(`/api/jobs/${jobId}/events?limit=1000&after=${eventCache.after}`);
    // Two refreshes may overlap (an action's re-render and the timer): keep each event once.
    const fresh = p.events.filter((e) => e.event_id > eventCache.after);
    eventCache.events.push(...fresh);
    if (fresh.length) eventCache.after = fresh[fresh.length - 1].event_id;
    more = Boolean(p.next_cursor);
    if (!more) break;
  }
  eventCache.more = more;
  // Keep what the page can show (the milestones are read from the summary, not from here).
  if (eventCache.events.length > 4 * EVENTS_SHOWN) eventCache.events = eventCache.events.slice(-EVENTS_SHOWN);
  return eventCache;
}

// The task table's view: status filter and the cursors of the pages seen (to go back).
let taskView = { jobId: null, status: "", cursors: [""], open: null, focus: false };

function taskQuery(jobId) {
  if (taskView.jobId !== jobId) taskView = { jobId, status: "", cursors: [""], open: null, focus: false };
  const q = new URLSearchParams({ limit: "100" });
  if (taskView.status) q.set("status", taskView.status);
  const c = taskView.cursors[taskView.cursors.length - 1];
  if (c) q.set("cursor", c);
  return `/api/ui/data/jobs/${jobId}/tasks?${q}`;
}

// A running stage's rate (tasks ended per second since it started) and time left at that rate.
function rateAndEta(s) {
  if (s.status !== "running" || !s.started_at || !s.tasks) return "";
  const done = (s.tasks.completed || 0) + (s.tasks.failed || 0) + (s.tasks.cancelled || 0);
  const secs = (Date.now() - new Date(s.started_at)) / 1000;
  if (!(secs > 0) || done === 0) return ` <span data-testid="stage-rate">running for ${duration(s.started_at)}, no task ended yet</span>`;
  const rate = done / secs;
  const left = Math.max((s.task_count || 0) - done, 0);
  const eta = left ? `, about ${duration(new Date(Date.now() - (1000 * left) / rate).toISOString())} left` : "";
  return ` <span data-testid="stage-rate">${rate >= 10 ? Math.round(rate) : rate.toFixed(1)} tasks/s${eta}</span>`;
}

// The actions that apply to the job now, and for a stopped job what to do next.
function jobActions(timeline, firstFail) {
  const st = timeline.status;
  const actions = [];
  if (LIVE.includes(st)) actions.push("cancel");
  let hint = "";
  if (RESUBMITTABLE.includes(st)) {
    const stopped = timeline.stages.find((s) => s.stage === timeline.current_stage);
    const t = (stopped && stopped.tasks) || {};
    if ((t.failed || 0) + (t.cancelled || 0) + (t.queued || 0) > 0) actions.push("failed_tasks");
    actions.push("failed_stage", "start");
    const cls = firstFail && firstFail.error_class;
    const retry = actions.includes("failed_tasks") ? "Retry failed tasks" : "Resubmit from the failed stage";
    const flag = actions.includes("failed_tasks") ? "--failed-tasks" : "";
    const cmd = `coremachine resubmit ${timeline.job_id}${flag ? " " + flag : ""}`;
    const what = st === "cancelled"
      ? `The job was cancelled. To finish it, use <b>${retry}</b>`
      : cls === "transient"
        ? `A transient error outlasted its retries (a service or the network was unavailable). Retrying may help once it is back: <b>${retry}</b>`
        : cls === "permanent"
          ? `A permanent error: running it again as it is fails the same way. Fix what the error names (the input, a missing blob, the job type's code), then <b>${retry}</b>`
          : `To run it again, use <b>${retry}</b>`;
    hint = `<p class="hint" data-testid="next-step">${what}, or from a shell: <code>${esc(cmd)}</code></p>`;
  }
  if (!actions.length) return "";
  const buttons = actions
    .map((a) => `<button type="button" data-action="${a}" data-testid="action-${a}">${esc(ACTIONS[a].label)}</button>`)
    .join("");
  return `<section class="actions" aria-label="actions">${hint}<div class="buttons" data-testid="job-actions">${buttons}</div></section>`;
}

// ---------------------------------------------------------------- job parameters and result

// Longest JSON shown inline; the rest is one click away (the API route).
const JSON_SHOWN = 20000;

function jsonBlock(v, testid, href) {
  let text = JSON.stringify(v, null, 2);
  const cut = text.length > JSON_SHOWN;
  if (cut) text = text.slice(0, JSON_SHOWN);
  return `<pre class="json" data-testid="${esc(testid)}" tabindex="0">${esc(text)}</pre>${cut ? `<p class="muted">cut at ${JSON_SHOWN} characters: the whole value is at <a href="${esc(href)}">${esc(href)}</a></p>` : ""}`;
}

// The job row (`GET /api/jobs/{id}`): parameters never change and the result only when the job
// ends, so it is read again only when the status or the attempt changed.
let jobInfo = null;

async function jobParameters(jobId, timeline) {
  if (!jobInfo || jobInfo.job_id !== jobId || jobInfo.status !== timeline.status || jobInfo.attempt !== timeline.attempt) {
    jobInfo = await api(`/api/jobs/${jobId}`);
  }
  return jobInfo;
}

function jobParametersHtml(job) {
  const href = `/api/jobs/${job.job_id}`;
  const result = job.result_data != null
    ? jsonBlock(job.result_data, "job-result", href)
    : `<p class="muted" data-testid="job-result-none">${TERMINAL.includes(job.status) ? `none: the job ended ${esc(job.status)} without a result` : "none yet: the job has not finished"}</p>`;
  return `<section class="params" aria-label="parameters and result" data-testid="job-params-section">
    <div><h2>Parameters</h2>${jsonBlock(job.parameters, "job-parameters", href)}</div>
    <div><h2>Result</h2>${result}</div>
  </section>`;
}

// ---------------------------------------------------------------- task detail

// Reads the open task's detail (`GET /api/jobs/{id}/tasks/{task_id}`); a failed read is shown in
// the panel, not in place of the page.
async function taskDetail(jobId) {
  if (!taskView.open) return null;
  try {
    return await api(`/api/jobs/${jobId}/tasks/${taskView.open}`);
  } catch (e) {
    if (e instanceof KeyNeeded) throw e;
    return { task_id: taskView.open, loadError: e.message };
  }
}

function taskDetailHtml(d) {
  if (!d) return "";
  const close = `<button type="button" data-task-close data-testid="task-detail-close">Close</button>`;
  if (d.loadError) {
    return `<section class="task-detail" id="task-detail" data-testid="task-detail" aria-label="task ${short(d.task_id)}">
      <h2>Task ${short(d.task_id)} ${close}</h2><p class="error" data-testid="task-detail-error">${esc(d.loadError)}</p></section>`;
  }
  const href = `/api/jobs/${d.parent_job_id}/tasks/${d.task_id}`;
  const rows = d.attempts
    .map(
      (a) => `<tr data-testid="task-attempt" data-outcome="${esc(a.outcome)}" data-job-attempt="${esc(a.job_attempt)}" data-attempt="${esc(a.attempt)}">
        <td>${esc(a.job_attempt)}</td><td>${esc(a.attempt)}</td><td>${when(a.started_at)}</td><td>${when(a.ended_at)}</td>
        <td>${ms(a.duration_ms)}</td><td>${badge(a.outcome)}</td>
        <td class="error">${a.error_type || a.error_message ? errorText(a.error_class, a.error_type, a.error_message) : ""}</td></tr>`
    )
    .join("");
  return `<section class="task-detail" id="task-detail" data-testid="task-detail" data-task-id="${esc(d.task_id)}" aria-label="task ${short(d.task_id)}">
    <h2>Task ${esc(d.stage)}/${esc(d.task_index)} ${badge(d.status)} ${close}</h2>
    <dl class="facts">
      <dt>task id</dt><dd class="mono">${esc(d.task_id)}</dd>
      <dt>type</dt><dd>${esc(d.task_type)} (stage ${esc(d.stage)}, index ${esc(d.task_index)}, job attempt ${esc(d.job_attempt)})</dd>
      ${d.archived_at ? `<dt>archived</dt><dd>${when(d.archived_at)} (a resubmit replaced this attempt's tasks)</dd>` : ""}
      ${d.error_details ? `<dt>error</dt><dd class="error" data-testid="task-detail-error">${errorText(d.error_class, null, d.error_details)}</dd>` : ""}
    </dl>
    <h3>Parameters</h3>${jsonBlock(d.parameters, "task-parameters", href)}
    <h3>Result</h3>${d.result_data != null ? jsonBlock(d.result_data, "task-result", href) : `<p class="muted">none</p>`}
    <h3>Attempts (${esc(d.attempts.length)})</h3>
    ${d.attempts.length ? `<div class="scroll"><table data-testid="task-attempts"><thead><tr><th title="the job attempt">job attempt</th><th title="the task's attempt (1 + its retries)">attempt</th>
      <th>started</th><th>ended</th><th>duration</th><th>outcome</th><th>error</th></tr></thead><tbody>${rows}</tbody></table></div>` : `<p class="muted">Not run yet.</p>`}
    ${d.history_truncated ? `<p class="muted">Only the first attempts are shown: the task has more events than are read here.</p>` : ""}
  </section>`;
}

// Opening a task (its id button in the task table) and closing its panel.
function wireTaskDetail(app, rerender) {
  app.querySelectorAll("[data-task-open]").forEach((b) =>
    b.addEventListener("click", () => {
      taskView.open = b.dataset.taskOpen;
      taskView.focus = true;
      rerender();
    })
  );
  const closeBtn = app.querySelector("[data-task-close]");
  if (closeBtn) closeBtn.addEventListener("click", () => {
    const was = taskView.open;
    taskView.open = null;
    rerender().then(() => {
      const back = document.querySelector(`[data-task-open="${CSS.escape(was)}"]`);
      if (back) back.focus();
    });
  });
  const panel = document.getElementById("task-detail");
  if (panel && taskView.focus) {
    taskView.focus = false;
    panel.scrollIntoView({ block: "start" });
    closeBtn.focus({ preventScroll: true });
  }
}

async function renderJob(jobId) {
  const app = document.getElementById("app");
  document.getElementById("where").textContent = "job " + jobId.slice(0, 12) + "…";
  let timeline, summary, tasks, cache, events, job, detail;
  try {
    [timeline, summary, tasks, cache, detail] = await Promise.all([
      api(`/api/jobs/${jobId}/timeline`),
      api(`/api/jobs/${jobId}/events/summary`),
      api(taskQuery(jobId)),
      newEvents(jobId),
      taskDetail(jobId),
    ]);
    job = await jobParameters(jobId, timeline);
    events = cache.events.slice(-EVENTS_SHOWN);
  } catch (e) {
    if (e instanceof KeyNeeded) return askForKey(e.message, () => renderJob(jobId));
    app.innerHTML = `<p><a href="/api/ui">← all jobs</a></p>
      <p class="error" data-testid="load-error">Could not load job ${esc(jobId)}: ${esc(e.message)}</p>`;
    schedule(() => renderJob(jobId));
    return;
  }
  const last = summary.last_successful_step;
  const firstFail = summary.first_failure;
  // The facts describe the current attempt; earlier ones are listed with their outcome.
  const earlier = [...(summary.earlier_attempts || [])].reverse();
  const taskRows = tasks.tasks
    .map(
      (t) => `<tr data-testid="task-row" data-task-id="${esc(t.task_id)}" data-status="${esc(t.status)}" class="${esc(t.status)}">
        <td>${esc(t.stage)}</td><td>${esc(t.task_index)}</td><td>${esc(t.task_type)}</td><td>${badge(t.status)}</td>
        <td>${esc(t.attempts)}</td><td>${ms(t.duration_ms)}</td>
        <td class="error" data-testid="task-error">${t.error_details ? errorText(t.error_class, null, t.error_details) : ""}</td>
        <td class="mono"><button type="button" class="link mono" data-task-open="${esc(t.task_id)}" data-testid="task-open"
          title="details of task ${esc(t.task_id)}"${t.task_id === taskView.open ? ' aria-expanded="true"' : ""}>${short(t.task_id)}</button></td></tr>`
    )
    .join("");
  const eventRows = events
    .map((e) => {
      const isLast = last && e.event_id === last.event_id;
      const isFirstFail = firstFail && e.event_id === firstFail.event_id;
      const err = e.error_message || e.error_type ? errorText(e.error_class, e.error_type, e.error_message) : "";
      return `<tr data-testid="event-row" data-event-id="${esc(e.event_id)}" data-status="${esc(e.event_status)}"
          class="event ${esc(e.event_status)}${isLast ? " last-success" : ""}${isFirstFail ? " first-failure" : ""}">
        <td>${when(e.created_at)}</td><td>${esc(e.event_type)}${isLast ? ` <span class="marker" data-testid="last-success-marker">◀ last successful step</span>` : ""}${isFirstFail ? ` <span class="marker fail" data-testid="first-failure-marker">◀ first failure</span>` : ""}</td>
        <td>${badge(e.event_status)}</td><td class="mono">${esc(e.checkpoint || "")}</td><td>${esc(e.stage ?? "")}</td>
        <td class="mono" title="${esc(e.task_id || "")}">${short(e.task_id)}</td><td>${esc(e.attempt ?? "")}</td><td data-testid="event-job-attempt">${esc(e.job_attempt ?? "")}</td><td>${ms(e.duration_ms)}</td>
        <td class="error">${err}</td></tr>`;
    })
    .join("");
  app.innerHTML = `
    <p><a href="/api/ui">← all jobs</a></p>
    ${resultBanner()}
    <h1 data-testid="job-title">${esc(timeline.job_type)} ${badge(timeline.status)}</h1>
    <dl class="facts">
      <dt>job id</dt><dd class="mono" data-testid="job-id">${esc(timeline.job_id)}</dd>
      <dt>stage</dt><dd>${esc(timeline.current_stage)} of ${esc(timeline.total_stages)} (attempt ${esc(timeline.attempt)})</dd>
      <dt>correlation id</dt><dd class="mono">${esc(timeline.correlation_id || "")}</dd>
      <dt>created</dt><dd>${when(timeline.created_at)}</dd>
      <dt>finished</dt><dd>${when(timeline.completed_at)}</dd>
      <dt>last successful step${earlier.length ? ` (attempt ${esc(summary.current_attempt)})` : ""}</dt><dd data-testid="last-success">${last ? `${esc(last.event_type)} (${esc(last.checkpoint || "")}${last.stage != null ? ", stage " + esc(last.stage) : ""}) at ${when(last.created_at)}` : "none"}</dd>
      ${firstFail ? `<dt>first failure${earlier.length ? ` (attempt ${esc(summary.current_attempt)})` : ""}</dt><dd class="error" data-testid="first-failure">${esc(firstFail.event_type)}${firstFail.stage != null ? " in stage " + esc(firstFail.stage) : ""}: ${errorText(firstFail.error_class, firstFail.error_type, firstFail.error_message)}</dd>` : ""}
      ${timeline.error_details ? `<dt>error</dt><dd class="error" data-testid="job-error">${esc(timeline.error_details)}</dd>` : ""}
      ${earlier.length ? `<dt>earlier attempts</dt><dd data-testid="earlier-attempts"><ul class="attempts">${earlier
        .map((a) => `<li data-testid="earlier-attempt" data-attempt="${esc(a.attempt)}" data-status="${esc(a.status)}">attempt ${esc(a.attempt)}: ${badge(a.status)} at stage ${esc(a.stage)}${a.ended_at ? `, ended ${when(a.ended_at)}` : ""}${a.error_details ? ` <span class="error">${esc(a.error_details)}</span>` : ""}</li>`)
        .join("")}</ul></dd>` : ""}
    </dl>
    ${jobActions(timeline, firstFail)}
    ${jobParametersHtml(job)}
    <h2>Stages</h2>
    <div data-testid="stages">${timeline.stages.map(stageBar).join("")}</div>
    <div id="inputs-section" data-testid="inputs-section"></div>
    <h2>Tasks (${esc(tasks.total)})</h2>
    <form class="filters" id="task-filter">
      <label>status <select name="status" data-testid="task-status-filter">${["", ...tasks.statuses].map((v) => `<option value="${esc(v)}"${v === taskView.status ? " selected" : ""}>${esc(v || "any")}${v ? ` (${esc(tasks.totals.by_status[v] || 0)})` : ""}</option>`).join("")}</select></label>
      <span class="muted" data-testid="task-range">${tasks.count ? `${esc((taskView.cursors.length - 1) * tasks.limit + 1)}–${esc((taskView.cursors.length - 1) * tasks.limit + tasks.count)} of ${esc(tasks.matching)}${taskView.status ? ` ${esc(taskView.status)}` : ""}` : `0 of ${esc(tasks.matching)}`} · ${esc(tasks.total)} task(s) in all: ${Object.entries(tasks.totals.by_status).map(([k, v]) => `${esc(k)} ${esc(v)}`).join(", ")} · failures first</span>
      ${taskView.cursors.length > 1 ? `<button type="button" data-tasks="prev" data-testid="tasks-prev">previous</button>` : ""}
      ${tasks.next_cursor ? `<button type="button" data-tasks="next" data-next="${esc(tasks.next_cursor)}" data-testid="tasks-next">next</button>` : ""}
    </form>
    ${tasks.tasks.length ? `<div class="scroll"><table data-testid="task-table"><thead><tr><th>stage</th><th>index</th><th>type</th><th>status</th><th>attempts</th>
      <th>duration</th><th>error</th><th>task</th></tr></thead><tbody>${taskRows}</tbody></table></div>` : `<p class="empty">No tasks yet.</p>`}
    ${taskDetailHtml(detail)}
    <h2>Events (${esc(summary.total_events)})</h2>
    ${summary.total_events > events.length ? `<p class="muted" data-testid="events-note">The last ${esc(events.length)} of ${esc(summary.total_events)} events${cache.more ? " (more are still loading)" : ""}; the first failure and the last successful step are in the facts above.</p>` : ""}
    <div class="scroll"><table data-testid="event-timeline"><thead><tr><th>time</th><th>event</th><th>status</th><th>checkpoint</th><th>stage</th>
      <th>task</th><th title="the task's attempt (1 + its retries)">attempt</th><th title="the job attempt the event belongs to">job attempt</th><th>duration</th><th>error</th></tr></thead><tbody>${eventRows}</tbody></table></div>`;
  const rerender = () => renderJob(jobId);
  announce(`job ${jobId.slice(0, 12)} is ${timeline.status} at stage ${timeline.current_stage}`);
  const tf = document.getElementById("task-filter");
  tf.addEventListener("change", () => {
    taskView.status = tf.elements.status.value;
    taskView.cursors = [""];
    rerender();
  });
  tf.addEventListener("click", (ev) => {
    const b = ev.target.closest("[data-tasks]");
    if (!b) return;
    if (b.dataset.tasks === "next") taskView.cursors.push(b.dataset.next);
    else taskView.cursors.pop();
    rerender();
  });
  app.querySelectorAll("[data-action]").forEach((b) =>
    b.addEventListener("click", () => act(b.dataset.action, [jobId], rerender))
  );
  wireTaskDetail(app, rerender);
  stamp();
  if (TERMINAL.includes(timeline.status)) renderInputs(jobId);
  else schedule(rerender);
}

// ---- Per-input outcomes: a job whose result lists `inputs` (process_raster_collection) ----
// One page at a time from /api/ui/data/jobs/{id}/inputs (failures first), so a collection of
// thousands of rasters never loads every outcome, nor any task row, to show what happened to each.
const INPUTS_PAGE = 50;
const inputsView = { jobId: null, offset: 0, outcome: "" };

async function renderInputs(jobId) {
  const box = document.getElementById("inputs-section");
  if (!box) return;
  if (inputsView.jobId !== jobId) Object.assign(inputsView, { jobId, offset: 0, outcome: "" });
  const q = `limit=${INPUTS_PAGE}&offset=${inputsView.offset}${inputsView.outcome ? "&outcome=" + encodeURIComponent(inputsView.outcome) : ""}`;
  let d;
  try {
    d = await api(`/api/ui/data/jobs/${jobId}/inputs?${q}`);
  } catch (e) {
    if (e instanceof KeyNeeded) return;
    box.innerHTML = `<p class="error" data-testid="inputs-error">Could not load the input outcomes: ${esc(e.message)}</p>`;
    return;
  }
  if (!d.total) {
    box.innerHTML = "";
    return;
  }
  const rows = d.inputs
    .map(
      (i) => `<tr data-testid="input-row" data-outcome="${esc(i.outcome)}" data-blob="${esc(i.blob_name)}" class="${i.outcome === "ok" ? "completed" : "failed"}">
        <td class="mono">${esc(i.blob_name)}</td><td><span class="badge ${i.outcome === "ok" ? "completed" : "failed"}">${esc(i.outcome)}</span></td>
        <td>${i.outcome === "ok" ? `item <span class="mono" data-testid="input-item">${esc(i.item_id)}</span>` : `stage ${esc(i.stage)} (${esc(i.stage_name || "")})`}</td>
        <td class="error" data-testid="input-error">${i.error ? esc(i.error) : ""}</td></tr>`
    )
    .join("");
  const from = d.count ? d.offset + 1 : 0;
  box.innerHTML = `<h2>Inputs (${esc(d.total)})</h2>
    <form class="filters" id="inputs-filter">
      <label>outcome <select name="outcome" data-testid="input-outcome-filter">${["", "failed", "ok"].map((v) => `<option value="${v}"${v === inputsView.outcome ? " selected" : ""}>${v || "any"}${v ? ` (${esc(v === "ok" ? d.ok : d.failed)})` : ""}</option>`).join("")}</select></label>
      <span class="muted" data-testid="input-range">${esc(from)}–${esc(d.offset + d.count)} of ${esc(d.matching)}${d.outcome ? " " + esc(d.outcome) : ""} · ${esc(d.ok)} ok, ${esc(d.failed)} failed · failures first</span>
      ${d.offset > 0 ? `<button type="button" data-inputs="prev" data-testid="inputs-prev">previous</button>` : ""}
      ${d.next_offset != null ? `<button type="button" data-inputs="next" data-testid="inputs-next">next</button>` : ""}
    </form>
    <div class="scroll"><table data-testid="input-table"><thead><tr><th>input</th><th>outcome</th><th>item / stage</th><th>error</th></tr></thead><tbody>${rows}</tbody></table></div>`;
  const f = document.getElementById("inputs-filter");
  f.addEventListener("change", () => {
    inputsView.outcome = f.elements.outcome.value;
    inputsView.offset = 0;
    renderInputs(jobId);
  });
  f.addEventListener("click", (ev) => {
    const b = ev.target.closest("[data-inputs]");
    if (!b) return;
    inputsView.offset = b.dataset.inputs === "next" ? d.next_offset : Math.max(0, d.offset - INPUTS_PAGE);
    renderInputs(jobId);
  });
}

// ---------------------------------------------------------------- a platform request's page
// /api/ui/requests/{request_id}: what POST /api/platform/submit recorded (dataset, resource,
// version, files, derived names) and its job's state, with a link to the job's page.
async function renderRequest(requestId) {
  const app = document.getElementById("app");
  document.getElementById("where").textContent = "request " + requestId.slice(0, 12) + "…";
  let r;
  try {
    r = await api(`/api/platform/status/${encodeURIComponent(requestId)}`);
  } catch (e) {
    if (e instanceof KeyNeeded) return askForKey(e.message, () => renderRequest(requestId));
    app.innerHTML = `<p><a href="/api/ui">← all jobs</a></p>
      <p class="error" data-testid="load-error">Could not load request ${esc(requestId)}: ${esc(e.message)}</p>`;
    if (e.status !== 404) schedule(() => renderRequest(requestId));
    return;
  }
  const files = [].concat(r.request.file_name || []);
  const outputs = Object.entries(r.outputs || {})
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd class="mono">${esc(v)}</dd>`)
    .join("");
  app.innerHTML = `<p><a href="/api/ui">← all jobs</a></p>
    <section data-testid="request" data-request-id="${esc(r.request_id)}" data-job-status="${esc(r.job_status)}">
      <h1>Platform request <span class="mono">${esc(r.request_id)}</span></h1>
      <dl class="facts">
        <dt>dataset / resource / version</dt><dd>${esc(r.dataset_id)} / ${esc(r.resource_id)} / ${esc(r.version_id)}</dd>
        <dt>data type</dt><dd>${esc(r.data_type)}</dd>
        <dt>files</dt><dd class="mono">${files.map(esc).join("<br>")}</dd>
        <dt>container</dt><dd class="mono">${esc(r.request.container_name)}</dd>
        <dt>client</dt><dd>${esc(r.client_id)}</dd>
        <dt>recorded</dt><dd>${when(r.created_at)}</dd>
        <dt>job</dt><dd><a data-testid="request-job-link" class="mono" href="${esc("/api/ui/jobs/" + r.job_id)}">${short(r.job_id)}</a>
          ${esc(r.job_type)} ${badge(r.job_status)} stage ${esc(r.job_stage)}/${esc(r.total_stages)}</dd>
        ${r.error_details ? `<dt>error</dt><dd class="error">${esc(r.error_details)}</dd>` : ""}
      </dl>
      <h2>Outputs</h2>
      <dl class="facts" data-testid="request-outputs">${outputs}</dl>
    </section>`;
  stamp();
  if (!TERMINAL.includes(r.job_status)) schedule(() => renderRequest(requestId));
}

function route() {
  const m = location.pathname.match(/\/api\/ui\/jobs\/([^/]+)\/?$/);
  const req = location.pathname.match(/\/api\/ui\/requests\/([^/]+)\/?$/);
  if (m) renderJob(decodeURIComponent(m[1]));
  else if (req) renderRequest(decodeURIComponent(req[1]));
  else renderList();
}

document.getElementById("auto-refresh").addEventListener("change", route);
document.getElementById("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORE);
  showForget();
  route();
});
showForget();
route();

// The team console: models (memory, running, queued), per-key usage from the ledger, every key's async jobs,
// and API keys. Every number comes from the authenticated /admin endpoints, which scripts can call the same way.

import { api, element, getKey, reportError, setupKeyForm } from "/web/common.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 10000;
let timer = null;

function megabytes(bytes) {
  return bytes === null || bytes === undefined ? "–" : `${(bytes / 1048576).toFixed(0)} MB`;
}

function cell(text, numeric = false) {
  return element("td", { className: numeric ? "num" : null, text: String(text) });
}

async function loadModels() {
  const body = await (await api("/admin/models")).json();
  const rows = body.data.map((m) =>
    element(
      "tr",
      { "data-model": m.name },
      element("th", { scope: "row", text: m.name }),
      cell(m.loaded ? "yes" : "no"),
      cell(m.device || "–"),
      cell(megabytes(m.memory_bytes), true),
      cell(m.running, true),
      cell(m.queued, true),
      cell(m.realtime_sessions ?? 0, true),
      cell(m.idle_seconds === null ? "–" : `${Math.round(m.idle_seconds)} s`, true),
      cell(m.source),
    ),
  );
  $("models").tBodies[0].replaceChildren(...rows);
  $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

async function loadUsage() {
  const [day, month] = await Promise.all(
    ["24h", "30d"].map(async (window) => (await (await api(`/admin/usage?window=${window}`)).json()).data),
  );
  const byKey = new Map();
  for (const [index, rows] of [day, month].entries()) {
    for (const row of rows) {
      if (!byKey.has(row.key)) byKey.set(row.key, [null, null]);
      byKey.get(row.key)[index] = row;
    }
  }
  const numbers = (row) =>
    row
      ? [cell(row.requests, true), cell(row.audio_hours.toFixed(3), true), cell(row.input_tokens + row.output_tokens, true)]
      : [cell(0, true), cell("0.000", true), cell(0, true)];
  const rows = [...byKey.keys()].sort().map((key) =>
    element("tr", { "data-key": key }, element("th", { scope: "row", text: key }), ...numbers(byKey.get(key)[0]), ...numbers(byKey.get(key)[1])),
  );
  if (!rows.length) rows.push(element("tr", {}, element("td", { colspan: 7, text: "No usage recorded in the last 30 days." })));
  $("usage").tBodies[0].replaceChildren(...rows);
}

function revokeCell(key) {
  const td = element("td");
  if (key.source !== "file") {
    td.append(element("span", { className: "hint", text: "from the config" }));
    return td;
  }
  const revoke = element("button", { type: "button", className: "danger", text: "Revoke", "aria-label": `Revoke key ${key.name}` });
  revoke.addEventListener("click", () => {
    const confirm = element("button", { type: "button", className: "danger", text: `Yes, revoke ${key.name}` });
    const cancel = element("button", { type: "button", text: "Cancel" });
    confirm.addEventListener("click", async () => {
      try {
        await api(`/admin/keys/${encodeURIComponent(key.name)}`, { method: "DELETE" });
        reportError("");
        await loadKeys();
      } catch (err) {
        reportError(err.message);
      }
    });
    cancel.addEventListener("click", () => {
      td.replaceChildren(revoke);
      revoke.focus();
    });
    td.replaceChildren(confirm, " ", cancel);
    confirm.focus();
  });
  td.append(revoke);
  return td;
}

async function loadKeys() {
  const body = await (await api("/admin/keys")).json();
  const rows = body.data.map((key) =>
    element(
      "tr",
      { "data-key": key.name },
      element("th", { scope: "row", text: key.name }),
      cell(key.created || "–"),
      cell(key.admin ? "yes" : "no"),
      element("td", {}, element("code", { text: `${key.sha256_prefix}…` })),
      cell(key.source),
      revokeCell(key),
    ),
  );
  $("keys").tBodies[0].replaceChildren(...rows);
}

// --- jobs ---------------------------------------------------------------------------------------------------------
// The table's state is in #jobs[data-jobs]: "loading", "ready" or "error"; the details' in #job-details[data-state].
// Its page size is #jobs[data-page-size] (1 to 100).

let jobsKey = ""; // the key-name filter applied ("" for every key)
let jobsPages = [null]; // the `after` cursor of each page shown so far; the last is the current page
let jobsLastId = null; // the current page's last job: the cursor of the next, older page
let jobsActive = false; // the current page has queued or running jobs: the timer refreshes it
let jobsRequest = 0;
let detailsRequest = 0;

const ACTIVE = new Set(["queued", "running"]);

/** Unix seconds as local date and time, the exact instant in the datetime attribute; null as a dash. */
function when(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const date = new Date(seconds * 1000);
  return element("time", { datetime: date.toISOString(), text: date.toLocaleString() });
}

function audioSeconds(seconds) {
  return seconds === null || seconds === undefined ? "–" : seconds.toFixed(1);
}

function timeCell(seconds) {
  return element("td", { className: "when" }, when(seconds));
}

function jobRow(job) {
  const open = element("button", {
    type: "button",
    className: "link",
    text: job.id,
    "aria-controls": "job-details",
    "aria-label": `Details of job ${job.id}`,
  });
  open.addEventListener("click", () => showJob(job.id));
  const error = job.error ? element("td", { title: job.error.message || null }, element("code", { text: job.error.code })) : cell("–");
  const selected = $("job-details").dataset.job === job.id && !$("job-details").hidden;
  return element(
    "tr",
    { "data-job": job.id, "data-key": job.key_name, "data-status": job.status, className: selected ? "selected" : null },
    element("th", { scope: "row" }, open),
    cell(job.key_name),
    cell(job.status),
    cell(job.model),
    cell(job.response_format),
    cell(audioSeconds(job.audio_seconds), true),
    cell(`${Math.round((job.progress || 0) * 100)} %`, true),
    timeCell(job.created_at),
    timeCell(job.finished_at),
    error,
  );
}

async function loadJobs() {
  const current = ++jobsRequest;
  const table = $("jobs");
  table.dataset.jobs = "loading";
  const params = new URLSearchParams({ limit: String(Number(table.dataset.pageSize) || 20) });
  if (jobsKey) params.set("key", jobsKey);
  const after = jobsPages[jobsPages.length - 1];
  if (after) params.set("after", after);
  let body;
  try {
    body = await (await api(`/admin/jobs?${params}`)).json();
  } catch (err) {
    if (current !== jobsRequest) return;
    table.dataset.jobs = "error";
    if (String(err.message).includes("jobs_disabled")) {
      // Not a failure of the console: this server does not serve jobs (jobs.enabled: false).
      table.tBodies[0].replaceChildren(element("tr", {}, element("td", { colspan: 10, text: "Async jobs are turned off on this server." })));
      $("jobs-older").disabled = $("jobs-newer").disabled = true;
      jobsActive = false;
      return;
    }
    throw err;
  }
  if (current !== jobsRequest) return; // a newer filter, page or refresh is on its way
  const focused = document.activeElement && document.activeElement.closest("#jobs tr[data-job]");
  const rows = body.data.map(jobRow);
  if (!rows.length) {
    const text = jobsKey ? `No jobs for the key ${jobsKey}.` : "No jobs yet.";
    rows.push(element("tr", {}, element("td", { colspan: 10, text })));
  }
  table.tBodies[0].replaceChildren(...rows);
  if (focused) {
    // A refresh keeps the keyboard where it was.
    const again = [...table.tBodies[0].rows].find((row) => row.dataset.job === focused.dataset.job);
    if (again) again.querySelector("button").focus();
  }
  jobsLastId = body.last_id;
  jobsActive = body.data.some((job) => ACTIVE.has(job.status));
  $("jobs-older").disabled = !body.has_more;
  $("jobs-newer").disabled = jobsPages.length <= 1;
  const filter = jobsKey ? ` for ${jobsKey}` : "";
  $("jobs-state").textContent = `page ${jobsPages.length}${filter}, updated ${new Date().toLocaleTimeString()}`;
  table.dataset.jobs = "ready";
}

function reloadJobs() {
  loadJobs().then(
    () => reportError(""),
    (err) => reportError(err.message),
  );
}

function field(name, label, value) {
  const shown = value === null || value === undefined || value === "" ? "–" : value;
  const dd = element("dd", { "data-field": name });
  dd.append(shown);
  return [element("dt", { text: label }), dd];
}

async function showJob(id) {
  const current = ++detailsRequest;
  const box = $("job-details");
  box.dataset.state = "loading";
  let job;
  try {
    job = await (await api(`/admin/jobs/${encodeURIComponent(id)}`)).json();
  } catch (err) {
    if (current === detailsRequest) {
      box.dataset.state = "error";
      reportError(err.message);
    }
    return;
  }
  if (current !== detailsRequest) return;
  reportError("");
  $("job-details-id").textContent = job.id;
  const error = job.error ? `${job.error.code}: ${job.error.message}` : null;
  $("job-fields").replaceChildren(
    ...field("key", "key", job.key_name),
    ...field("status", "status", job.status),
    ...field("attempts", "attempts (runs started)", String(job.attempts)),
    ...field("model", "model", job.model),
    ...field("format", "response format", job.response_format),
    ...field("audio", "audio seconds", audioSeconds(job.audio_seconds)),
    ...field("progress", "progress", `${Math.round((job.progress || 0) * 100)} %`),
    ...field("created", "created", when(job.created_at)),
    ...field("started", "started", when(job.started_at)),
    ...field("finished", "finished", when(job.finished_at)),
    ...field("expires", "result kept until", when(job.expires_at)),
    ...field("webhook", "webhook URL", job.webhook_url),
    ...field("error", "error", error),
  );
  const deliveries = (job.webhook_deliveries || []).map((d) =>
    element(
      "tr",
      { "data-event": d.event_id, "data-number": d.number },
      element("td", {}, element("code", { text: d.event_id })),
      cell(d.number, true),
      timeCell(d.at),
      cell(d.status ?? "–", true),
      cell(d.error || "–"),
    ),
  );
  if (!deliveries.length) {
    const text = job.webhook_url ? "No deliveries yet." : "No webhook for this job.";
    deliveries.push(element("tr", {}, element("td", { colspan: 5, text })));
  }
  $("job-deliveries").tBodies[0].replaceChildren(...deliveries);
  for (const row of $("jobs").tBodies[0].rows) row.classList.toggle("selected", row.dataset.job === job.id);
  box.dataset.job = job.id;
  box.dataset.state = "ready";
  box.hidden = false;
  $("job-details-title").focus();
}

function closeJob() {
  const box = $("job-details");
  const id = box.dataset.job;
  ++detailsRequest;
  box.hidden = true;
  delete box.dataset.job;
  delete box.dataset.state;
  for (const row of $("jobs").tBodies[0].rows) row.classList.remove("selected");
  const row = [...$("jobs").tBodies[0].rows].find((r) => r.dataset.job === id);
  if (row) row.querySelector("button").focus();
}

function setupJobs() {
  $("jobs-form").addEventListener("submit", (event) => {
    event.preventDefault();
    jobsKey = $("jobs-key").value.trim();
    jobsPages = [null];
    reloadJobs();
  });
  $("jobs-refresh").addEventListener("click", reloadJobs);
  $("jobs-older").addEventListener("click", () => {
    if (!jobsLastId) return;
    jobsPages.push(jobsLastId);
    reloadJobs();
  });
  $("jobs-newer").addEventListener("click", () => {
    if (jobsPages.length > 1) jobsPages.pop();
    reloadJobs();
  });
  $("job-details-close").addEventListener("click", closeJob);
}

async function createKey(event) {
  event.preventDefault();
  const name = $("new-name").value.trim();
  try {
    const response = await api("/admin/keys", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, admin: $("new-admin").checked }),
    });
    const created = await response.json();
    reportError("");
    $("new-secret-name").textContent = created.name;
    $("new-secret").textContent = created.secret;
    $("new-secret-box").hidden = false;
    $("new-name").value = "";
    $("new-admin").checked = false;
    $("copy-secret").focus();
    await loadKeys();
  } catch (err) {
    reportError(err.message);
  }
}

function hideSecret() {
  $("new-secret").textContent = "";
  $("new-secret-box").hidden = true;
}

let generation = 0;

async function load() {
  clearInterval(timer);
  hideSecret();
  const current = ++generation;
  if (!getKey()) {
    $("panels").hidden = true;
    document.body.dataset.console = "no-key";
    return;
  }
  try {
    await loadModels();
  } catch (err) {
    if (current !== generation) return; // a newer key is being loaded
    $("panels").hidden = true;
    document.body.dataset.console = "refused";
    reportError(`${err.message}\nThe console needs an admin key (create one with: python -m app keys create NAME --admin).`);
    return;
  }
  if (current !== generation) return;
  $("panels").hidden = false;
  try {
    await Promise.all([loadUsage(), loadKeys(), loadJobs()]);
    if (current === generation) document.body.dataset.console = "ready";
  } catch (err) {
    if (current === generation) reportError(err.message);
  }
  timer = setInterval(() => {
    if (document.visibilityState !== "visible") return;
    loadModels().catch((err) => reportError(err.message));
    if (jobsActive) loadJobs().catch((err) => reportError(err.message));
  }, REFRESH_MS);
}

function main() {
  setupKeyForm(load);
  $("refresh").addEventListener("click", () => load());
  $("create-form").addEventListener("submit", createKey);
  setupJobs();
  $("hide-secret").addEventListener("click", hideSecret);
  $("copy-secret").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("new-secret").textContent);
      $("copy-secret").textContent = "Copied";
    } catch {
      reportError("Could not copy: select the key and copy it by hand.");
    }
  });
  load();
}

main();

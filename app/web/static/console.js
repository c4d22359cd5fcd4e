// The team console: models (memory, running, queued), per-key usage from the ledger, and API keys. Every
// number comes from the authenticated /admin endpoints, which scripts can call the same way.

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
    await Promise.all([loadUsage(), loadKeys()]);
    if (current === generation) document.body.dataset.console = "ready";
  } catch (err) {
    if (current === generation) reportError(err.message);
  }
  timer = setInterval(() => {
    if (document.visibilityState === "visible") loadModels().catch((err) => reportError(err.message));
  }, REFRESH_MS);
}

function main() {
  setupKeyForm(load);
  $("refresh").addEventListener("click", () => load());
  $("create-form").addEventListener("submit", createKey);
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

// Shared by the playground and the console: the API key (kept only in this tab's sessionStorage),
// authenticated fetches, and readable error messages from OpenAI's error envelope.

const KEY_ITEM = "stt-api-key";

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setKey(value) {
  if (value) sessionStorage.setItem(KEY_ITEM, value);
  else sessionStorage.removeItem(KEY_ITEM);
}

/** A human-readable message for a failed response: the envelope's message, the status and the code. */
export async function errorMessage(response) {
  let message = "";
  let code = "";
  try {
    const body = await response.clone().json();
    if (body && body.error) {
      message = body.error.message || "";
      code = body.error.code || "";
    }
  } catch {
    message = (await response.text().catch(() => "")).slice(0, 300);
  }
  const status = `${response.status}${response.statusText ? " " + response.statusText : ""}`;
  return `${message || "The server refused the request."} (HTTP ${status}${code ? ", " + code : ""})`;
}

export class ApiError extends Error {}

/** fetch() with the key as a bearer token; throws ApiError with a readable message on any failure. */
export async function api(path, options = {}) {
  const key = getKey();
  if (!key) throw new ApiError("Enter an API key first.");
  const headers = new Headers(options.headers || {});
  headers.set("Authorization", `Bearer ${key}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`Could not reach the server: ${err.message || err}`);
  }
  if (!response.ok) throw new ApiError(await errorMessage(response));
  return response;
}

export function show(element, visible) {
  element.hidden = !visible;
}

/** Show (or clear, with an empty message) the page's alert box. */
export function reportError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  show(box, Boolean(message));
}

/** The key form in the page header: fills in the stored key (masked) and stores what the user enters. */
export function setupKeyForm(onChange) {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  const forget = document.getElementById("forget-key");
  const state = document.getElementById("key-state");
  const refresh = () => {
    const key = getKey();
    state.textContent = key ? `key set (…${key.slice(-4)})` : "no key set";
    input.value = "";
    input.placeholder = key ? "replace the key" : "sk-gateway-…";
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    setKey(value);
    refresh();
    reportError("");
    onChange();
  });
  forget.addEventListener("click", () => {
    setKey("");
    refresh();
    onChange();
  });
  refresh();
}

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

/** Seconds as HH:MM:SS<sep>mmm (what srt and vtt use), half-up to the millisecond. */
export function timestamp(seconds, separator) {
  let millis = Math.max(0, Math.floor(seconds * 1000 + 0.5));
  const hours = Math.floor(millis / 3600000);
  millis -= hours * 3600000;
  const minutes = Math.floor(millis / 60000);
  millis -= minutes * 60000;
  const secs = Math.floor(millis / 1000);
  millis -= secs * 1000;
  const pad = (n, width) => String(n).padStart(width, "0");
  return `${pad(hours, 2)}:${pad(minutes, 2)}:${pad(secs, 2)}${separator}${pad(millis, 3)}`;
}

/** A short clock for display: m:ss.s (or h:mm:ss.s). */
export function clock(seconds) {
  const tenths = Math.max(0, Math.round(seconds * 10));
  const h = Math.floor(tenths / 36000);
  const m = Math.floor((tenths % 36000) / 600);
  const s = ((tenths % 600) / 10).toFixed(1).padStart(4, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

// The playground: transcribe a file or a recording with every option of /v1/audio/transcriptions, and live
// captions from the microphone over the realtime WebSocket (opened with a short-lived client secret).

import { ApiError, api, clock, element, getKey, reportError, setupKeyForm, timestamp } from "/web/common.js";
import { LiveSession } from "/web/live.js";
import { LiveTranslation } from "/web/live-translation.js";

const $ = (id) => document.getElementById(id);
const MAX_SPEAKERS = 4;
const REFERENCE_SECONDS = 5;

const state = {
  result: null, // {text, segments: [{start, end, text, speaker}], words, raw, rawJson, name}
  audioUrl: null,
  recording: null, // a Blob from the microphone, used when no file is chosen
  recorder: null,
  abort: null,
  stopAt: null,
  live: null,
};

// --- tabs -------------------------------------------------------------------------------------------------

function selectTab(tab) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
}

function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(index + step + tabs.length) % tabs.length];
      selectTab(next);
      next.focus();
    });
  });
}

// --- models -----------------------------------------------------------------------------------------------

function fillSelect(select, ids, preferred) {
  select.replaceChildren(...ids.map((id) => element("option", { value: id, text: id })));
  const pick = preferred.find((id) => ids.includes(id));
  if (pick) select.value = pick;
}

async function loadModels() {
  const selects = [$("model"), $("live-model")];
  if (!getKey()) {
    for (const select of selects) select.replaceChildren(element("option", { value: "", text: "enter a key to load models" }));
    return;
  }
  const key = getKey();
  try {
    const body = await (await api("/v1/models")).json();
    if (key !== getKey()) return; // the key changed meanwhile: a newer load is on its way
    const ids = body.data.map((model) => model.id);
    fillSelect($("model"), ids, ["whisper-1", "gpt-4o-transcribe"]);
    fillSelect($("live-model"), ids, ["gpt-realtime-whisper", "gpt-live-transcribe", "whisper-1"]);
    $("model").dataset.loaded = "true";
  } catch (err) {
    if (key === getKey()) reportError(err.message);
  }
}

// --- form options ---------------------------------------------------------------------------------------

function syncOptions() {
  const format = $("response-format").value;
  const diarize = $("diarize").checked;
  $("speakers").hidden = !diarize;
  $("vad-options").hidden = $("chunking").value !== "server_vad";
  $("words").disabled = format !== "verbose_json";
  if ($("words").disabled) $("words").checked = false;
}

function setupOptions() {
  $("response-format").addEventListener("change", () => {
    $("diarize").checked = $("response-format").value === "diarized_json";
    syncOptions();
  });
  $("diarize").addEventListener("change", () => {
    if ($("diarize").checked) $("response-format").value = "diarized_json";
    else if ($("response-format").value === "diarized_json") $("response-format").value = "verbose_json";
    syncOptions();
  });
  $("chunking").addEventListener("change", syncOptions);
  $("add-speaker").addEventListener("click", addSpeakerRow);
  syncOptions();
}

// --- known speakers -------------------------------------------------------------------------------------

let speakerCount = 0;

function addSpeakerRow() {
  const rows = $("speaker-rows");
  if (rows.children.length >= MAX_SPEAKERS) {
    reportError(`At most ${MAX_SPEAKERS} known speakers.`);
    return;
  }
  const n = ++speakerCount;
  const name = element("input", { type: "text", id: `spk-name-${n}`, maxlength: 64, autocomplete: "off" });
  const file = element("input", { type: "file", id: `spk-file-${n}`, accept: "audio/*,.wav,.flac,.mp3,.ogg,.webm,.m4a" });
  const status = element("span", { className: "hint", role: "status" });
  const record = element("button", { type: "button", text: `Record ${REFERENCE_SECONDS} s` });
  const remove = element("button", { type: "button", text: "Remove", "aria-label": `Remove known speaker ${n}` });
  const row = element(
    "div",
    { className: "row speaker-row" },
    element("div", { className: "field" }, element("label", { for: name.id, text: `Speaker ${n} name` }), name),
    element("div", { className: "field" }, element("label", { for: file.id, text: "Voice sample (2–10 s)" }), file),
    record,
    remove,
    status,
  );
  row.reference = null;
  file.addEventListener("change", () => {
    row.reference = file.files[0] || null;
    status.textContent = row.reference ? `file: ${row.reference.name}` : "";
  });
  record.addEventListener("click", async () => {
    record.disabled = true;
    try {
      status.textContent = `recording ${REFERENCE_SECONDS} s…`;
      row.reference = await recordFor(REFERENCE_SECONDS * 1000);
      file.value = "";
      status.textContent = `recorded ${REFERENCE_SECONDS} s`;
    } catch (err) {
      status.textContent = "";
      reportError(`Microphone unavailable: ${err.message || err}`);
    } finally {
      record.disabled = false;
    }
  });
  remove.addEventListener("click", () => {
    row.remove();
    $("add-speaker").focus();
  });
  rows.append(row);
  name.focus();
}

function readDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

async function knownSpeakers() {
  const speakers = [];
  for (const row of $("speaker-rows").children) {
    const name = row.querySelector('input[type="text"]').value.trim();
    if (!name && !row.reference) continue;
    if (!name || !row.reference) throw new ApiError("Each known speaker needs both a name and a voice sample.");
    speakers.push({ name, url: await readDataUrl(row.reference) });
  }
  return speakers;
}

// --- microphone recording -------------------------------------------------------------------------------

async function openMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this browser gives no microphone access here (the page must be served over HTTPS or from localhost)");
  }
  return navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
}

function recorderFor(stream) {
  const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm"].find((t) => MediaRecorder.isTypeSupported(t));
  return new MediaRecorder(stream, type ? { mimeType: type } : {});
}

function recordStream(recorder) {
  const chunks = [];
  return new Promise((resolve) => {
    recorder.ondataavailable = (event) => chunks.push(event.data);
    recorder.onstop = () => {
      recorder.stream.getTracks().forEach((track) => track.stop());
      resolve(new Blob(chunks, { type: recorder.mimeType || "audio/webm" }));
    };
    recorder.start();
  });
}

async function recordFor(millis) {
  const recorder = recorderFor(await openMicrophone());
  const done = recordStream(recorder);
  setTimeout(() => recorder.stop(), millis);
  return done;
}

async function toggleRecording() {
  const button = $("record");
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  try {
    const recorder = recorderFor(await openMicrophone());
    state.recorder = recorder;
    const started = performance.now();
    button.textContent = "■ Stop recording";
    $("record-state").textContent = "recording…";
    state.recording = await recordStream(recorder);
    const seconds = (performance.now() - started) / 1000;
    $("file").value = "";
    $("record-state").textContent = `recorded ${seconds.toFixed(1)} s; it is used when no file is chosen`;
  } catch (err) {
    reportError(`Microphone unavailable: ${err.message || err}`);
  } finally {
    state.recorder = null;
    button.textContent = "● Record from microphone";
  }
}

// --- transcription ------------------------------------------------------------------------------------------

function chosenAudio() {
  const file = $("file").files[0];
  if (file) return { blob: file, name: file.name };
  if (state.recording) {
    const extension = state.recording.type.includes("ogg") ? "ogg" : "webm";
    return { blob: state.recording, name: `recording.${extension}` };
  }
  return null;
}

async function buildForm(audio) {
  const form = new FormData();
  form.append("file", audio.blob, audio.name);
  form.append("model", $("model").value);
  form.append("response_format", $("response-format").value);
  const language = $("language").value.trim();
  if (language) form.append("language", language);
  if ($("words").checked) {
    form.append("timestamp_granularities[]", "word");
    form.append("timestamp_granularities[]", "segment");
  }
  const chunking = $("chunking").value;
  if (chunking === "auto") form.append("chunking_strategy", "auto");
  if (chunking === "server_vad") {
    form.append("chunking_strategy[type]", "server_vad");
    form.append("chunking_strategy[threshold]", $("vad-threshold").value);
    form.append("chunking_strategy[silence_duration_ms]", $("vad-silence").value);
    form.append("chunking_strategy[prefix_padding_ms]", $("vad-padding").value);
  }
  if ($("diarize").checked) {
    for (const speaker of await knownSpeakers()) {
      form.append("known_speaker_names[]", speaker.name);
      form.append("known_speaker_references[]", speaker.url);
    }
  }
  if ($("stream").checked) form.append("stream", "true");
  return form;
}

function setBusy(busy) {
  $("transcribe").disabled = busy;
  $("cancel").disabled = !busy;
}

async function transcribe(event) {
  event.preventDefault();
  reportError("");
  const audio = chosenAudio();
  if (!audio) {
    reportError("Choose an audio file or record one first.");
    $("file").focus();
    return;
  }
  if (!getKey()) {
    reportError("Enter an API key first.");
    $("api-key").focus();
    return;
  }
  setBusy(true);
  const started = performance.now();
  state.abort = new AbortController();
  $("file-status").className = "status";
  $("file-status").textContent = "Transcribing…";
  resetResult(audio);
  try {
    const form = await buildForm(audio);
    const response = await api("/v1/audio/transcriptions", { method: "POST", body: form, signal: state.abort.signal });
    if (form.get("stream") === "true") await readStream(response);
    else await readBody(response, form.get("response_format"));
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    $("file-status").className = "status ok";
    $("file-status").textContent = `Done in ${seconds} s.`;
    $("result").dataset.state = "done";
  } catch (err) {
    $("file-status").textContent = "";
    $("result").dataset.state = "failed";
    reportError(err.name === "AbortError" ? "Cancelled." : err.message || String(err));
  } finally {
    setBusy(false);
    state.abort = null;
  }
}

function resetResult(audio) {
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = URL.createObjectURL(audio.blob);
  $("player").src = state.audioUrl;
  state.result = { text: "", segments: [], words: [], raw: "", rawJson: null, name: audio.name.replace(/\.[^.]*$/, "") || "transcript" };
  $("streamed").textContent = "";
  $("segments").replaceChildren();
  $("raw").textContent = "";
  $("result").hidden = false;
  $("result").dataset.state = "running";
  syncDownloads();
}

async function readBody(response, format) {
  const raw = await response.text();
  const result = state.result;
  result.raw = raw;
  $("raw").textContent = raw;
  if ((response.headers.get("content-type") || "").includes("application/json")) {
    const body = JSON.parse(raw);
    result.rawJson = body;
    result.text = body.text || "";
    result.words = body.words || [];
    result.segments = (body.segments || []).map((s) => ({ start: s.start, end: s.end, text: s.text.trim(), speaker: s.speaker || "" }));
  } else if (format === "srt" || format === "vtt") {
    result.segments = parseCues(raw);
    result.text = result.segments.map((s) => s.text).join(" ");
  } else {
    result.text = raw.trim();
  }
  renderResult();
}

/** SRT or WebVTT cues (with `<v Speaker>` voices) as segments. */
function parseCues(raw) {
  const seconds = (text) => {
    const [h, m, s] = text.replace(",", ".").split(":");
    return Number(h) * 3600 + Number(m) * 60 + Number(s);
  };
  const segments = [];
  for (const block of raw.replace(/\r/g, "").split(/\n\n+/)) {
    const lines = block.split("\n").filter(Boolean);
    const timing = lines.findIndex((line) => line.includes("-->"));
    if (timing < 0) continue;
    const [start, end] = lines[timing].split("-->").map((part) => seconds(part.trim().split(" ")[0]));
    let text = lines.slice(timing + 1).join(" ");
    let speaker = "";
    const voice = text.match(/^<v ([^>]+)>(.*)$/);
    if (voice) [, speaker, text] = voice;
    segments.push({ start, end, text: text.trim(), speaker });
  }
  return segments;
}

/** Server-sent events: deltas as they arrive, speaker segments, then the final text (or an error frame). */
async function readStream(response) {
  const result = state.result;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const frames = [];
  const handle = (frame) => {
    const data = frame
      .split(/\r\n|\r|\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).replace(/^ /, ""))
      .join("\n");
    if (!data || data === "[DONE]") return;
    const event = JSON.parse(data);
    frames.push(data);
    if (event.error) throw new ApiError(`${event.error.message} (${event.error.code || event.error.type})`);
    if (event.type === "transcript.text.delta") {
      result.text += event.delta;
      $("streamed").textContent = result.text;
    } else if (event.type === "transcript.text.segment") {
      result.segments.push({ start: event.start, end: event.end, text: event.text.trim(), speaker: event.speaker || "" });
      renderSegments();
    } else if (event.type === "transcript.text.done") {
      result.text = event.text;
      result.rawJson = event;
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let match;
    while ((match = buffer.match(/\r\n\r\n|\n\n|\r\r/))) {
      const frame = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      handle(frame);
    }
  }
  if (buffer.trim()) handle(buffer);
  result.raw = frames.join("\n");
  $("raw").textContent = result.raw;
  renderResult();
}

// --- the transcript view ----------------------------------------------------------------------------------

function renderResult() {
  const result = state.result;
  $("streamed").textContent = result.segments.length ? "" : result.text;
  renderSegments();
  syncDownloads();
}

function renderSegments() {
  const result = state.result;
  const speakers = new Map();
  const items = result.segments.map((segment, index) => {
    if (segment.speaker && !speakers.has(segment.speaker)) speakers.set(segment.speaker, speakers.size % 8);
    const colour = segment.speaker ? `spk-${speakers.get(segment.speaker)}` : "";
    const time = element("button", {
      type: "button",
      className: "time",
      text: `${clock(segment.start)}–${clock(segment.end)}`,
      "aria-label": `Play from ${clock(segment.start)} to ${clock(segment.end)}`,
    });
    const text = element("span", { className: "text" });
    const words = result.words.filter((w) => w.start >= segment.start - 0.01 && w.end <= segment.end + 0.01);
    if (words.length) {
      words.forEach((w, i) => {
        if (i) text.append(" ");
        text.append(element("span", { className: "word", title: `${clock(w.start)}–${clock(w.end)}`, text: w.word }));
      });
    } else {
      text.textContent = segment.text;
    }
    const item = element(
      "li",
      { className: `segment ${colour}`.trim(), "data-index": index, "data-start": segment.start, "data-end": segment.end },
      time,
      element("span", { className: "speaker", text: segment.speaker }),
      text,
    );
    item.addEventListener("click", () => playSegment(item, segment));
    return item;
  });
  $("segments").replaceChildren(...items);
}

function playSegment(item, segment) {
  const player = $("player");
  for (const other of document.querySelectorAll(".segment.playing")) other.classList.remove("playing");
  item.classList.add("playing");
  state.stopAt = segment.end;
  player.currentTime = segment.start;
  player
    .play()
    .then(() => requestAnimationFrame(watchSegmentEnd))
    .catch((err) => reportError(`Could not play the audio: ${err.message}`));
}

function watchSegmentEnd() {
  // timeupdate comes only every 250 ms or so: check each frame too, to stop close to the segment's end.
  stopAtSegmentEnd();
  if (state.stopAt !== null && !$("player").paused) requestAnimationFrame(watchSegmentEnd);
}

function stopAtSegmentEnd() {
  const player = $("player");
  if (state.stopAt !== null && player.currentTime >= state.stopAt) {
    player.pause();
    state.stopAt = null;
    for (const other of document.querySelectorAll(".segment.playing")) other.classList.remove("playing");
  }
}

// --- downloads ----------------------------------------------------------------------------------------------

function cueText(segment, voice) {
  if (!segment.speaker) return segment.text;
  return voice ? `<v ${segment.speaker}>${segment.text}` : `${segment.speaker}: ${segment.text}`;
}

function renderSrt(segments) {
  return segments
    .filter((s) => s.text)
    .map((s, i) => `${i + 1}\n${timestamp(s.start, ",")} --> ${timestamp(Math.max(s.start, s.end), ",")}\n${cueText(s, false)}\n`)
    .join("\n");
}

function renderVtt(segments) {
  const blocks = segments
    .filter((s) => s.text)
    .map((s) => `${timestamp(s.start, ".")} --> ${timestamp(Math.max(s.start, s.end), ".")}\n${cueText(s, true)}\n`);
  return "WEBVTT\n\n" + blocks.join("\n");
}

function syncDownloads() {
  const result = state.result;
  for (const button of document.querySelectorAll("[data-download]")) {
    const timed = button.dataset.download === "srt" || button.dataset.download === "vtt";
    button.disabled = !result || (timed && !result.segments.length) || (!timed && !result.text && !result.segments.length);
    button.title = timed && result && !result.segments.length ? "needs segments: use verbose_json, srt, vtt or diarized_json" : "";
  }
}

function download(kind) {
  const result = state.result;
  const contents = {
    txt: () => [result.text + "\n", "text/plain"],
    srt: () => [renderSrt(result.segments), "application/x-subrip"],
    vtt: () => [renderVtt(result.segments), "text/vtt"],
    json: () => [JSON.stringify(result.rawJson || { text: result.text, segments: result.segments }, null, 2) + "\n", "application/json"],
  };
  const [text, type] = contents[kind]();
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = element("a", { href: url, download: `${result.name}.${kind}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// --- live -----------------------------------------------------------------------------------------------------

function liveView() {
  return {
    status(text, ok = false) {
      $("live-status").className = ok ? "status ok" : "status";
      $("live-status").textContent = text;
    },
    vad(speaking) {
      $("vad-state").textContent = speaking ? "speech" : "silence";
      $("vad-state").className = speaking ? "vad speech" : "vad";
    },
    caption(text) {
      $("captions").textContent = text;
    },
    turn(text, startMs) {
      const item = element("li", {}, element("span", { className: "time", text: clock((startMs || 0) / 1000) }), text);
      $("turns").append(item);
    },
    error(message) {
      reportError(message);
    },
    stopped() {
      $("live-start").disabled = false;
      $("live-stop").disabled = true;
      state.live = null;
    },
  };
}

async function startLive() {
  reportError("");
  if (!getKey()) {
    reportError("Enter an API key first.");
    $("api-key").focus();
    return;
  }
  $("live-start").disabled = true;
  $("live-stop").disabled = false;
  $("captions").textContent = "";
  $("turns").replaceChildren();
  const Session = $("live-translate").checked ? LiveTranslation : LiveSession;
  const session = new Session(liveView(), {
    model: $("live-model").value,
    language: $("live-language").value.trim() || null,
    turnDetection: $("live-turns").value,
    delay: $("live-delay").value,
    openMicrophone,
    mintSecret: async (path, config) => {
      const response = await api(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ expires_after: { anchor: "created_at", seconds: 600 }, session: config }),
      });
      return (await response.json()).value;
    },
  });
  state.live = session;
  await session.start();
}

// --- start ------------------------------------------------------------------------------------------------------

function main() {
  setupKeyForm(loadModels);
  setupTabs();
  setupOptions();
  $("record").addEventListener("click", toggleRecording);
  $("file").addEventListener("change", () => {
    if ($("file").files[0]) $("record-state").textContent = "";
  });
  $("file-form").addEventListener("submit", transcribe);
  $("cancel").addEventListener("click", () => state.abort && state.abort.abort());
  $("player").addEventListener("timeupdate", stopAtSegmentEnd);
  for (const button of document.querySelectorAll("[data-download]")) {
    button.addEventListener("click", () => download(button.dataset.download));
  }
  $("live-start").addEventListener("click", startLive);
  $("live-stop").addEventListener("click", () => state.live && state.live.stop());
  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    reportError(event.reason && event.reason.message ? event.reason.message : String(event.reason));
  });
  loadModels();
  document.body.dataset.ready = "true";
}

main();

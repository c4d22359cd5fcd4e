// One live transcription session: a client secret minted with the key, the realtime WebSocket opened with
// that secret (subprotocol auth; the key itself never travels on the socket), microphone audio as 24 kHz
// PCM16 from an AudioWorklet, and the server's events turned into captions, turns and the VAD state.

const CLOSE_REASONS = {
  1000: "the session ended",
  1006: "the connection was lost or refused",
  1008: "the server ended the session (policy or limit)",
  1011: "the server had an internal error",
  1013: "the server is at its session limit; try again later",
};
export const FLUSH_SECONDS = 8;

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export class LiveSession {
  constructor(view, options) {
    this.view = view;
    this.options = options;
    this.socket = null;
    this.context = null;
    this.stream = null;
    this.speaking = false;
    this.stopping = false;
    this.partials = new Map(); // item id -> text so far
    this.starts = new Map(); // item id -> audio_start_ms
    this.flushed = null; // resolves when what stop() asked the server to finish is done
    this.listeningAt = null;
    this.model = "";
  }

  config() {
    const transcription = { model: this.options.model || null, delay: this.options.delay };
    if (this.options.language) transcription.language = this.options.language;
    return {
      type: "transcription",
      audio: {
        input: {
          format: { type: "audio/pcm", rate: 24000 },
          transcription,
          turn_detection: { type: this.options.turnDetection },
        },
      },
    };
  }

  // What differs between the session kinds (LiveTranslation overrides these).
  secretPath() {
    return "/v1/realtime/client_secrets";
  }

  socketPath() {
    return "/v1/realtime?intent=transcription";
  }

  updateEvent() {
    return { type: "session.update", session: this.config() };
  }

  appendEvent(audio) {
    return { type: "input_audio_buffer.append", audio };
  }

  async start() {
    try {
      this.view.status("Minting a short-lived client secret…");
      const secret = await this.options.mintSecret(this.secretPath(), this.config());
      this.view.status("Connecting…");
      await this.connect(secret);
      this.view.status("Opening the microphone…");
      await this.openAudio();
      this.listeningAt = performance.now();
      document.body.dataset.live = "listening";
      this.view.vad(false);
      this.view.status(`Listening${this.model ? ` (${this.model})` : ""}: speak now.`, true);
    } catch (err) {
      this.view.error(`Live transcription could not start: ${err.message || err}`);
      this.teardown();
    }
  }

  connect(secret) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}${this.socketPath()}`;
    return new Promise((resolve, reject) => {
      let opened = false;
      const socket = new WebSocket(url, ["realtime", `openai-insecure-api-key.${secret}`]);
      this.socket = socket;
      socket.onmessage = (message) => {
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          return;
        }
        if (event.type === "session.created" && !opened) {
          opened = true;
          const update = this.updateEvent();
          if (update) socket.send(JSON.stringify(update));
          resolve();
        }
        this.handle(event);
      };
      socket.onclose = (close) => {
        const reason = close.reason || CLOSE_REASONS[close.code] || "the connection closed";
        if (!opened) {
          reject(new Error(`Could not open the live session: ${reason} (close code ${close.code}).`));
          return;
        }
        if (!this.stopping) {
          this.view.error(`The live session closed: ${reason} (close code ${close.code}).`);
          this.teardown();
        }
      };
    });
  }

  async openAudio() {
    this.stream = await this.options.openMicrophone();
    let source;
    try {
      // Let the browser resample to 24 kHz where it can; the worklet resamples whatever rate it gets.
      this.context = new AudioContext({ sampleRate: 24000 });
      source = this.context.createMediaStreamSource(this.stream);
    } catch {
      if (this.context) this.context.close();
      this.context = new AudioContext();
      source = this.context.createMediaStreamSource(this.stream);
    }
    await this.context.audioWorklet.addModule("/web/pcm-worklet.js");
    const node = new AudioWorkletNode(this.context, "pcm24k", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
    node.port.onmessage = (message) => this.sendAudio(message.data);
    source.connect(node);
    node.connect(this.context.destination); // silent: the worklet writes nothing to its output
    if (this.context.state === "suspended") await this.context.resume();
  }

  sendAudio(buffer) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN && !this.stopping) {
      this.socket.send(JSON.stringify(this.appendEvent(base64(buffer))));
    }
  }

  handle(event) {
    switch (event.type) {
      case "session.updated":
        this.model = event.session?.audio?.input?.transcription?.model || "";
        if (this.listeningAt !== null) this.view.status(`Listening (${this.model}): speak now.`, true);
        break;
      case "input_audio_buffer.speech_started":
        this.speaking = true;
        this.starts.set(event.item_id, event.audio_start_ms);
        this.view.vad(true);
        break;
      case "input_audio_buffer.speech_stopped":
        this.speaking = false;
        this.view.vad(false);
        break;
      case "conversation.item.input_audio_transcription.delta": {
        const text = (this.partials.get(event.item_id) || "") + event.delta;
        this.partials.set(event.item_id, text);
        const captions = document.getElementById("captions");
        if (!captions.dataset.firstDeltaMs && this.listeningAt !== null) {
          captions.dataset.firstDeltaMs = String(Math.round(performance.now() - this.listeningAt));
        }
        this.view.caption(text.trim());
        break;
      }
      case "conversation.item.input_audio_transcription.completed":
        this.partials.delete(event.item_id);
        this.view.caption(event.transcript.trim());
        if (event.transcript.trim()) this.view.turn(event.transcript.trim(), this.starts.get(event.item_id));
        if (this.flushed) this.flushed();
        break;
      case "conversation.item.input_audio_transcription.failed":
        this.view.error(`A turn could not be transcribed: ${event.error?.message || "unknown error"}`);
        if (this.flushed) this.flushed();
        break;
      default:
        this.handleOther(event);
    }
  }

  async stop() {
    if (this.stopping) return;
    this.stopping = true;
    this.stopAudio();
    const flush = this.flushEvent();
    const socket = this.socket;
    if (flush && socket && socket.readyState === WebSocket.OPEN) {
      this.view.status(flush.status);
      const done = new Promise((resolve) => {
        this.flushed = resolve;
        setTimeout(resolve, FLUSH_SECONDS * 1000);
      });
      socket.send(JSON.stringify(flush.event));
      await done;
    }
    this.finish();
    this.teardown();
    this.view.status("Stopped.");
  }

  // What stop() asks the server to finish before the socket closes (null: nothing): here the turn in
  // progress, committed so that what was said is transcribed.
  flushEvent() {
    if (!this.speaking) return null;
    return { status: "Finishing the last turn…", event: { type: "input_audio_buffer.commit" } };
  }

  finish() {} // what a subclass shows once the last words are in

  // Events both protocols share: an error is shown; the rest are not needed here.
  handleOther(event) {
    if (event.type === "error") {
      this.view.error(`${event.error?.message || "error"}${event.error?.code ? ` (${event.error.code})` : ""}`);
    }
  }

  stopAudio() {
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.context) this.context.close().catch(() => {});
    this.stream = null;
    this.context = null;
  }

  teardown() {
    this.stopping = true;
    this.stopAudio();
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000);
    this.socket = null;
    this.speaking = false;
    this.view.vad(false);
    delete document.body.dataset.live;
    this.view.stopped();
  }
}

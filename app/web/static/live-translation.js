// One live translation session: speech in any language, English text out. The client secret, socket and
// microphone are LiveSession's; the protocol is the translation session's (/v1/realtime/translations):
// one running English text (no turns), and session.close to finish the last words before the socket closes.
import { LiveSession } from "/web/live.js";

export class LiveTranslation extends LiveSession {
  constructor(view, options) {
    super(view, options);
    this.text = "";
  }

  config() {
    return { model: this.options.model, audio: { output: { language: "en" } } };
  }

  secretPath() {
    return "/v1/realtime/translations/client_secrets";
  }

  socketPath() {
    return `/v1/realtime/translations?model=${encodeURIComponent(this.options.model)}`;
  }

  updateEvent() {
    return null; // the secret carries the session
  }

  appendEvent(audio) {
    return { type: "session.input_audio_buffer.append", audio };
  }

  handle(event) {
    switch (event.type) {
      case "session.created":
      case "session.updated":
        this.model = event.session?.model || "";
        if (this.listeningAt !== null) this.view.status(`Translating (${this.model}): speak now.`, true);
        break;
      case "session.output_transcript.delta": {
        this.text += event.delta;
        const captions = document.getElementById("captions");
        if (!captions.dataset.firstDeltaMs && this.listeningAt !== null) {
          captions.dataset.firstDeltaMs = String(Math.round(performance.now() - this.listeningAt));
        }
        this.view.caption(this.text.trim());
        break;
      }
      case "session.closed":
        if (this.flushed) this.flushed();
        break;
      default:
        this.handleOther(event);
    }
  }

  // The server ends the turn being spoken and sends its last words before session.closed.
  flushEvent() {
    return { status: "Finishing the last words…", event: { type: "session.close" } };
  }

  finish() {
    if (this.text.trim()) this.view.turn(this.text.trim(), 0);
  }
}

// AudioWorklet: the microphone as 16-bit mono PCM at 24 kHz (what the realtime API's audio/pcm is), posted to
// the page in 100 ms chunks. Audio at another rate is low-pass filtered and resampled here.

const TARGET_RATE = 24000;
const CHUNK = TARGET_RATE / 10;
const TAPS = 31;

function lowPass(cutoff) {
  // A Hann-windowed sinc; ``cutoff`` is a fraction of the input rate (0.5 = Nyquist).
  const taps = new Float32Array(TAPS);
  const middle = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const x = i - middle;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const window = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1));
    taps[i] = sinc * window;
    sum += taps[i];
  }
  return taps.map((t) => t / sum);
}

class Pcm24kProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.taps = this.step > 1 ? lowPass((0.45 * TARGET_RATE) / sampleRate) : null;
    this.history = new Float32Array(TAPS); // last filter inputs, for the FIR across blocks
    this.position = 0; // next output position, in input samples after ``previous``
    this.previous = 0; // last filtered input sample of the previous block
    this.out = new Int16Array(CHUNK);
    this.filled = 0;
  }

  filter(block) {
    if (!this.taps) return block;
    const joined = new Float32Array(TAPS - 1 + block.length);
    joined.set(this.history.subarray(1));
    joined.set(block, TAPS - 1);
    const result = new Float32Array(block.length);
    for (let n = 0; n < block.length; n++) {
      let acc = 0;
      for (let k = 0; k < TAPS; k++) acc += this.taps[k] * joined[n + k];
      result[n] = acc;
    }
    this.history = joined.slice(joined.length - TAPS);
    return result;
  }

  emit(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.out[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    if (this.filled === CHUNK) {
      this.port.postMessage(this.out.buffer, [this.out.buffer]);
      this.out = new Int16Array(CHUNK);
      this.filled = 0;
    }
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const length = channels[0].length;
    const mono = new Float32Array(length);
    for (const channel of channels) for (let i = 0; i < length; i++) mono[i] += channel[i] / channels.length;
    const block = this.filter(mono);
    // Linear interpolation over [previous, ...block]: index 0 is ``previous``, index k is block[k - 1].
    while (Math.floor(this.position) + 1 <= length) {
      const i = Math.floor(this.position);
      const frac = this.position - i;
      const a = i === 0 ? this.previous : block[i - 1];
      const b = block[i];
      this.emit(a + (b - a) * frac);
      this.position += this.step;
    }
    this.position -= length;
    this.previous = block[length - 1];
    return true;
  }
}

registerProcessor("pcm24k", Pcm24kProcessor);

// Capture: the meeting's audio (getUserMedia) at the context's rate -> 24 kHz mono PCM16
// in 20 ms chunks (480 samples), posted to the page as transferable buffers with their level
// and `frame`, the context frame just after the chunk's last input sample (the page times
// how long a chunk took to reach it on the audio clock; docs/latency.md).
// Anti-aliasing: a windowed-sinc low-pass below 12 kHz, then linear interpolation, so any
// context rate (44.1, 48, 96 kHz...) comes out at exactly 24 kHz.

const OUT_RATE = 24000;
const CHUNK_SAMPLES = 480; // 20 ms: small chunks keep the model's VAD responsive.
const TAPS = 32;

function lowPassTaps(cutoff) {
  // cutoff in cycles per input sample; Hamming-windowed sinc, unity gain at DC.
  const taps = new Float32Array(TAPS);
  const middle = (TAPS - 1) / 2;
  let sum = 0;
  for (let k = 0; k < TAPS; k++) {
    const x = k - middle;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const window = 0.54 - 0.46 * Math.cos((2 * Math.PI * k) / (TAPS - 1));
    taps[k] = sinc * window;
    sum += taps[k];
  }
  for (let k = 0; k < TAPS; k++) taps[k] /= sum;
  return taps;
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / OUT_RATE; // input samples per output sample
    this.taps = this.ratio > 1 ? lowPassTaps((0.45 * OUT_RATE) / sampleRate) : null;
    this.history = new Float32Array(TAPS); // last inputs, circular
    this.historyAt = 0;
    this.previous = 0; // last filtered sample of the previous block
    this.position = 0; // next output's position in input samples, relative to this block
    this.chunk = new Int16Array(CHUNK_SAMPLES);
    this.filled = 0;
    this.squares = 0;
  }

  filter(x) {
    if (this.taps === null) return x;
    this.history[this.historyAt] = x;
    this.historyAt = (this.historyAt + 1) % TAPS;
    let y = 0;
    for (let k = 0, i = this.historyAt; k < TAPS; k++, i = (i + 1) % TAPS) {
      y += this.taps[k] * this.history[i];
    }
    return y;
  }

  emit(sample, frame) {
    const clamped = Math.max(-1, Math.min(1, sample));
    this.chunk[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    this.squares += clamped * clamped;
    if (this.filled === CHUNK_SAMPLES) {
      const rms = Math.sqrt(this.squares / CHUNK_SAMPLES);
      this.port.postMessage({ pcm: this.chunk.buffer, rms, frame }, [this.chunk.buffer]);
      this.chunk = new Int16Array(CHUNK_SAMPLES);
      this.filled = 0;
      this.squares = 0;
    }
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    const filtered = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let mono = 0;
      for (let c = 0; c < channels.length; c++) mono += channels[c][i];
      filtered[i] = this.filter(mono / channels.length);
    }
    // Linear interpolation between filtered samples; position -1 is the previous block's last.
    while (this.position < n - 1) {
      const i = Math.floor(this.position);
      const frac = this.position - i;
      const a = i < 0 ? this.previous : filtered[i];
      this.emit(a + (filtered[i + 1] - a) * frac, currentFrame + i + 2);
      this.position += this.ratio;
    }
    this.position -= n;
    this.previous = filtered[n - 1];
    return true;
  }
}

registerProcessor("capture-processor", CaptureProcessor);

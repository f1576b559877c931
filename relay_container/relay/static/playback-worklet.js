// Playback: the agent's 24 kHz PCM16 deltas into a ring buffer at the context's rate, played
// with no added latency beyond one render quantum. Tracks which assistant item each sample
// belongs to, so a barge-in can tell the model exactly how many ms of an item were heard.
// Counts its own underruns: an item's audio running out before the item's next delta came
// (the page or the network late), so silence was played in the middle of an utterance.
//
// Messages in:  {type: "push", itemId, pcm: ArrayBuffer(Int16 24 kHz)}, {type: "clear", itemId}
// Messages out: {type: "progress", playedMs, itemId, itemPlayedMs, bufferedMs, rms, items,
//                                  overflowMs, gaps, gapMs}
//               {type: "cleared", itemId, itemPlayedMs, droppedMs}   (answer to "clear")
//               {type: "drained", pushes}        (buffer ran empty after that many pushes)
//               {type: "started", frame}         (output resumed after silence, at that
//                                                 context frame: the page times playback start)

const IN_RATE = 24000;
const CAPACITY_SECONDS = 120;
const PROGRESS_EVERY = 8; // render quanta between progress messages (~20 ms at 48 kHz)
const ITEMS_KEPT = 16; // per-item play counts kept (a barge-in only concerns recent ones)
// Silence after an item ran dry counts as a gap only if that item's audio resumes within
// this long; past it the item is taken as finished (its next delta would be a new turn).
const GAP_MAX_SECONDS = 2;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(Math.ceil(sampleRate * CAPACITY_SECONDS));
    this.read = 0;
    this.count = 0;
    this.segments = []; // [{itemId, frames}] in ring order
    this.playedFrames = 0;
    this.itemPlayed = new Map(); // itemId -> frames played
    this.currentItem = null;
    this.step = IN_RATE / sampleRate; // input samples per output frame
    this.phase = 0; // resampler position between `last` and the next input sample
    this.last = 0;
    this.quanta = 0;
    this.playing = false;
    this.overflowFrames = 0;
    this.pushes = 0;
    this.gaps = 0; // underruns inside an item: its audio ran out, then more of it came
    this.gapFrames = 0; // the silence those underruns played
    this.dryItem = null; // the item that ran dry, while more of it may still come
    this.dryFrames = 0; // silence played since it ran dry
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(message) {
    if (message.type === "push") this.push(message.itemId, new Int16Array(message.pcm));
    else if (message.type === "clear") this.clear(message.itemId);
  }

  push(itemId, pcm) {
    this.pushes++;
    if (this.dryItem !== null) {
      if (itemId === this.dryItem) {
        this.gaps++;
        this.gapFrames += this.dryFrames;
      }
      this.dryItem = null;
    }
    // Linear-interpolation upsampling from 24 kHz, continuous across chunks.
    let frames = 0;
    for (let i = 0; i < pcm.length; i++) {
      const next = pcm[i] / 32768;
      while (this.phase < 1) {
        if (this.count === this.ring.length) {
          this.overflowFrames++;
        } else {
          this.ring[(this.read + this.count) % this.ring.length] =
            this.last + (next - this.last) * this.phase;
          this.count++;
          frames++;
        }
        this.phase += this.step;
      }
      this.phase -= 1;
      this.last = next;
    }
    if (frames === 0) return;
    const tail = this.segments[this.segments.length - 1];
    if (tail && tail.itemId === itemId) tail.frames += frames;
    else this.segments.push({ itemId, frames });
  }

  clear(itemId) {
    // Reports how much of `itemId` (the item being cut) was heard: 0 if none of it played.
    const droppedMs = (this.count / sampleRate) * 1000;
    this.read = (this.read + this.count) % this.ring.length;
    this.count = 0;
    this.segments = [];
    this.phase = 0;
    this.last = 0;
    this.playing = false;
    this.dryItem = null; // a cut is not an underrun
    this.port.postMessage({
      type: "cleared",
      itemId,
      itemPlayedMs: this.itemMs(itemId),
      droppedMs,
    });
  }

  countPlayed(itemId) {
    const frames = this.itemPlayed.get(itemId);
    if (frames === undefined && this.itemPlayed.size >= ITEMS_KEPT) {
      this.itemPlayed.delete(this.itemPlayed.keys().next().value);
    }
    this.itemPlayed.set(itemId, (frames || 0) + 1);
  }

  itemMs(itemId) {
    return itemId === null ? 0 : ((this.itemPlayed.get(itemId) || 0) / sampleRate) * 1000;
  }

  process(_inputs, outputs) {
    const output = outputs[0];
    const n = output[0].length;
    let squares = 0;
    let silent = 0; // frames of this quantum played as silence
    if (!this.playing && this.count > 0) {
      this.port.postMessage({ type: "started", frame: currentFrame });
    }
    for (let i = 0; i < n; i++) {
      let sample = 0;
      if (this.count > 0) {
        sample = this.ring[this.read];
        this.read = (this.read + 1) % this.ring.length;
        this.count--;
        this.playedFrames++;
        const head = this.segments[0];
        this.currentItem = head.itemId;
        this.countPlayed(head.itemId);
        if (--head.frames === 0) this.segments.shift();
      } else {
        silent++;
      }
      squares += sample * sample;
      for (let c = 0; c < output.length; c++) output[c][i] = sample;
    }
    const wasPlaying = this.playing;
    this.playing = this.count > 0;
    if (this.dryItem !== null) {
      this.dryFrames += silent;
      if (this.dryFrames > GAP_MAX_SECONDS * sampleRate) this.dryItem = null;
    }
    if (wasPlaying && !this.playing) {
      this.dryItem = this.currentItem;
      this.dryFrames = silent;
      this.port.postMessage({ type: "drained", pushes: this.pushes });
    }
    if (++this.quanta % PROGRESS_EVERY === 0 || (wasPlaying && !this.playing)) {
      this.port.postMessage({
        type: "progress",
        playedMs: (this.playedFrames / sampleRate) * 1000,
        itemId: this.currentItem,
        itemPlayedMs: this.itemMs(this.currentItem),
        bufferedMs: (this.count / sampleRate) * 1000,
        overflowMs: (this.overflowFrames / sampleRate) * 1000,
        gaps: this.gaps,
        gapMs: (this.gapFrames / sampleRate) * 1000,
        items: Object.fromEntries([...this.itemPlayed.keys()].map((id) => [id, this.itemMs(id)])),
        rms: Math.sqrt(squares / n),
      });
    }
    return true;
  }
}

registerProcessor("playback-processor", PlaybackProcessor);

// voicekit playback: 16-bit PCM at 16 kHz -> the context's rate, with a small jitter buffer.
//
// Messages in: {pcm: ArrayBuffer} (audio to play), {mark: name} (report it once the audio
// before it has been played), {clear: true} (drop everything queued, at once).
// Messages out: {played: name}, {cleared: samples dropped}, {started: samples queued} and
// {idle: samples played} when playback starts and runs dry, {stats: {...}} about 10 times a
// second. Playback starts once `prebuffer` seconds are queued (or a mark is: the end of a
// sentence); when the queue runs dry it waits for `prebuffer` again (an underrun).
const RATE = 16000;

class VoicekitPlayback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.prebuffer = Math.round((opts.prebuffer ?? 0.06) * RATE);
    this.queue = []; // Float32Array chunks and {mark} entries, in order
    this.offset = 0; // read position in queue[0] when it is audio
    this.queued = 0; // samples queued (16 kHz)
    this.marks = 0; // marks queued
    this.playing = false;
    this.ratio = RATE / sampleRate; // 16 kHz samples per output sample
    this.frac = 0;
    this.previous = 0;
    this.current = 0;
    this.played = 0; // samples played (16 kHz), all time
    this.underruns = 0;
    this.energy = 0;
    this.sinceStats = 0;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(data) {
    if (data.pcm) {
      const pcm = new Int16Array(data.pcm);
      const samples = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
      this.queue.push(samples);
      this.queued += samples.length;
    } else if (data.mark !== undefined) {
      this.queue.push({ mark: data.mark });
      this.marks += 1;
    } else if (data.clear) {
      const dropped = this.queued;
      this.queue = [];
      this.offset = 0;
      this.queued = 0;
      this.marks = 0;
      this.playing = false;
      this.previous = this.current = 0;
      this.port.postMessage({ cleared: dropped, played: this.played });
    }
  }

  next() {
    // the next 16 kHz sample, reporting the marks passed on the way; null when dry
    while (this.queue.length) {
      const head = this.queue[0];
      if (head instanceof Float32Array) {
        if (this.offset < head.length) {
          this.queued -= 1;
          return head[this.offset++];
        }
        this.queue.shift();
        this.offset = 0;
      } else {
        this.queue.shift();
        this.marks -= 1;
        this.port.postMessage({ played: head.mark, at: this.played });
      }
    }
    return null;
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && (this.queued >= this.prebuffer || (this.marks > 0 && this.queued > 0))) {
      this.playing = true;
      this.port.postMessage({ started: this.queued });
    }
    if (!this.playing && this.queued === 0 && this.marks > 0) this.next(); // marks alone
    for (let i = 0; i < out.length; i++) {
      if (!this.playing) {
        out[i] = 0;
        continue;
      }
      this.frac += this.ratio;
      while (this.frac >= 1) {
        this.frac -= 1;
        const sample = this.next();
        if (sample === null) {
          this.playing = false;
          this.underruns += 1;
          this.port.postMessage({ idle: this.played });
          this.previous = this.current = 0;
          break;
        }
        this.previous = this.current;
        this.current = sample;
        this.played += 1;
      }
      const value = this.playing ? this.previous + (this.current - this.previous) * this.frac : 0;
      out[i] = value;
      this.energy += value * value;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.sinceStats += out.length;
    if (this.sinceStats >= sampleRate / 10) {
      this.port.postMessage({
        stats: {
          played: this.played, queued: this.queued, underruns: this.underruns,
          level: Math.sqrt(this.energy / this.sinceStats), playing: this.playing,
        },
      });
      this.sinceStats = 0;
      this.energy = 0;
    }
    return true;
  }
}

registerProcessor("voicekit-playback", VoicekitPlayback);

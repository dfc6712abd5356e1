// voicekit capture: the microphone at the context's rate -> 20 ms frames of 16-bit PCM at 16 kHz.
// Each output sample is the mean of the input samples of its period (a box filter: enough
// against aliasing for speech at 48 -> 16 kHz), posted as {pcm: ArrayBuffer, level: rms}.
const RATE = 16000;
const FRAME = 320; // 20 ms at 16 kHz

class VoicekitCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / RATE; // input samples per output sample
    this.phase = 0;
    this.sum = 0;
    this.count = 0;
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
    this.energy = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    if (!this.running) return false;
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      this.sum += channel[i];
      this.count += 1;
      this.phase += 1;
      if (this.phase < this.step) continue;
      this.phase -= this.step;
      const value = Math.max(-1, Math.min(1, this.sum / this.count));
      this.sum = 0;
      this.count = 0;
      this.energy += value * value;
      this.frame[this.filled++] = Math.round(value < 0 ? value * 32768 : value * 32767);
      if (this.filled === FRAME) {
        const level = Math.sqrt(this.energy / FRAME);
        this.port.postMessage({ pcm: this.frame.buffer, level }, [this.frame.buffer]);
        this.frame = new Int16Array(FRAME);
        this.filled = 0;
        this.energy = 0;
      }
    }
    return true;
  }
}

registerProcessor("voicekit-capture", VoicekitCapture);

// voicekit in the browser: microphone capture, playback and the /ws protocol, shared by the
// page (page.js) and the notebook widget (widget.js). Plain ES module, no dependencies.

/** Open the microphone and the speakers: capture in 20 ms 16 kHz 16-bit frames, playback
 * with a small jitter buffer. `urls`: {capture, playback} (the worklet modules). */
export async function openAudio(urls, { onFrame, onLevel, onPlayed, onCleared, onStats,
  onStarted, onIdle,
  prebuffer = 0.06, stream = null } = {}) {
  const media = stream || await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true,
      channelCount: 1 },
  });
  const ctx = new AudioContext({ latencyHint: "interactive" });
  await ctx.audioWorklet.addModule(urls.capture);
  await ctx.audioWorklet.addModule(urls.playback);
  const source = ctx.createMediaStreamSource(media);
  const capture = new AudioWorkletNode(ctx, "voicekit-capture", {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
  });
  const playback = new AudioWorkletNode(ctx, "voicekit-playback", {
    numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: { prebuffer },
  });
  capture.port.onmessage = (event) => {
    if (onLevel) onLevel(event.data.level);
    if (onFrame) onFrame(event.data.pcm);
  };
  playback.port.onmessage = (event) => {
    const data = event.data;
    if (data.played !== undefined && data.cleared === undefined) { if (onPlayed) onPlayed(data.played, data.at); }
    else if (data.cleared !== undefined) { if (onCleared) onCleared(data.cleared, data.played); }
    else if (data.started !== undefined) { if (onStarted) onStarted(data.started); }
    else if (data.idle !== undefined) { if (onIdle) onIdle(data.idle); }
    else if (data.stats && onStats) onStats(data.stats);
  };
  source.connect(capture);
  capture.connect(ctx.destination); // silent: keeps the capture node pulled
  playback.connect(ctx.destination);
  await ctx.resume();
  let closed = false;
  return {
    context: ctx,
    rate: ctx.sampleRate,
    play(buffer) { if (!closed) playback.port.postMessage({ pcm: buffer }, [buffer]); },
    mark(name) { if (!closed) playback.port.postMessage({ mark: name }); },
    clear() { if (!closed) playback.port.postMessage({ clear: true }); },
    async close() {
      if (closed) return;
      closed = true;
      capture.port.postMessage("stop");
      for (const track of media.getTracks()) track.stop();
      await ctx.close();
    },
  };
}

/** Hold one call over `channel` ({send(textOrArrayBuffer), close()}; feed its messages to the
 * returned `receive`): the caller's audio goes out, the agent's is played, each mark is
 * answered with `played` once its audio has been played, `clear` flushes playback at once.
 * `on(event)` gets every display message ({type: "transcript"|"mark"|"metrics"|…}) and the
 * page's own: {type: "spoken", name, text} (a sentence played to its end), {type: "cleared",
 * samples}, {type: "level", level}, {type: "stats", …}. */
export async function startCall(channel, urls, { on = () => {}, start = {}, stream = null,
  prebuffer = 0.06 } = {}) {
  const sentences = new Map(); // mark name -> sentence text
  // what happened, for tests and the curious: marks played, samples dropped at each clear and
  // how long the flush took (ms from the clear's arrival to the worklet's answer)
  // startMs: from the first audio of a reply (after silence) to its first sample played
  // playedAt: the samples played (all replies) when each mark was reached
  const report = { played: [], playedAt: [], cleared: [], flushMs: [], playedAtClear: [],
    startMs: [], frames: 0, received: 0 };
  let clearAt = 0;
  let playing = false;
  let waitingSince = 0; // when audio arrived while playback was idle
  let open = true;
  channel.send(JSON.stringify({ type: "start", acks: true, events: true, ...start }));
  const audio = await openAudio(urls, {
    stream, prebuffer,
    onFrame(pcm) { if (open) { channel.send(pcm); report.frames += 1; } },
    onLevel(level) { on({ type: "level", level }); },
    onPlayed(name, at) {
      report.played.push(name);
      report.playedAt.push(at);
      if (open) channel.send(JSON.stringify({ type: "played", name }));
      on({ type: "spoken", name, text: sentences.get(name) || "" });
      sentences.delete(name);
    },
    onCleared(samples, played) {
      report.cleared.push(samples);
      report.playedAtClear.push(played);
      report.flushMs.push(performance.now() - clearAt);
      on({ type: "cleared", samples });
    },
    onStats(stats) { report.stats = stats; on({ type: "stats", ...stats }); },
    onStarted() {
      playing = true;
      if (waitingSince) report.startMs.push(performance.now() - waitingSince);
      waitingSince = 0;
    },
    onIdle() { playing = false; },
  });
  function receive(message) {
    if (message instanceof ArrayBuffer) {
      report.received += message.byteLength / 2;
      if (!playing && !waitingSince) waitingSince = performance.now();
      audio.play(message);
      return;
    }
    const data = JSON.parse(message);
    if (data.type === "mark") {
      sentences.set(data.name, data.text || "");
      audio.mark(data.name);
    } else if (data.type === "clear") {
      clearAt = performance.now();
      playing = false;
      waitingSince = 0;
      audio.clear();
    }
    on(data);
  }
  async function hangUp(sendStop = true) {
    if (!open) return;
    open = false;
    if (sendStop) {
      try { channel.send(JSON.stringify({ type: "stop" })); } catch (e) { /* gone already */ }
    }
    await audio.close();
    channel.close();
  }
  return { receive, hangUp, report, audio, ended: () => !open };
}

// voicekit over WebRTC: the page's other transport (its switch), for use across networks.
// The microphone goes out as an Opus track, the agent's audio comes back as one and is played
// by an <audio> element (so the browser's echo canceller and jitter buffer handle it); the
// control messages are those of /ws, on a data channel, so the page's display code is shared.
// Signalling: GET /webrtc (the ICE servers), then POST /webrtc with the offer, the /ws token
// as a bearer; the answer comes back whole (no trickle ICE). The server decides what was
// played: it sends each sentence's `mark` when the audio before it has gone out, and drops
// what it had queued on a barge-in (`clear`, with the samples `flushed`).
// Plain ES module, no dependencies.

const QUIET = 0.005; // below this RMS a 20 ms frame of the agent's audio counts as silence

function gathered(pc, seconds = 3) {
  // every local candidate, or `seconds` (a STUN/TURN server that does not answer)
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, seconds * 1000);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() { if (pc.iceGatheringState === "complete") done(); }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function meter(ctx, url, stream, onFrame) {
  // the capture worklet on a stream: 20 ms frames at 16 kHz with their level
  const source = ctx.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(ctx, "voicekit-capture", {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
  });
  node.port.onmessage = (event) => onFrame(event.data.pcm.byteLength / 2, event.data.level);
  source.connect(node);
  node.connect(ctx.destination); // silent: keeps the node pulled
  return node;
}

/** Hold one call over WebRTC. `urls`: {capture} (the capture worklet, used to measure the
 * levels); `token`: the /ws token; `on(event)` gets the display messages and the page's own
 * ({type: "spoken", name, text} when a sentence's mark arrives, i.e. its audio has been sent,
 * {type: "cleared", samples}, {type: "level", level}); `onEnded(reason)` once the call is over.
 * Returns {hangUp, report, connection, ended}: `report` holds the marks played, the samples
 * the server flushed at each clear, the agent's audio heard (16 kHz samples in 20 ms frames
 * above silence) in all and at each clear; `connection()` gives the ICE candidate types and
 * the codecs in use. */
export async function startRtcCall(urls, { token = "", on = () => {}, onEnded = () => {},
  stream = null, endpoint = new URL("../webrtc", import.meta.url).href } = {}) {
  const auth = token ? { authorization: `Bearer ${token}` } : {};
  const got = await fetch(endpoint, { headers: auth });
  if (!got.ok) throw new Error(`/webrtc ${got.status}: ${await got.text()}`);
  const { iceServers } = await got.json();
  const media = stream || await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true,
      channelCount: 1 },
  });
  const report = { played: [], cleared: [], heardAtClear: [], heard: 0, frames: 0,
    state: "new" };
  const pc = new RTCPeerConnection({ iceServers });
  const channel = pc.createDataChannel("voicekit", { ordered: true });
  pc.addTransceiver(media.getAudioTracks()[0], { direction: "sendrecv", streams: [media] });
  const ctx = new AudioContext({ latencyHint: "interactive" });
  await ctx.audioWorklet.addModule(urls.capture);
  const player = new Audio();
  player.autoplay = true;
  let open = true;
  const remote = new Promise((resolve) => {
    pc.ontrack = (event) => resolve(event.streams[0] || new MediaStream([event.track]));
  });
  async function hangUp(sendStop = true, reason = "call ended") {
    if (!open) return;
    open = false;
    if (sendStop && channel.readyState === "open") {
      try { channel.send(JSON.stringify({ type: "stop" })); } catch (e) { /* gone already */ }
    }
    for (const track of media.getTracks()) track.stop();
    player.srcObject = null;
    channel.close();
    pc.close();
    report.state = "closed";
    await ctx.close();
    onEnded(reason);
  }
  pc.onconnectionstatechange = () => {
    report.state = pc.connectionState;
    if (pc.connectionState === "failed") hangUp(false, "connection failed");
  };
  channel.onclose = () => hangUp(false);
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const reply = await fetch(endpoint, {
      method: "POST", headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }),
    });
    if (!reply.ok) throw new Error(`/webrtc ${reply.status}: ${await reply.text()}`);
    await pc.setRemoteDescription(await reply.json());
    await new Promise((resolve, reject) => {
      channel.onopen = resolve;
      channel.onerror = () => reject(new Error("the data channel failed"));
      pc.addEventListener("connectionstatechange", () => {
        if (pc.connectionState === "failed") reject(new Error("no ICE connection"));
      });
    });
  } catch (error) {
    open = false;
    for (const track of media.getTracks()) track.stop();
    pc.close();
    await ctx.close();
    throw error;
  }
  channel.onmessage = (event) => {
    if (typeof event.data !== "string") return;
    const data = JSON.parse(event.data);
    on(data);
    if (data.type === "mark") {
      report.played.push(data.name);
      on({ type: "spoken", name: data.name, text: data.text || "" });
    } else if (data.type === "clear") {
      report.cleared.push(data.flushed || 0);
      report.heardAtClear.push(report.heard);
      on({ type: "cleared", samples: data.flushed || 0 });
    }
  };
  channel.send(JSON.stringify({ type: "start", acks: true, events: true }));
  const agent = await remote;
  player.srcObject = agent; // Chrome feeds a remote track to Web Audio only while it plays
  await meter(ctx, urls.capture, agent, (samples, level) => {
    report.frames += 1;
    if (level > QUIET) report.heard += samples;
  });
  await meter(ctx, urls.capture, media, (samples, level) => on({ type: "level", level }));
  await ctx.resume();
  async function connection() {
    // the ICE candidate types of the pair in use ("host", "srflx", "relay") and the codecs of
    // the audio sent and received
    const stats = await pc.getStats();
    const out = { candidates: [], codecs: {} };
    for (const s of stats.values()) {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        out.candidates = [stats.get(s.localCandidateId).candidateType,
          stats.get(s.remoteCandidateId).candidateType];
      } else if ((s.type === "inbound-rtp" || s.type === "outbound-rtp") && s.codecId) {
        out.codecs[s.type] = stats.get(s.codecId).mimeType;
      }
    }
    return out;
  }
  return { hangUp, report, connection, ended: () => !open };
}

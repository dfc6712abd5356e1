// The page `voicekit serve` shows at "/": press Talk, speak, hear the reply.
import { startCall } from "./audio.js";
import { startRtcCall } from "./webrtc.js";

const urls = {
  capture: new URL("./capture-worklet.js", import.meta.url).href,
  playback: new URL("./playback-worklet.js", import.meta.url).href,
};
const $ = (id) => document.getElementById(id);
const COLOURS = {
  "user speech": "#4c72b0", "VAD stop": "#8c8c8c", "STT": "#dd8452", "turn end": "#c9b458",
  "LLM first token": "#8172b3", "first sentence": "#937860", "TTS first audio": "#da8bc3",
  "LLM + TTS first audio": "#8172b3", "reply audio": "#55a868",
};

// what the page did, for people and for tests (window.voicekit)
const state = { status: "ready", events: [], played: [], spoken: [], cleared: [], metrics: [],
  call: null, transport: "ws" };
window.voicekit = state;
// the transport switch: WebSocket (/ws) or WebRTC (/webrtc); "#transport=webrtc" picks one
const chosen = new URLSearchParams(location.hash.slice(1)).get("transport");
if (chosen === "ws" || chosen === "webrtc") $("transport").value = chosen;

function setStatus(text) { state.status = text; $("status").textContent = text; }

function line(kind, text) {
  const div = document.createElement("div");
  div.className = `line ${kind}`;
  div.textContent = text;
  $("conversation").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

let partial = null; // the user's words so far
let reply = null; // the agent's line being spoken

function show(event) {
  if (event.type !== "level" && event.type !== "stats") state.events.push(event);
  switch (event.type) {
    case "level": $("level").value = event.level; break;
    case "speech":
      setStatus(event.state === "started" ? "listening…" : "thinking…"); break;
    case "transcript":
      if (!event.text.trim()) break;
      if (!partial) partial = line("user partial", "");
      partial.textContent = event.text;
      if (event.final) { partial.classList.remove("partial"); partial = null; }
      break;
    case "turn": partial = null; reply = null; break;
    case "reply": reply = null; break;
    case "tool_call": line("tool", `→ ${event.name}(${event.arguments})`); break;
    case "tool_result": line("tool", `← ${event.name}: ${event.content}`); break;
    case "spoken":
      state.played.push(event.name);
      if (!event.text) break;
      state.spoken.push(event.text);
      if (!reply) reply = line("agent", "");
      reply.textContent = (reply.textContent + " " + event.text).trim();
      setStatus("speaking…");
      break;
    case "clear": if (reply) reply.classList.add("cut"); reply = null; break;
    case "cleared": state.cleared.push(event.samples); setStatus("interrupted"); break;
    case "metrics": state.metrics.push(event); drawLatency(event); break;
  }
}

function drawLatency(m) {
  const bars = $("bars");
  bars.textContent = "";
  if (!m.spans.length) return;
  const left = Math.min(...m.spans.map((s) => s[1]));
  const right = Math.max(...m.spans.map((s) => s[2]));
  const width = Math.max(right - left, 1e-3);
  for (const [label, a, b] of m.spans) {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span");
    name.textContent = label;
    const track = document.createElement("div");
    track.className = "track";
    const span = document.createElement("div");
    span.className = "span";
    span.style.left = `${((a - left) / width) * 100}%`;
    span.style.width = `${Math.max(((b - a) / width) * 100, 0.5)}%`;
    span.style.background = COLOURS[label] || "#999";
    track.append(span);
    const ms = document.createElement("span");
    ms.textContent = `${Math.round((b - a) * 1000)} ms`;
    row.append(name, track, ms);
    bars.append(row);
  }
  if (m.voice_to_voice !== null && m.voice_to_voice !== undefined) {
    const total = document.createElement("div");
    total.className = "total";
    total.textContent = `voice-to-voice ${Math.round(m.voice_to_voice * 1000)} ms` +
      (m.interrupted ? " (interrupted)" : "");
    bars.append(total);
  }
}

function idle(text) {
  state.call = null;
  setStatus(text);
  $("talk").textContent = "Talk";
  $("talk").classList.remove("on");
  $("talk").disabled = false;
  $("transport").disabled = false;
}

function calling(call) {
  state.call = call;
  $("talk").textContent = "Hang up";
  $("talk").classList.add("on");
  $("talk").disabled = false;
  setStatus("listening…");
}

async function talk() {
  const button = $("talk");
  button.disabled = true;
  $("transport").disabled = true;
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  state.transport = $("transport").value;
  if (state.transport === "webrtc") {
    calling(await startRtcCall(urls, { token, on: show, onEnded: idle }));
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("could not connect to /ws"));
  });
  const channel = { send: (m) => { if (ws.readyState === 1) ws.send(m); }, close: () => ws.close() };
  let call = null;
  let closed = false;
  const early = []; // messages before the call's audio is ready
  const ended = (event) => {
    closed = true;
    if (call) call.hangUp(false);
    idle(event.code === 1008 ? "call refused (wrong or missing token?)" : "call ended");
  };
  ws.onmessage = (event) => (call ? call.receive(event.data) : early.push(event.data));
  ws.onclose = ended;
  call = await startCall(channel, urls, { on: show, start: { token } });
  for (const message of early.splice(0)) call.receive(message);
  if (closed) { await call.hangUp(false); return; }
  calling(call);
}

$("talk").addEventListener("click", async () => {
  if (state.call) { await state.call.hangUp(); return; }
  try { await talk(); } catch (error) {
    idle(`error: ${error.message}`);
  }
});
// leaving the page hangs up (the peer connection and the socket close with it anyway)
window.addEventListener("pagehide", () => { if (state.call) state.call.hangUp(); });

// The front end of voicekit.notebook.talk (an anywidget): microphone button, level meter,
// transcript and reply text. The audio travels over the widget's comm: the /ws protocol's
// text messages as {text}, its audio as {audio: true} with one binary buffer, {hangup: true}
// when the browser leaves; the kernel sends {closed: code} when it ends a call.
// The shared code (audio.js and the worklets) comes from the model as text: no build step, no
// network.

const blobUrl = (text) => URL.createObjectURL(new Blob([text], { type: "text/javascript" }));

function element(tag, style, text) {
  const node = document.createElement(tag);
  if (style) node.style.cssText = style;
  if (text) node.textContent = text;
  return node;
}

function asArrayBuffer(buffer) {
  if (buffer instanceof ArrayBuffer) return buffer;
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
}

async function render({ model, el }) {
  const shared = await import(blobUrl(model.get("_audio_js")));
  const urls = { capture: blobUrl(model.get("_capture_js")),
    playback: blobUrl(model.get("_playback_js")) };
  const root = element("div", "font: 14px system-ui, sans-serif; border: 1px solid #ddd; " +
    "border-radius: 8px; padding: 8px; max-width: 640px");
  const bar = element("div", "display: flex; gap: 10px; align-items: center");
  const button = element("button", "padding: 4px 14px; border-radius: 12px; border: 0; " +
    "color: #fff; background: #2f7d4f; cursor: pointer", "🎤 Talk");
  button.className = "voicekit-talk";
  const meter = element("meter", "width: 120px");
  meter.min = 0; meter.max = 0.3; meter.value = 0;
  const status = element("span", "color: #666", "ready");
  bar.append(button, meter, status);
  const you = element("div", "margin-top: 6px; color: #1a4d8f");
  you.className = "voicekit-you";
  const agent = element("div", "margin-top: 4px; color: #1f5f3a");
  agent.className = "voicekit-agent";
  root.append(bar, you, agent);
  el.append(root);

  const seen = { played: [], spoken: [], cleared: [], events: [] };
  el.voicekit = seen; // for tests and the curious
  let call = null;
  const channel = {
    send(message) {
      if (typeof message === "string") model.send({ text: message });
      else model.send({ audio: true }, undefined, [message]);
    },
    close() { model.send({ hangup: true }); },
  };
  const idle = (text) => {
    call = null;
    button.textContent = "🎤 Talk";
    button.style.background = "#2f7d4f";
    status.textContent = text;
  };
  function show(event) {
    if (event.type === "level") { meter.value = event.level; return; }
    if (event.type === "stats") { seen.stats = event; return; }
    seen.events.push(event);
    if (event.type === "transcript" && event.text.trim()) you.textContent = `you: ${event.text}`;
    else if (event.type === "speech") status.textContent = event.state === "started" ? "listening…" : "thinking…";
    else if (event.type === "reply") agent.textContent = "agent:";
    else if (event.type === "tool_call") agent.textContent += ` [${event.name}]`;
    else if (event.type === "spoken") {
      seen.played.push(event.name);
      if (event.text) { seen.spoken.push(event.text); agent.textContent += ` ${event.text}`; }
      status.textContent = "speaking…";
    } else if (event.type === "clear") agent.textContent += " —";
    else if (event.type === "cleared") { seen.cleared.push(event.samples); status.textContent = "interrupted"; }
    else if (event.type === "metrics" && event.voice_to_voice != null) {
      status.textContent = `voice-to-voice ${Math.round(event.voice_to_voice * 1000)} ms`;
    }
  }
  const onMessage = (msg, buffers) => {
    if (!call) return;
    if (msg.audio && buffers && buffers.length) call.receive(asArrayBuffer(buffers[0]));
    else if (msg.text !== undefined) call.receive(msg.text);
    else if (msg.closed !== undefined) { call.hangUp(false); idle("call ended"); }
  };
  model.on("msg:custom", onMessage);
  button.addEventListener("click", async () => {
    if (call) { const ending = call; idle("call ended"); await ending.hangUp(); return; }
    button.disabled = true;
    try {
      call = await shared.startCall(channel, urls, { on: show });
      seen.call = call;
      button.textContent = "■ Hang up";
      button.style.background = "#b3261e";
      status.textContent = "listening…";
    } catch (error) {
      status.textContent = `error: ${error.message}`;
      call = null;
    }
    button.disabled = false;
  });
  return () => {
    model.off("msg:custom", onMessage);
    if (call) call.hangUp();
  };
}

export default { render };

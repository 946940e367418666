"""The web page at `/`: one self-contained HTML document (inline CSS and JS, nothing fetched
from elsewhere), so it works on machines without internet access.

Two ways in: a file or a recording sent to /v1/audio/transcriptions, or live from the microphone
over the realtime WebSocket (/v1/realtime, OpenAI's protocol; the API key goes in the
`openai-insecure-api-key.KEY` subprotocol, as browsers cannot set headers there). Live, the
microphone's samples (at the device's rate) go out as 16-bit PCM every 100 ms; partial text
is shown greyed and replaced by each utterance's final text.

Review aid: with "Word timestamps" ticked, an upload is transcribed as verbose_json with
timestamp_granularities[]=word, and the transcript is shown as words: each one a button-like
span that plays the uploaded (or recorded) audio from its start, words marked low_confidence by
the server highlighted, each word's probability in its tooltip."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medasr</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #1d232a; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  p.sub { margin-top: 0; color: #5b6570; }
  fieldset { border: 1px solid #d5dbe1; border-radius: 8px; margin: 0 0 1rem; padding: .8rem 1rem; }
  legend { padding: 0 .3rem; color: #5b6570; }
  label { display: block; margin: .4rem 0; }
  input[type=text], input[type=password], select, textarea { font: inherit; padding: .3rem; width: 100%; box-sizing: border-box; }
  .row { display: flex; gap: 1rem; } .row > label { flex: 1; }
  button { font: inherit; padding: .45rem 1rem; border-radius: 6px; border: 1px solid #8a96a3; background: #f4f6f8; cursor: pointer; }
  button.primary { background: #1f6feb; border-color: #1f6feb; color: white; }
  button:disabled { opacity: .5; cursor: default; }
  #record.on { background: #d1242f; border-color: #d1242f; color: white; }
  audio { width: 100%; margin-top: .5rem; }
  #status { min-height: 1.4rem; margin: .6rem 0; color: #5b6570; }
  #status[data-state=error] { color: #d1242f; }
  #transcript { white-space: pre-wrap; background: #f6f8fa; border: 1px solid #d5dbe1; border-radius: 8px; padding: .8rem; min-height: 4rem; }
  #live.on { background: #d1242f; border-color: #d1242f; color: white; }
  #livetext { background: #f6f8fa; border: 1px solid #d5dbe1; border-radius: 8px; padding: .4rem .8rem; min-height: 3rem; margin-top: .6rem; }
  #livetext p { margin: .3rem 0; }
  #livetext p.partial { color: #8a96a3; }
  #livetext p.failed { color: #d1242f; }
  #livetext .time { color: #5b6570; font-size: .85em; margin-right: .4rem; }
  #transcript .word { cursor: pointer; border-radius: 3px; }
  #transcript .word:hover { background: #dbe9ff; }
  #transcript .word.low { background: #fff1b8; text-decoration: underline dotted #b08800; }
  #transcript .word.playing { outline: 2px solid #1f6feb; }
</style>
</head>
<body>
<h1>medasr</h1>
<p class="sub">Medical speech recognition with Qwen3-ASR. Audio is sent to this server only.</p>

<fieldset>
  <legend>Audio</legend>
  <label>Upload a file <input id="file" type="file" accept="audio/*,video/webm,video/mp4"></label>
  <div>or <button id="record" type="button">Record</button> <span id="recinfo"></span></div>
  <audio id="player" controls hidden></audio>
</fieldset>

<fieldset>
  <legend>Live</legend>
  <div><button id="live" type="button">Start live transcription</button>
    <span id="liveinfo">from the microphone: partial text grey, final text black</span></div>
  <div id="livetext" data-finals="0"></div>
</fieldset>

<fieldset>
  <legend>Options</legend>
  <div class="row">
    <label>Format
      <select id="format">
        <option value="text">text</option><option value="json">json</option>
        <option value="srt">srt</option><option value="vtt">vtt</option>
        <option value="verbose_json">verbose_json</option>
      </select>
    </label>
    <label>Language <input id="language" type="text" value="en"></label>
  </div>
  <label><input id="words" type="checkbox"> Word timestamps: click a word to play the audio from there;
    words the model was unsure of are highlighted (takes the verbose_json format)</label>
  <label>Context (drug names, terms) <textarea id="prompt" rows="2"></textarea></label>
  <label>API key (if the server needs one) <input id="apikey" type="password" autocomplete="off"></label>
</fieldset>

<button id="transcribe" class="primary" type="button">Transcribe</button>
<div id="status" data-state="idle"></div>
<pre id="transcript"></pre>

<script>
"use strict";
const $ = (id) => document.getElementById(id);
let recording = null;  // the last recording as a Blob; a newly chosen file replaces it
let recorder = null;

function status(text, state) { $("status").textContent = text; $("status").dataset.state = state; }
function preview(blob) { const p = $("player"); p.src = URL.createObjectURL(blob); p.hidden = false; }

$("apikey").value = localStorage.getItem("medasr-key") || "";
$("file").addEventListener("change", () => {
  recording = null; $("recinfo").textContent = "";
  if ($("file").files[0]) preview($("file").files[0]);
});

if (!window.MediaRecorder || !navigator.mediaDevices) {
  $("record").disabled = true;
  $("recinfo").textContent = "recording needs a browser with MediaRecorder over https or localhost";
}
$("record").addEventListener("click", async () => {
  if (recorder) { recorder.stop(); return; }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); }
  catch (e) { status("Microphone unavailable: " + e.message, "error"); return; }
  const type = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus"].find((t) => MediaRecorder.isTypeSupported(t));
  const chunks = [];
  recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    recording = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
    recorder = null;
    $("record").textContent = "Record"; $("record").classList.remove("on");
    $("recinfo").textContent = "recorded " + Math.round(recording.size / 1024) + " kB";
    $("file").value = "";
    preview(recording);
  };
  recorder.start();
  $("record").textContent = "Stop"; $("record").classList.add("on");
  $("recinfo").textContent = "recording...";
});

$("words").addEventListener("change", () => { $("format").disabled = $("words").checked; });
$("format").disabled = $("words").checked;

// The transcript as words: clicking one plays the audio from its start; low-confidence ones highlighted.
function showWords(body) {
  const box = $("transcript");
  box.textContent = "";
  if (!body.words || !body.words.length) { box.textContent = body.text; return; }
  body.words.forEach((w, i) => {
    if (i) box.append(" ");
    const el = document.createElement("span");
    el.className = "word" + (w.low_confidence ? " low" : "");
    el.textContent = w.word;
    el.dataset.start = w.start; el.dataset.end = w.end;
    if (w.probability !== undefined) el.dataset.probability = w.probability;
    el.title = w.start.toFixed(2) + "-" + w.end.toFixed(2) + " s" +
      (w.probability !== undefined ? ", probability " + w.probability.toFixed(2) : "");
    el.addEventListener("click", () => playFrom(el));
    box.append(el);
  });
}
function playFrom(el) {
  const p = $("player");
  document.querySelectorAll("#transcript .word.playing").forEach((x) => x.classList.remove("playing"));
  el.classList.add("playing");
  p.currentTime = +el.dataset.start;
  p.play().catch(() => {});
}

$("transcribe").addEventListener("click", async () => {
  const file = $("file").files[0];
  if (!recording && !file) { status("Choose a file or record something first.", "error"); return; }
  const words = $("words").checked;
  const format = words ? "verbose_json" : $("format").value;
  const form = new FormData();
  if (recording) form.append("file", recording, recording.type.includes("ogg") ? "recording.ogg" : "recording.webm");
  else form.append("file", file, file.name);
  form.append("response_format", format);
  if (words) { form.append("timestamp_granularities[]", "word"); form.append("timestamp_granularities[]", "segment"); }
  form.append("language", $("language").value.trim() || "en");
  if ($("prompt").value.trim()) form.append("prompt", $("prompt").value.trim());
  const key = $("apikey").value.trim();
  localStorage.setItem("medasr-key", key);
  const headers = key ? { Authorization: "Bearer " + key } : {};
  $("transcribe").disabled = true; $("transcript").textContent = "";
  status("Transcribing...", "busy");
  const started = performance.now();
  try {
    const r = await fetch("v1/audio/transcriptions", { method: "POST", body: form, headers });
    if (!r.ok) {
      const body = await r.json().catch(() => null);
      status("Error " + r.status + ": " + ((body && body.error && body.error.message) || r.statusText), "error");
      return;
    }
    let out, note = "";
    if (words) {
      const body = await r.json();
      showWords(body);
      const low = (body.words || []).filter((w) => w.low_confidence).length;
      note = body.warnings ? " " + body.warnings.join(" ") : " " + (body.words || []).length + " words, " + low + " to review.";
    } else {
      if (format === "json") out = (await r.json()).text;
      else if (format === "verbose_json") out = JSON.stringify(await r.json(), null, 2);
      else out = await r.text();
      $("transcript").textContent = out;
    }
    status("Done in " + ((performance.now() - started) / 1000).toFixed(1) + " s." + note, "done");
  } catch (e) {
    status("Request failed: " + e.message, "error");
  } finally {
    $("transcribe").disabled = false;
  }
});

// ---------------------------------------------------------------- live, over /v1/realtime
const TAP = "class Tap extends AudioWorkletProcessor {" +
  " process(inputs) { const c = inputs[0][0]; if (c) this.port.postMessage(c.slice(0)); return true; } }" +
  " registerProcessor('tap', Tap);";
let live = null;  // {ws, ctx, stream, items, stopping}

function clock(ms) {
  const s = Math.max(ms, 0) / 1000, m = Math.floor(s / 60);
  return String(m).padStart(2, "0") + ":" + (s - 60 * m).toFixed(1).padStart(4, "0");
}
function pcm16(floats) {  // Float32Array -> base64 of 16-bit little-endian PCM
  const bytes = new Uint8Array(floats.length * 2), view = new DataView(bytes.buffer);
  for (let i = 0; i < floats.length; i++) {
    const x = Math.max(-1, Math.min(1, floats[i]));
    view.setInt16(2 * i, x < 0 ? x * 32768 : x * 32767, true);
  }
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}
function liveItem(id) {
  let el = live.items.get(id);
  if (!el) {
    el = document.createElement("p"); el.className = "partial"; el.dataset.item = id;
    el.append(Object.assign(document.createElement("span"), { className: "time" }), document.createElement("span"));
    $("livetext").append(el); live.items.set(id, el);
  }
  return el;
}
function liveOpen() { return [...live.items.values()].some((el) => el.className === "partial"); }
function liveEvent(e) {
  if (e.type === "input_audio_buffer.speech_started") {
    liveItem(e.item_id).dataset.start = e.audio_start_ms;
  } else if (e.type === "input_audio_buffer.speech_stopped") {
    liveItem(e.item_id).dataset.end = e.audio_end_ms;
  } else if (e.type === "input_audio_buffer.committed") {
    liveItem(e.item_id);
  } else if (e.type === "conversation.item.input_audio_transcription.delta") {
    liveItem(e.item_id).lastChild.textContent += e.delta;
  } else if (e.type === "conversation.item.input_audio_transcription.completed") {
    const el = liveItem(e.item_id);
    el.className = "final"; el.lastChild.textContent = e.transcript;
    if (el.dataset.start) el.firstChild.textContent = clock(+el.dataset.start) + " - " + clock(+(el.dataset.end || el.dataset.start));
    $("livetext").dataset.finals = +$("livetext").dataset.finals + 1;
    if (!e.transcript) el.hidden = true;
  } else if (e.type === "conversation.item.input_audio_transcription.failed") {
    const el = liveItem(e.item_id);
    el.className = "failed"; el.lastChild.textContent = "(not transcribed: " + e.error.message + ")";
  } else if (e.type === "error") {
    if (live.stopping && e.error.code === "input_audio_buffer_commit_empty") { /* nothing was open */ }
    else status("Live: " + e.error.message, "error");
  }
  if (live.stopping && !liveOpen()) live.ws.close();
}
async function startLive() {
  const key = $("apikey").value.trim();
  localStorage.setItem("medasr-key", key);
  let stream;
  try {
    const raw = { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    stream = await navigator.mediaDevices.getUserMedia({ audio: raw });
  } catch (e) { status("Microphone unavailable: " + e.message, "error"); return; }
  const ctx = new AudioContext();  // the device's rate; the server resamples
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], { type: "application/javascript" })));
  const url = location.href.replace(/^http/, "ws").replace(/[?#].*$/, "").replace(/[^/]*$/, "") + "v1/realtime?intent=transcription";
  const ws = new WebSocket(url, key ? ["realtime", "openai-insecure-api-key." + key] : ["realtime"]);
  live = { ws, ctx, stream, items: new Map(), stopping: false };
  $("livetext").textContent = ""; $("livetext").dataset.finals = 0;
  $("live").textContent = "Stop"; $("live").classList.add("on");
  ws.onopen = () => {
    const language = $("language").value.trim() || "en", prompt = $("prompt").value.trim();
    ws.send(JSON.stringify({ type: "session.update", session: { type: "transcription", audio: { input: {
      format: { type: "audio/pcm", rate: ctx.sampleRate },
      transcription: prompt ? { language, prompt } : { language },
      turn_detection: { type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 },
    } } } }));
    const tap = new AudioWorkletNode(ctx, "tap");
    let pending = [], count = 0;
    tap.port.onmessage = (m) => {
      if (ws.readyState !== WebSocket.OPEN || live.stopping) return;
      pending.push(m.data); count += m.data.length;
      if (count < ctx.sampleRate / 10) return;  // 100 ms at a time
      const all = new Float32Array(count); let at = 0;
      for (const p of pending) { all.set(p, at); at += p.length; }
      pending = []; count = 0;
      ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: pcm16(all) }));
    };
    ctx.createMediaStreamSource(stream).connect(tap);
    tap.connect(ctx.destination);  // outputs silence; connected so that it is pulled
    status("Live: listening...", "live");
  };
  ws.onmessage = (m) => liveEvent(JSON.parse(m.data));
  ws.onclose = (e) => {
    stream.getTracks().forEach((t) => t.stop()); ctx.close();
    $("live").textContent = "Start live transcription"; $("live").classList.remove("on");
    const ended = e.code === 1000 || live.stopping ? "Live transcription ended." : "Live connection closed (" + e.code + ").";
    if ($("status").dataset.state !== "error") status(ended, "done");
    live = null;
  };
}
function stopLive() {
  live.stopping = true;
  live.stream.getTracks().forEach((t) => t.stop());
  status("Live: finishing...", "busy");
  if (live.ws.readyState !== WebSocket.OPEN) { live.ws.close(); return; }
  live.ws.send(JSON.stringify({ type: "input_audio_buffer.commit" }));  // close what is open; its final follows
  const ws = live.ws;
  setTimeout(() => ws.close(), 30000);  // a server that never answers
}
$("live").addEventListener("click", () => { if (live) stopLive(); else startLive(); });
if (!window.AudioWorkletNode || !navigator.mediaDevices) {
  $("live").disabled = true;
  $("liveinfo").textContent = "live transcription needs a browser with AudioWorklet over https or localhost";
}
</script>
</body>
</html>
"""

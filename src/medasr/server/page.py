"""The web page at `/`: one self-contained HTML document (inline CSS and JS, nothing fetched
from elsewhere), so it works on machines without internet access."""

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

$("transcribe").addEventListener("click", async () => {
  const file = $("file").files[0];
  if (!recording && !file) { status("Choose a file or record something first.", "error"); return; }
  const format = $("format").value;
  const form = new FormData();
  if (recording) form.append("file", recording, recording.type.includes("ogg") ? "recording.ogg" : "recording.webm");
  else form.append("file", file, file.name);
  form.append("response_format", format);
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
    let out;
    if (format === "json") out = (await r.json()).text;
    else if (format === "verbose_json") out = JSON.stringify(await r.json(), null, 2);
    else out = await r.text();
    $("transcript").textContent = out;
    status("Done in " + ((performance.now() - started) / 1000).toFixed(1) + " s.", "done");
  } catch (e) {
    status("Request failed: " + e.message, "error");
  } finally {
    $("transcribe").disabled = false;
  }
});
</script>
</body>
</html>
"""

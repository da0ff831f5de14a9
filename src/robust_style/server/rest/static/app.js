// robust-style web page: plain JavaScript, no build step, no CDN.
// Talks to the image endpoint of the same server (/v1/styles...). A bearer token, when
// the server needs one, is read from the page's fragment: http://host:8000/#token=SECRET
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const authHeaders = token ? { Authorization: `Bearer ${token}` } : {};
const state = { style: null, photo: null, webcam: false, frames: 0, started: 0 };

function status(text) { $("status").textContent = text; }

async function errorText(r) {
  try { return (await r.json()).error || r.statusText; } catch (_) { return r.statusText; }
}

function query(format) {
  const p = new URLSearchParams({
    strength: $("strength").value, preserve_color: $("preserve").checked ? "true" : "false",
    max_side: $("max-side").value, format, quality: "90",
  });
  return p.toString();
}

async function stylize(blob, format) {
  const r = await fetch(`/v1/styles/${encodeURIComponent(state.style)}/stylize?${query(format)}`,
    { method: "POST", body: blob, headers: { ...authHeaders, "Content-Type": blob.type || "application/octet-stream" } });
  if (!r.ok) throw new Error(`${r.status}: ${await errorText(r)}`);
  return { blob: await r.blob(), ms: r.headers.get("X-Timing-Total-Ms") };
}

async function image(url) {  // an <img> source for an API URL (with the token, if any)
  if (!token) return url;
  const r = await fetch(url, { headers: authHeaders });
  return URL.createObjectURL(await r.blob());
}

async function loadStyles() {
  const r = await fetch("/v1/styles", { headers: authHeaders });
  const box = $("styles");
  if (!r.ok) { box.innerHTML = ""; status(`cannot list the styles: ${await errorText(r)}`); return; }
  const styles = (await r.json()).styles;
  box.innerHTML = "";
  if (!styles.length) { box.textContent = "No style is loaded."; return; }
  for (const s of styles) {
    const card = document.createElement("button");
    card.type = "button";
    card.className = "card";
    card.dataset.style = s.name;
    const img = document.createElement("img");
    img.alt = s.name;
    image(s.thumbnail).then((src) => { img.src = src; });
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = s.name;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = [`v${s.version}`, s.metadata.backbone, s.engine, s.precision].filter(Boolean).join(" · ");
    card.title = s.metadata.description || s.name;
    card.append(img, name, meta);
    card.addEventListener("click", () => select(s.name));
    box.append(card);
  }
  select(styles[0].name);
}

function select(name) {
  state.style = name;
  for (const c of document.querySelectorAll(".card")) {
    c.classList.toggle("selected", c.dataset.style === name);
  }
  refresh();
}

let pending = false, again = false;
async function refresh() {  // restylise the photo (one request at a time, the latest options)
  if (!state.photo || !state.style || state.webcam) return;
  if (pending) { again = true; return; }
  pending = true;
  status(`stylising with ${state.style}…`);
  try {
    const { blob, ms } = await stylize(state.photo, "png");
    const url = URL.createObjectURL(blob);
    const old = $("result").src;
    $("result").src = url;
    $("download").href = url;
    $("download").download = `${(state.photo.name || "photo").replace(/\.[^.]*$/, "")}_${state.style}.png`;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    $("photo-view").hidden = false;
    $("result").dataset.done = String(Number($("result").dataset.done || 0) + 1);
    status(`${state.style}: ${Number(ms).toFixed(0)} ms on the server`);
  } catch (e) {
    status(`failed: ${e.message}`);
  } finally {
    pending = false;
    if (again) { again = false; refresh(); }
  }
}

function choose(file) {
  if (!file) return;
  stopWebcam();
  state.photo = file;
  const old = $("before").src;
  $("before").src = URL.createObjectURL(file);
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  refresh();
}

// -- webcam: grab a frame, send it as JPEG, show the answer, then the next one ------------
async function startWebcam() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  } catch (e) { status(`no camera: ${e.message}`); return; }
  const video = $("camera");
  video.srcObject = stream;
  await video.play();
  state.webcam = true; state.frames = 0; state.started = performance.now();
  $("webcam").textContent = "Stop webcam"; $("webcam").classList.add("on");
  $("webcam-view").hidden = false; $("photo-view").hidden = true;
  status(`webcam → ${state.style}`);
  const canvas = document.createElement("canvas");
  while (state.webcam) {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) { await new Promise((r) => setTimeout(r, 50)); continue; }
    const side = Number($("max-side").value) || 1024;
    const scale = Math.min(1, Math.min(side, 640) / Math.max(w, h));
    canvas.width = Math.round(w * scale); canvas.height = Math.round(h * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const frame = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.85));
    try {
      const { blob } = await stylize(frame, "jpeg");
      if (!state.webcam) break;
      const out = $("webcam-out"), old = out.src;
      out.src = URL.createObjectURL(blob);
      await out.decode().catch(() => {});
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      state.frames += 1;
      $("frames").textContent = String(state.frames);
      $("fps").textContent = (state.frames / ((performance.now() - state.started) / 1000)).toFixed(1);
    } catch (e) { status(`webcam frame failed: ${e.message}`); await new Promise((r) => setTimeout(r, 500)); }
  }
  for (const t of stream.getTracks()) t.stop();
}

function stopWebcam() {
  if (!state.webcam) return;
  state.webcam = false;
  $("webcam").textContent = "Start webcam"; $("webcam").classList.remove("on");
  $("webcam-view").hidden = true;
}

$("webcam").addEventListener("click", () => (state.webcam ? stopWebcam() : startWebcam()));
$("file").addEventListener("change", (e) => choose(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files[0]); });
$("strength").addEventListener("input", () => { $("strength-value").textContent = Number($("strength").value).toFixed(2); });
$("strength").addEventListener("change", refresh);
$("preserve").addEventListener("change", refresh);
$("max-side").addEventListener("change", refresh);
$("split").addEventListener("input", () => { $("result").style.clipPath = `inset(0 0 0 ${$("split").value}%)`; });
loadStyles();

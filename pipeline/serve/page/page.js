// defr serve's page: photos (and short clips) dropped or chosen go to POST v1/detect (one request each,
// with their boxes when a boxes file or a pasted list gives them); each answer shows the annotated picture
// (or video) and the top interactions. Plain JS, no dependencies; every server text is shown as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const TOP = 5;            // interactions listed per photo
const PARALLEL = 4;       // requests in flight (the server batches them)
let info = null;          // GET healthz
let boxesByName = {};     // file name -> list of {category, box, score}, from dropped boxes files

async function health() {
  try {
    const r = await fetch("healthz");
    info = await r.json();
    $("server").textContent = `model ${info.model} (${info.classes} classes) on ${info.device}; ` +
      (info.detector ? "boxes: the server's detector unless you give them; " : "boxes: give them (no detector); ") +
      `limits ${info.max_upload_mb} MB, ${(info.max_pixels / 1e6).toFixed(0)} megapixels per photo, ` +
      `clips up to ${info.max_clip_s} s (${info.clip_fps} frames per s scored)`;
    if (info.notes && info.notes.length) {
      $("notes").textContent = info.notes.join(" | ");
      $("notes").hidden = false;
    }
    $("token-row").hidden = !info.token_required;
  } catch (e) {
    $("server").textContent = `server not reachable: ${e}`;
  }
}

function baseName(name) {
  return name.split(/[\\/]/).pop();
}

function boxesFor(name) {
  if (Object.prototype.hasOwnProperty.call(boxesByName, name)) return JSON.stringify(boxesByName[name]);
  const pasted = $("boxes").value.trim();
  return pasted || null;
}

function card(title) {
  const node = $("card").content.firstElementChild.cloneNode(true);
  node.querySelector(".name").textContent = title;
  $("results").append(node);
  return node;
}

function fail(node, message) {
  node.classList.add("failed");
  node.querySelector(".status").textContent = message;
}

async function readBoxesFile(file) {
  try {
    const doc = JSON.parse(await file.text());
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new Error("expected file name -> list");
    for (const [key, list] of Object.entries(doc)) boxesByName[baseName(key)] = list;
    $("boxes-hint").textContent = `Boxes of ${Object.keys(doc).length} photo(s) from ${file.name}.`;
  } catch (e) {
    fail(card(file.name), `not a boxes file: ${e.message}`);
  }
}

async function detect(file) {
  const node = card(file.name);
  node.querySelector(".status").textContent = "scoring...";
  const form = new FormData();
  form.append("image", file, file.name);
  const boxes = boxesFor(file.name);
  if (boxes !== null) form.append("boxes", boxes);
  const headers = {};
  const token = $("token").value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  let r, body;
  try {
    r = await fetch("v1/detect?picture=embed", { method: "POST", body: form, headers });
    body = await r.json();
  } catch (e) {
    fail(node, r ? `${r.status} ${r.statusText}` : `no answer: ${e}`);
    return;
  }
  if (!r.ok) {
    fail(node, `${r.status}: ${body.error || JSON.stringify(body)}`);
    return;
  }
  show(node, body);
}

function show(node, body) {
  const clip = body.kind === "clip";
  if (clip && body.video) {
    const video = document.createElement("video");
    Object.assign(video, { src: body.video, controls: true, muted: true, loop: true, autoplay: true });
    node.querySelector(".picture").replaceWith(video);
  } else if (body.picture) {
    const img = node.querySelector(".picture");
    img.src = body.picture;
    img.alt = `${body.image} with its best pairs drawn`;
    img.hidden = false;
  }
  const from = body.boxes_from === "detector" ? "detected" : "given";
  node.querySelector(".status").textContent = clip
    ? `${body.clip.frames} frame(s) at ${body.clip.sampled_fps} per s, ${body.clip.frames_with_pairs} with pairs ` +
      `(${from} boxes), ${body.seconds.toFixed(1)} s`
    : `${body.pairs} pair(s) from ${body.boxes.length} ${from} box(es), ${body.seconds.toFixed(2)} s` +
      (body.note ? ` - ${body.note}` : "");
  const list = node.querySelector(".top");
  for (const h of body.hois.slice(0, TOP)) {
    const item = document.createElement("li");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = h.score.toFixed(3);
    item.append(`${h.name.replace(/_/g, " ")} `, score, clip ? ` (frame ${h.frame}, ${h.time_s.toFixed(1)} s)` : "");
    list.append(item);
  }
}

async function handle(files) {
  const all = Array.from(files);
  for (const f of all.filter((f) => f.name.toLowerCase().endsWith(".json"))) await readBoxesFile(f);
  const queue = all.filter((f) => !f.name.toLowerCase().endsWith(".json"));
  const workers = Array.from({ length: Math.min(PARALLEL, queue.length) }, async () => {
    while (queue.length) await detect(queue.shift());
  });
  await Promise.all(workers);
}

function setUp() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    handle(e.dataTransfer.files);
  });
  $("files").addEventListener("change", (e) => { handle(e.target.files); e.target.value = ""; });
  health();
}

document.addEventListener("DOMContentLoaded", setUp);

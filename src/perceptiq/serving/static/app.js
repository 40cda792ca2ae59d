// perceptiq scoring page: pick or drop images, send them to POST v1/score, show each score as a bar
// and a number, sort, and download the results as CSV. Plain browser JavaScript, no dependencies.
"use strict";

const page = {
  modelInfo: document.getElementById("model-info"),
  modelScope: document.getElementById("model-scope"),
  tokenField: document.getElementById("token-field"),
  token: document.getElementById("token"),
  task: document.getElementById("task"),
  scene: document.getElementById("scene"),
  view: document.getElementById("view"),
  dropZone: document.getElementById("drop-zone"),
  fileInput: document.getElementById("file-input"),
  sort: document.getElementById("sort"),
  download: document.getElementById("download"),
  clear: document.getElementById("clear"),
  status: document.getElementById("status"),
  results: document.getElementById("results"),
};

// What the server told us in GET v1/models; defaults until then.
const server = { scoreRange: [0, 1], higherIsBetter: true, maxFiles: 32, maxUploadBytes: 20 * 1024 * 1024 };
// One entry per picked file: {order, name, file, url, state: "pending"|"done"|"failed", score, scene, error,
// cropScores, boxes} (boxes: [left, top, right, bottom] as fractions of the image, one per crop)
let entries = [];
let nextOrder = 0;

function authHeaders() {
  const token = page.token.value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

function setStatus(text) {
  page.status.textContent = text;
}

async function loadServerInfo() {
  try {
    const health = await (await fetch("healthz")).json();
    page.tokenField.hidden = !health.token_required;
    if (health.token_required) {
      page.token.value = sessionStorage.getItem("perceptiq-token") || "";
    }
  } catch (err) {
    page.modelInfo.textContent = "cannot reach the scoring service (" + err + ")";
    return;
  }
  const response = await fetch("v1/models", { headers: authHeaders() });
  if (response.status === 401) {
    page.modelInfo.textContent = "enter the access token to use this service";
    return;
  }
  if (!response.ok) {
    page.modelInfo.textContent = "model information unavailable (HTTP " + response.status + ")";
    return;
  }
  showModel(await response.json());
}

function showModel(info) {
  server.scoreRange = info.score_range;
  server.higherIsBetter = info.higher_is_better;
  server.maxFiles = info.limits.max_files;
  server.maxUploadBytes = info.limits.max_upload_bytes;
  const direction = info.higher_is_better ? "higher is better" : "lower is better";
  page.modelInfo.textContent = info.model + " · " + info.backbone + " (" + info.weights + ") · task " +
    info.task + (info.scene ? " · scene " + info.scene : "") + " · scores " + info.score_range[0] +
    "–" + info.score_range[1] + ", " + direction;
  // what the model was trained to judge and where not to trust it (the built-in model says so)
  page.modelScope.textContent = (info.knows ? "Knows: " + info.knows : "") +
    (info.does_not_know ? (info.knows ? " — " : "") + "Does not know: " + info.does_not_know : "");
  page.modelScope.hidden = !(info.knows || info.does_not_know);
  fillOptions(page.task, info.tasks, info.task);
  fillOptions(page.scene, info.scenes, info.scene);
  page.view.options[0].textContent = "model default (" + info.view + ")";
}

function fillOptions(select, values, current) {
  select.length = 1; // keep "model default"
  for (const value of values) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = value === current ? value + " (default)" : value;
    select.appendChild(option);
  }
}

function addFiles(fileList) {
  const added = [];
  for (const file of fileList) {
    const entry = { order: nextOrder++, name: file.name, file, url: URL.createObjectURL(file),
                    state: "pending", score: null, scene: null, error: null, cropScores: [], boxes: [] };
    if (file.size > server.maxUploadBytes) {
      fail(entry, "over upload limit (" + file.size + " bytes > " + server.maxUploadBytes + ")");
    } else {
      added.push(entry);
    }
    entries.push(entry);
  }
  render();
  scoreEntries(added);
}

function fail(entry, message) {
  entry.state = "failed";
  entry.error = message;
}

// Send the entries in requests of at most maxFiles. The server answers per file: a file it cannot score
// comes back with an error and costs no other file its score (a 4xx only when none could be scored).
async function scoreEntries(todo) {
  for (let start = 0; start < todo.length; start += server.maxFiles) {
    const chunk = todo.slice(start, start + server.maxFiles);
    setStatus("scoring " + chunk.length + " image(s)…");
    await postChunk(chunk);
    render();
  }
  const failed = entries.filter((e) => e.state === "failed").length;
  const done = entries.filter((e) => e.state === "done").length;
  setStatus(done + " scored" + (failed ? ", " + failed + " failed" : ""));
}

async function postChunk(chunk) {
  const form = new FormData();
  for (const entry of chunk) form.append("files", entry.file, entry.name);
  if (page.task.value) form.append("task", page.task.value);
  if (page.scene.value) form.append("scene", page.scene.value);
  if (page.view.value) form.append("view", page.view.value);
  let response, body;
  try {
    response = await fetch("v1/score", { method: "POST", body: form, headers: authHeaders() });
    body = await response.json();
  } catch (err) {
    chunk.forEach((entry) => fail(entry, "request failed: " + err));
    return;
  }
  if (response.ok) {
    // one result per file, in upload order
    body.results.forEach((result, i) => {
      if (result.error) {
        fail(chunk[i], result.error);
      } else {
        chunk[i].state = "done";
        chunk[i].score = result.score;
        chunk[i].scene = result.scene;
        chunk[i].cropScores = result.crop_scores || [];
        chunk[i].boxes = result.boxes || [];
      }
    });
    return;
  }
  // nothing could be scored (422/413 name each file), or the request itself was refused
  const named = body.errors || [];
  if (named.length === chunk.length) {
    named.forEach((problem, i) => fail(chunk[i], problem.error));
  } else {
    chunk.forEach((entry) => fail(entry, "HTTP " + response.status + ": " + (body.detail || response.statusText)));
  }
  if (response.status === 401) page.tokenField.hidden = false;
}

function sortedEntries() {
  const list = entries.slice();
  const mode = page.sort.value;
  const scored = (e) => (e.state === "done" ? e.score : null);
  if (mode === "name") {
    list.sort((a, b) => a.name.localeCompare(b.name) || a.order - b.order);
  } else if (mode === "score-desc" || mode === "score-asc") {
    // "best first" follows the model's direction; unscored images go last either way
    const bestFirst = mode === "score-desc";
    const sign = (bestFirst === server.higherIsBetter) ? -1 : 1;
    list.sort((a, b) => {
      const sa = scored(a), sb = scored(b);
      if (sa === null || sb === null) return (sa === null) - (sb === null) || a.order - b.order;
      return sign * (sa - sb) || a.order - b.order;
    });
  } else {
    list.sort((a, b) => a.order - b.order);
  }
  return list;
}

function render() {
  const items = sortedEntries().map(renderEntry);
  page.results.replaceChildren(...items);
  const anyDone = entries.some((e) => e.state !== "pending");
  page.download.disabled = !anyDone;
  page.clear.disabled = entries.length === 0;
}

function renderEntry(entry) {
  const item = element("li", "result " + entry.state);
  item.dataset.name = entry.name;
  const thumb = element("img");
  thumb.alt = "";
  thumb.addEventListener("error", () => thumb.removeAttribute("src")); // no broken-image icon
  thumb.src = entry.url;
  const bar = element("div", "bar");
  const fill = element("span");
  bar.appendChild(fill);
  const score = element("span", "score");
  const scene = element("span", "scene");
  if (entry.state === "done") {
    const [lo, hi] = server.scoreRange;
    const fraction = hi > lo ? (entry.score - lo) / (hi - lo) : 0;
    fill.style.width = (100 * Math.min(1, Math.max(0, fraction))).toFixed(1) + "%";
    score.textContent = entry.score.toFixed(4);
    scene.textContent = entry.scene ? "scene: " + entry.scene : "";
  } else {
    score.textContent = entry.state === "pending" ? "…" : "failed";
  }
  item.append(thumb, element("span", "name", entry.name), bar, score, scene);
  if (entry.error) item.appendChild(element("span", "error", entry.error));
  if (entry.state === "done" && entry.cropScores.length > 1) item.appendChild(qualityMap(entry));
  return item;
}

// Quality map: the picture with each pixel tinted by the mean score of the crops covering it, red (the
// image's worst crop) through yellow to green (its best), as `perceptiq score --map` draws it.
const RAMP = [[215, 48, 39], [254, 224, 139], [26, 152, 80]];

function rampColour(value) {
  const v = Math.min(1, Math.max(0, value));
  const [a, b, t] = v < 0.5 ? [RAMP[0], RAMP[1], v / 0.5] : [RAMP[1], RAMP[2], (v - 0.5) / 0.5];
  return a.map((x, i) => x + (b[i] - x) * t);
}

function qualityMap(entry) {
  const figure = element("figure", "quality-map");
  const canvas = element("canvas");
  canvas.dataset.crops = String(entry.cropScores.length);
  const lo = Math.min(...entry.cropScores), hi = Math.max(...entry.cropScores);
  const caption = element("figcaption", "muted", entry.cropScores.length + " crops: worst " + lo.toFixed(4) +
    " (red) … best " + hi.toFixed(4) + " (green)");
  figure.append(canvas, caption);
  const picture = new Image();
  picture.onload = () => {
    const scale = Math.min(1, 420 / picture.naturalWidth);
    const w = Math.max(1, Math.round(picture.naturalWidth * scale));
    const h = Math.max(1, Math.round(picture.naturalHeight * scale));
    canvas.width = w;
    canvas.height = h;
    const context = canvas.getContext("2d");
    context.drawImage(picture, 0, 0, w, h);
    const image = context.getImageData(0, 0, w, h);
    const total = new Float64Array(w * h), count = new Uint16Array(w * h);
    entry.boxes.forEach(([left, top, right, bottom], k) => {
      const x0 = Math.round(left * w), x1 = Math.max(Math.round(right * w), x0 + 1);
      const y0 = Math.round(top * h), y1 = Math.max(Math.round(bottom * h), y0 + 1);
      for (let y = y0; y < Math.min(y1, h); y++) {
        for (let x = x0; x < Math.min(x1, w); x++) {
          total[y * w + x] += entry.cropScores[k];
          count[y * w + x] += 1;
        }
      }
    });
    const good = server.higherIsBetter;
    for (let p = 0; p < w * h; p++) {
      if (!count[p]) continue;
      let value = hi > lo ? (total[p] / count[p] - lo) / (hi - lo) : 0.5;
      if (!good) value = 1 - value;
      const colour = rampColour(value);
      const grey = (image.data[4 * p] + image.data[4 * p + 1] + image.data[4 * p + 2]) / 3;
      for (let c = 0; c < 3; c++) image.data[4 * p + c] = 0.5 * grey + 0.5 * colour[c];
    }
    context.putImageData(image, 0, 0);
    canvas.dataset.drawn = "1";
  };
  picture.src = entry.url;
  return figure;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // never innerHTML: file names are user data
  return node;
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function downloadCsv() {
  const lines = [["filename", "score", "scene", "error"].join(",")];
  for (const e of sortedEntries()) {
    if (e.state === "pending") continue;
    lines.push([e.name, e.state === "done" ? e.score : "", e.scene, e.error].map(csvCell).join(","));
  }
  const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
  const link = element("a");
  link.href = URL.createObjectURL(blob);
  link.download = "perceptiq-scores.csv";
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function clearAll() {
  entries.forEach((e) => URL.revokeObjectURL(e.url));
  entries = [];
  render();
  setStatus("");
}

page.fileInput.addEventListener("change", () => {
  addFiles(page.fileInput.files);
  page.fileInput.value = ""; // picking the same file again fires "change" again
});
page.dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  page.dropZone.classList.add("dragging");
});
page.dropZone.addEventListener("dragleave", () => page.dropZone.classList.remove("dragging"));
page.dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  page.dropZone.classList.remove("dragging");
  addFiles(Array.from(event.dataTransfer.files).filter((f) => f.type.startsWith("image/") || f.type === ""));
});
page.dropZone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    page.fileInput.click();
  }
});
page.token.addEventListener("change", () => {
  sessionStorage.setItem("perceptiq-token", page.token.value.trim());
  loadServerInfo();
});
page.sort.addEventListener("change", render);
page.download.addEventListener("click", downloadCsv);
page.clear.addEventListener("click", clearAll);

loadServerInfo();

// The inspection page: pick or create a model, inspect photos, teach defect types, see history.
"use strict";

const POLL_MS = 500;
const $ = (selector) => document.querySelector(selector);
let currentModel = null;

// ---- talking to the API ------------------------------------------------------------------

/** The error message of a failed response body (FastAPI sends a string or a list). */
function problem(body, status) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) {
    return detail.map((item) => `${item.loc.slice(1).join(".")}: ${item.msg}`).join("; ");
  }
  return detail || `the server answered ${status}`;
}

/** Fetch JSON from the API; throws an Error carrying the server's message. */
async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new Error(problem(body, response.status));
  return body;
}

/** POST a form with upload progress (fraction 0..1) reported to onProgress. */
function postWithProgress(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.responseType = "json";
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    request.onload = () => {
      if (request.status >= 200 && request.status < 300) resolve(request.response);
      else reject(new Error(problem(request.response, request.status)));
    };
    request.onerror = () => reject(new Error("the upload failed: is the server running?"));
    request.send(form);
  });
}

function formWith(files, fields = {}) {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) if (value !== "") form.append(key, value);
  for (const file of files) form.append("files", file, relativeName(file));
  return form;
}

/** A file's name with the folders it was chosen or dropped in ("good/000.png"). */
const relativeName = (file) => file.relativePath || file.webkitRelativePath || file.name;

const modelPath = (name) => `/api/models/${encodeURIComponent(name)}`;

// ---- small DOM helpers -------------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function say(target, text, kind = "error") {
  const node = $(target);
  node.textContent = text;
  node.dataset.kind = kind;
}

/** The files in a dropped folder entry and its subfolders, each with its relativePath. */
async function entryFiles(entry, folder = "") {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    file.relativePath = `${folder}${file.name}`;
    return [file];
  }
  const reader = entry.createReader();
  const entries = [];
  for (;;) {  // readEntries answers in chunks until it answers an empty list
    const chunk = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!chunk.length) break;
    entries.push(...chunk);
  }
  const nested = await Promise.all(entries.map((child) => entryFiles(child, `${folder}${entry.name}/`)));
  return nested.flat();
}

/** The files of a drop, folders walked. */
async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry());
  if (!entries.length || entries.some((entry) => !entry)) return [...transfer.files];
  const files = (await Promise.all(entries.map((entry) => entryFiles(entry)))).flat();
  return files.sort((a, b) => relativeName(a).localeCompare(relativeName(b)));
}

const IMAGE_NAME = /\.(png|jpe?g|bmp|tiff?|webp|gif)$/i;

/** Make a drop zone: dropping or choosing files (or folders) calls onFiles(list of File). */
function dropzone(zoneSelector, inputSelector, onFiles, folderSelector = null) {
  const zone = $(zoneSelector);
  const input = $(inputSelector);
  const images = (files) => [...files].filter((file) => file.type.startsWith("image/") || IMAGE_NAME.test(file.name));
  zone.addEventListener("click", (event) => {
    if (event.target.closest("a, input")) return;
    input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") input.click();
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    onFiles(images(await droppedFiles(event.dataTransfer)));
  });
  const inputs = folderSelector ? [input, $(folderSelector)] : [input];
  for (const chooser of inputs) {
    chooser.addEventListener("change", () => {
      onFiles(images(chooser.files));
      chooser.value = "";
    });
  }
  if (folderSelector) {
    zone.querySelector("a.folder").addEventListener("click", (event) => {
      event.preventDefault();
      $(folderSelector).click();
    });
  }
}

const fixed = (value, digits = 3) => Number(value).toFixed(digits);
const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;

// ---- server status and options -----------------------------------------------------------

async function showHealth() {
  try {
    const health = await api("/api/health");
    const jobs = health.active_jobs ? `, ${plural(health.active_jobs, "fit")} running` : "";
    say("#server-status", `server ok · ${plural(health.models, "model")}${jobs}`, "ok");
  } catch (error) {
    say("#server-status", `server unreachable: ${error.message}`);
  }
}

async function loadOptions() {
  const options = await api("/api/options");
  $("#new-method").replaceChildren(...options.methods.map((m) => element("option", {}, m)));
  $("#new-method").value = options.methods.includes("ensemble") ? "ensemble" : "";
  $("#new-backbone").replaceChildren(
    ...options.backbones.map((b) => {
      const option = element("option", { value: b.name }, b.available ? b.name : `${b.name} (no weights)`);
      option.disabled = !b.available;
      return option;
    }),
  );
  $("#new-backbone").value = "efficientnet_lite0";
  $("#new-resolution").max = options.limits.max_resolution;
}

// ---- models ------------------------------------------------------------------------------

let currentInfo = null;

async function refreshModels(select) {
  const models = await api("/api/models");
  const picker = $("#model-select");
  picker.replaceChildren(
    ...models.map((m) => element("option", { value: m.name }, m.name)),
  );
  if (!models.length) picker.append(element("option", { value: "" }, "no models yet: create one"));
  const wanted = models.find((m) => m.name === (select || currentModel)) || models[0];
  picker.value = wanted ? wanted.name : "";
  showModel(wanted || null);
  await showSkipped();
}

/** Say which folders in the models folder look like models but cannot be loaded. */
async function showSkipped() {
  const skipped = await api("/api/skipped-folders");
  const list = $("#skipped-folders");
  list.hidden = !skipped.length;
  list.replaceChildren(
    ...skipped.map((s) => element("li", {}, element("code", {}, s.folder), `: ${s.problem}`)),
  );
}

const percent = (rate) => `${Number((rate * 100).toPrecision(3))}%`;

function showModel(model) {
  currentModel = model ? model.name : null;
  currentInfo = model;
  $("#delete-model").hidden = !model;
  $("#target-form").hidden = !model;
  const details = $("#model-details");
  details.replaceChildren();
  $("#defect-list").replaceChildren();
  if (!model) return;
  const thresholds = model.thresholds;
  const target = thresholds.image.max_false_alarm;
  const rows = [
    ["Method", model.method],
    ["Backbone", model.resolution ? `${model.backbone} @ ${model.resolution} px` : model.backbone],
    ["References", String(model.references)],
    ["Image threshold", fixed(thresholds.image.value, 4)],
    ["Pixel threshold", fixed(thresholds.pixel.value, 4)],
    ["False-alarm target", target ? percent(target) : thresholds.image.method],
    ["Created", new Date(model.created).toLocaleString()],
  ];
  if (model.reference_outliers.length) {
    rows.push(["Outlier references", model.reference_outliers.join(", ")]);
  }
  for (const [term, value] of rows) details.append(element("dt", {}, term), element("dd", {}, value));
  $("#target-input").value = target ? Number((target * 100).toPrecision(3)) : "";
  $("#target-input").disabled = $("#target-form button").disabled = !model.retargetable;
  $("#target-note").textContent = model.retargetable
    ? "rate of good photos flagged NG; both thresholds follow, no new fit"
    : "this model keeps no held-out scores: fit it again to change its target";
  const types = model.defect_types.map((name) => defectTypeItem(model, name));
  $("#defect-list").append(...(types.length ? types : [element("li", { class: "none" }, "none yet")]));
}

function defectTypeItem(model, name) {
  const remove = element("button", { type: "button", class: "link", "aria-label": `remove ${name}` }, "remove");
  remove.addEventListener("click", () => removeDefectType(name));
  const examples = (model.defect_examples[name] || []).map((source, position) => {
    const thumbnail = element("img", {
      src: `${modelPath(model.name)}/defect-types/${encodeURIComponent(name)}/examples/${position}.png`,
      alt: source, title: source, class: "thumb", loading: "lazy",
    });
    // Examples added outside the server (the CLI) have no thumbnail: show their name instead.
    thumbnail.addEventListener("error", () => thumbnail.replaceWith(element("span", { class: "thumb-name", title: source }, source)));
    return thumbnail;
  });
  return element(
    "li", {},
    element("div", {}, element("span", { class: "tag" }, name), ` ${plural(examples.length, "example")}`, remove),
    element("div", { class: "thumbs" }, ...examples),
  );
}

async function selectModel(name) {
  say("#model-message", "");
  try {
    showModel(name ? await api(modelPath(name)) : null);
  } catch (error) {
    say("#model-message", error.message);
  }
  await refreshHistory();
}

async function deleteModel() {
  say("#model-message", "");
  if (!currentModel || !window.confirm(`Delete model ${currentModel}?`)) return;
  try {
    await api(modelPath(currentModel), { method: "DELETE" });
    currentModel = null;
    await refreshModels();
    await showHealth();
  } catch (error) {
    say("#model-message", error.message);
  }
}

async function retarget(event) {
  event.preventDefault();
  say("#model-message", "");
  const rate = Number($("#target-input").value) / 100;
  try {
    const body = JSON.stringify({ max_false_alarm: rate });
    const headers = { "Content-Type": "application/json" };
    showModel(await api(`${modelPath(currentModel)}/thresholds`, { method: "POST", body, headers }));
    say("#model-message", `thresholds set for ${percent(rate)} false alarms; new inspections use them`, "ok");
  } catch (error) {
    say("#model-message", error.message);
  }
}

// ---- creating a model --------------------------------------------------------------------

let goodFiles = [];

function progress(fraction, label) {
  const box = $("#create-progress");
  box.hidden = false;
  box.classList.toggle("busy", fraction === null);
  box.querySelector(".bar").style.width = fraction === null ? "100%" : `${Math.round(fraction * 100)}%`;
  box.querySelector(".label").textContent = label;
}

const JOB_LABELS = {
  queued: (job) => `queued behind another fit (${plural(job.references, "photo")})`,
  fitting: (job) => `fitting on ${plural(job.references, "good photo")}… ${job.elapsed.toFixed(1)} s`,
  saving: () => "saving the model…",
};

async function waitForJob(job) {
  while (!["done", "failed"].includes(job.state)) {
    progress(null, JOB_LABELS[job.state](job));
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    job = await api(`/api/jobs/${job.id}`);
  }
  return job;
}

async function createModel(event) {
  event.preventDefault();
  say("#create-message", "");
  $("#create-progress").hidden = true;
  if (!goodFiles.length) {
    say("#create-message", "drop some good photos first");
    return;
  }
  const fields = {
    name: $("#new-name").value.trim(),
    method: $("#new-method").value,
    // The autoencoder learns its own features: it takes no backbone (the server refuses one).
    backbone: $("#new-method").value === "autoencoder" ? "" : $("#new-backbone").value,
    resolution: $("#new-resolution").value,
  };
  const submit = $("#create-form button[type=submit]");
  submit.disabled = true;
  try {
    const form = formWith(goodFiles, fields);
    const job = await postWithProgress("/api/models", form, (f) => progress(f, `uploading ${Math.round(f * 100)}%`));
    const finished = await waitForJob(job);
    if (finished.state === "failed") throw new Error(`fitting failed: ${finished.error}`);
    progress(1, `done in ${finished.elapsed.toFixed(1)} s`);
    say("#create-message", `model ${fields.name} is ready`, "ok");
    goodFiles = [];
    $("#good-chosen").textContent = "";
    $("#new-name").value = "";
    await refreshModels(fields.name);
    await showHealth();
  } catch (error) {
    $("#create-progress").hidden = true;
    say("#create-message", error.message);
  } finally {
    submit.disabled = false;
  }
}

// ---- results -----------------------------------------------------------------------------

const SHOWN_KEY = "anomalens.shown-batches";
const SHOWN_BATCHES = 5;
const photos = new Map(); // inspection id -> object URL of the photo, while this page lives

function shownBatches() {
  try {
    return JSON.parse(localStorage.getItem(SHOWN_KEY)) || [];
  } catch {
    return [];
  }
}

function remember(batches) {
  localStorage.setItem(SHOWN_KEY, JSON.stringify(batches.slice(0, SHOWN_BATCHES)));
}

function boxLine(box) {
  const type = box.defect_type ? element("span", { class: "tag" }, box.defect_type) : "";
  const similarity = box.similarity === null ? "" : ` (similarity ${fixed(box.similarity, 2)})`;
  return element(
    "li", {}, type,
    ` score ${fixed(box.score, 3)}${similarity} · x ${box.x0}–${box.x1}, y ${box.y0}–${box.y1} · ${box.area} px`,
  );
}

/** The score on a bar whose middle mark is the threshold. */
function scoreMeter(result) {
  if (result.threshold === null) {  // logged before thresholds were
    return element("div", { class: "meter-row" }, element("span", { class: "score" }, `score ${fixed(result.score)}`));
  }
  const text = element("span", { class: "score" }, `score ${fixed(result.score)} / threshold ${fixed(result.threshold)}`);
  const fill = element("div", { class: `fill ${result.verdict.toLowerCase()}` });
  fill.style.width = `${(Math.min(result.score / (2 * result.threshold), 1) * 100).toFixed(1)}%`;
  const meter = element(
    "div", { class: "meter", role: "meter", "aria-valuenow": result.score, "aria-valuemin": 0,
      "aria-valuemax": 2 * result.threshold, "aria-label": "score against threshold (the mark)" },
    fill, element("div", { class: "mark" }),
  );
  return element("div", { class: "meter-row" }, text, meter);
}

/** Labels naming each box's defect type over the picture, placed in percent of the image so
 * that they keep their size on screen (types change when types are added; the PNG stays). */
function boxLabels(result) {
  const layer = element("div", { class: "labels" });
  for (const box of result.boxes.filter((b) => b.defect_type)) {
    const label = element("span", { class: "box-label" }, box.defect_type);
    const right = box.x0 > result.width / 2;  // in the right half: end the label at the box's right
    label.style[right ? "right" : "left"] = `${(100 * (right ? result.width - box.x1 : box.x0)) / result.width}%`;
    // Above the box where there is room, else below it, else inside it at its top.
    const above = box.y0 > 0.1 * result.height;
    const below = !above && box.y1 < 0.9 * result.height;
    label.style.top = `${(100 * (below ? box.y1 : box.y0)) / result.height}%`;
    label.classList.toggle("above", above);
    layer.append(label);
  }
  return layer;
}

function resultCard(result) {
  const picture = (kind) => (result[`${kind}_png`]
    ? `data:image/png;base64,${result[`${kind}_png`]}`
    : `/api/inspections/${result.id}/${kind}.png`);
  const views = {};
  if (result.overlay_png || result.has_overlay) views.overlay = picture("overlay");
  if (result.mask_png || result.has_mask) views.mask = picture("mask");
  if (photos.has(result.id)) views.photo = photos.get(result.id);
  const first = Object.keys(views)[0];
  const image = first
    ? element("img", { src: views[first], alt: `${first} of ${result.filename}`, class: "picture" })
    : element("p", { class: "none" }, "pictures no longer kept");
  const labels = boxLabels(result);
  const buttons = Object.keys(views).map((view) => {
    const button = element("button", { type: "button", class: view === first ? "view on" : "view" }, view);
    button.addEventListener("click", () => {
      image.src = views[view];
      labels.hidden = view === "mask";
      for (const other of buttons) other.classList.toggle("on", other === button);
    });
    return button;
  });
  const boxes = result.boxes.length
    ? element("ul", { class: "boxes" }, ...result.boxes.map(boxLine))
    : element("p", { class: "none" }, "no anomalous region");
  const verdict = result.verdict.toLowerCase();
  return element(
    "article", { class: `card ${verdict}`, "data-id": String(result.id) },
    element(
      "header", {},
      element("span", { class: `verdict ${verdict}` }, result.verdict),
      element("span", { class: "filename", title: result.filename }, result.filename),
    ),
    scoreMeter(result),
    element("div", { class: "figure" }, image, labels),
    element("div", { class: "views" }, ...buttons),
    boxes,
  );
}

function downloads(query, what) {
  return element(
    "span", { class: "downloads" }, "download ",
    ...["json", "csv", "coco", "zip"].map((format) =>
      element("a", { href: `/api/export?format=${format}&${query}`, download: "", "aria-label": `${what} as ${format}` }, format)),
  );
}

/** A batch's cards under a header with its model, time, verdicts and downloads. */
function batchSection(batch, model, results, time) {
  const flagged = results.filter((r) => r.verdict === "NG").length;
  const close = element("button", { type: "button", class: "link", "aria-label": "close these results" }, "close");
  const section = element(
    "section", { class: "batch", "data-batch": batch },
    element(
      "header", {},
      element("strong", {}, model),
      ` · ${new Date(time).toLocaleString()} · ${plural(results.length, "photo")}, ${flagged} NG · `,
      downloads(`batch=${batch}`, "these results"),
      close,
    ),
    element("div", { class: "cards" }, ...results.map(resultCard)),
  );
  close.addEventListener("click", () => {
    section.remove();
    remember(shownBatches().filter((b) => b !== batch));
  });
  return section;
}

/** Show a logged batch (from the history or after a reload) at the top of the results. */
async function openBatch(batch, scroll = true) {
  const entries = await api(`/api/inspections?batch=${encodeURIComponent(batch)}&limit=1000`);
  const section = batchSection(batch, entries[0].model, entries, entries[0].time);
  const shown = $(`#results [data-batch="${batch}"]`);
  if (shown) shown.replaceWith(section);
  else $("#results").prepend(section);
  if (scroll) section.scrollIntoView({ block: "nearest" });
  remember([batch, ...shownBatches().filter((b) => b !== batch)]);
}

async function inspect(files) {
  say("#inspect-message", "");
  if (!currentModel) {
    say("#inspect-message", "create or pick a model first");
    return;
  }
  if (!files.length) return;
  say("#inspect-message", `inspecting ${plural(files.length, "photo")}…`, "info");
  try {
    const answer = await api(`${modelPath(currentModel)}/inspect`, { method: "POST", body: formWith(files) });
    answer.results.forEach((result, index) => photos.set(result.id, URL.createObjectURL(files[index])));
    $("#results").prepend(batchSection(answer.batch, answer.model, answer.results, new Date().toISOString()));
    remember([answer.batch, ...shownBatches()]);
    const flagged = answer.results.filter((r) => r.verdict === "NG").length;
    say("#inspect-message", `${plural(files.length, "photo")} inspected, ${flagged} NG`, "ok");
  } catch (error) {
    say("#inspect-message", error.message);
  }
  await refreshHistory();
}

/** Show the remembered batches again, as the log has them now (relabelled boxes included). */
async function reopenShown() {
  const batches = shownBatches();
  $("#results").replaceChildren();
  for (const batch of [...batches].reverse()) {
    try {
      await openBatch(batch, false);
    } catch {
      remember(shownBatches().filter((b) => b !== batch)); // gone from the log
    }
  }
}

// ---- defect types ------------------------------------------------------------------------

let defectExamples = []; // {file, url, width, height, box: [x0, y0, x1, y1] | null, mask: File | null}

function exampleCard(example) {
  const picture = element("img", { src: example.url, alt: relativeName(example.file), draggable: "false" });
  const frame = element("div", { class: "frame", hidden: "" });
  const holder = element("div", { class: "example-picture", title: "drag to draw a box around the defect" }, picture, frame);
  const mask = element("input", { type: "file", accept: "image/*", "aria-label": `mask of ${relativeName(example.file)}` });
  const note = element("span", { class: "region" }, "");
  const clear = element("button", { type: "button", class: "link" }, "clear");
  const show = () => {
    frame.hidden = !example.box;
    if (example.box) {
      const [x0, y0, x1, y1] = example.box;
      Object.assign(frame.style, {
        left: `${(100 * x0) / example.width}%`, top: `${(100 * y0) / example.height}%`,
        width: `${(100 * (x1 - x0)) / example.width}%`, height: `${(100 * (y1 - y0)) / example.height}%`,
      });
    }
    note.textContent = example.mask ? `mask ${example.mask.name}` : example.box ? `box ${example.box.join(", ")}` : "strongest region";
    clear.hidden = !example.mask && !example.box;
  };
  picture.addEventListener("load", () => {
    example.width = picture.naturalWidth;
    example.height = picture.naturalHeight;
  });
  let start = null;
  const point = (event) => {
    const bounds = picture.getBoundingClientRect();
    const x = Math.min(Math.max(event.clientX - bounds.left, 0), bounds.width);
    const y = Math.min(Math.max(event.clientY - bounds.top, 0), bounds.height);
    return [(x * example.width) / bounds.width, (y * example.height) / bounds.height];
  };
  holder.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    holder.setPointerCapture(event.pointerId);
    start = point(event);
  });
  holder.addEventListener("pointermove", (event) => {
    if (!start) return;
    const [x, y] = point(event);
    example.box = [Math.floor(Math.min(start[0], x)), Math.floor(Math.min(start[1], y)), Math.ceil(Math.max(start[0], x)), Math.ceil(Math.max(start[1], y))];
    example.mask = null;
    show();
  });
  holder.addEventListener("pointerup", () => {
    start = null;
    if (example.box && (example.box[2] - example.box[0] < 2 || example.box[3] - example.box[1] < 2)) example.box = null;
    show();
  });
  mask.addEventListener("change", () => {
    example.mask = mask.files[0] || null;
    example.box = null;
    show();
  });
  clear.addEventListener("click", () => {
    example.box = example.mask = null;
    mask.value = "";
    show();
  });
  show();
  return element(
    "li", { class: "example" }, holder,
    element("div", { class: "example-name", title: relativeName(example.file) }, relativeName(example.file)),
    element("label", { class: "mask-choice" }, "mask ", mask), note, clear,
  );
}

function chooseDefectExamples(files) {
  for (const example of defectExamples) URL.revokeObjectURL(example.url);
  defectExamples = files.map((file) => ({ file, url: URL.createObjectURL(file), width: 1, height: 1, box: null, mask: null }));
  $("#defect-examples").replaceChildren(...defectExamples.map(exampleCard));
  $("#defect-hint").hidden = !files.length;
}

async function addDefectType(event) {
  event.preventDefault();
  say("#defect-message", "");
  if (!currentModel) {
    say("#defect-message", "create or pick a model first");
    return;
  }
  if (!defectExamples.length) {
    say("#defect-message", "drop photos of the defect first");
    return;
  }
  const name = $("#defect-name").value.trim();
  const form = formWith(defectExamples.map((e) => e.file), { defect_type: name });
  const masked = defectExamples.map((e, index) => [e, index]).filter(([e]) => e.mask);
  for (const [example] of masked) form.append("masks", example.mask, example.mask.name);
  if (masked.length) form.append("mask_of", JSON.stringify(masked.map(([, index]) => index)));
  if (defectExamples.some((e) => e.box)) form.append("boxes", JSON.stringify(defectExamples.map((e) => e.box)));
  const submit = $("#defect-form button[type=submit]");
  submit.disabled = true;
  try {
    const model = await api(`${modelPath(currentModel)}/defect-types`, { method: "POST", body: form });
    showModel(model);
    say("#defect-message", `defect type ${name} added${relabelNote(model)}${skippedNote(model)}`, "ok");
    chooseDefectExamples([]);
    $("#defect-name").value = "";
    await afterRelabel();
  } catch (error) {
    say("#defect-message", error.message);
  } finally {
    submit.disabled = false;
  }
}

const skippedNote = (model) =>
  model.skipped && model.skipped.length ? `; left out: ${model.skipped.join("; ")}` : "";
const relabelNote = (model) => (model.relabelled ? `; ${plural(model.relabelled, "earlier result")} relabelled` : "");

async function afterRelabel() {
  await reopenShown();
  await refreshHistory();
}

async function removeDefectType(name) {
  say("#defect-message", "");
  try {
    const path = `${modelPath(currentModel)}/defect-types/${encodeURIComponent(name)}`;
    const model = await api(path, { method: "DELETE" });
    showModel(model);
    say("#defect-message", `defect type ${name} removed${relabelNote(model)}`, "ok");
    await afterRelabel();
  } catch (error) {
    say("#defect-message", error.message);
  }
}

// ---- history -----------------------------------------------------------------------------

async function refreshHistory() {
  say("#history-message", "");
  const everything = $("#history-all").checked || !currentModel;
  const query = everything ? "" : `model=${encodeURIComponent(currentModel)}`;
  $("#history-downloads").replaceChildren(downloads(query, everything ? "all history" : "this model's history"));
  $("#history").classList.toggle("single-model", !everything);
  try {
    const entries = await api(`/api/inspections?limit=50&${query}`);
    const rows = entries.map((entry) => {
      const types = entry.boxes.map((box) => box.defect_type).filter(Boolean);
      const boxes = entry.boxes.length + (types.length ? ` (${[...new Set(types)].join(", ")})` : "");
      const open = element("button", { type: "button", class: "link", "aria-label": `open ${entry.filename}` }, "open");
      open.addEventListener("click", () => openBatch(entry.batch).catch((error) => say("#history-message", error.message)));
      const threshold = entry.threshold === null ? "" : ` / ${fixed(entry.threshold)}`;
      return element(
        "tr", { "data-id": String(entry.id) },
        element("td", {}, new Date(entry.time).toLocaleString([], { dateStyle: "short", timeStyle: "medium" })),
        element("td", {}, element("span", { class: `verdict ${entry.verdict.toLowerCase()}` }, entry.verdict)),
        element("td", { class: "file", title: entry.filename }, entry.filename),
        element("td", { class: "number" }, `${fixed(entry.score)}${threshold}`),
        element("td", { class: "boxes-cell" }, boxes),
        element("td", {}, entry.batch ? open : ""),
        element("td", { class: "model-col" }, entry.model),
        element("td", { class: "hash", title: entry.sha256 }, entry.sha256.slice(0, 12)),
      );
    });
    const empty = element("tr", {}, element("td", { colspan: "8", class: "none" }, "no inspections yet"));
    $("#history tbody").replaceChildren(...(rows.length ? rows : [empty]));
  } catch (error) {
    say("#history-message", `history: ${error.message}`);
  }
}

// ---- start -------------------------------------------------------------------------------

function chosen(target, files, what) {
  $(target).textContent = files.length ? `${plural(files.length, what)}: ${files.map(relativeName).join(", ")}` : "";
}

async function start() {
  dropzone("#good-drop", "#good-files", (files) => {
    goodFiles = files;
    chosen("#good-chosen", files, "good photo");
  }, "#good-folder");
  dropzone("#defect-drop", "#defect-files", chooseDefectExamples);
  dropzone("#inspect-drop", "#inspect-files", inspect, "#inspect-folder");
  $("#create-form").addEventListener("submit", createModel);
  $("#defect-form").addEventListener("submit", addDefectType);
  $("#target-form").addEventListener("submit", retarget);
  $("#model-select").addEventListener("change", (event) => selectModel(event.target.value));
  $("#delete-model").addEventListener("click", deleteModel);
  $("#history-all").addEventListener("change", refreshHistory);
  await showHealth();
  try {
    await loadOptions();
    await refreshModels();
  } catch (error) {
    say("#model-message", error.message);
  }
  await reopenShown();
  await refreshHistory();
}

start();

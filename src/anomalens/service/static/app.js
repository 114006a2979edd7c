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
  for (const file of files) form.append("files", file, file.name);
  return form;
}

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

/** Make a drop zone: dropping or choosing files calls onFiles(list of File). */
function dropzone(zoneSelector, inputSelector, onFiles) {
  const zone = $(zoneSelector);
  const input = $(inputSelector);
  const images = (files) => [...files].filter((file) => file.type.startsWith("image/"));
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") input.click();
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    onFiles(images(event.dataTransfer.files));
  });
  input.addEventListener("change", () => {
    onFiles(images(input.files));
    input.value = "";
  });
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
}

function showModel(model) {
  currentModel = model ? model.name : null;
  $("#delete-model").hidden = !model;
  const details = $("#model-details");
  details.replaceChildren();
  $("#defect-list").replaceChildren();
  if (!model) return;
  const thresholds = model.thresholds;
  const rows = [
    ["Method", model.method],
    ["Backbone", model.resolution ? `${model.backbone} @ ${model.resolution} px` : model.backbone],
    ["References", String(model.references)],
    ["Image threshold", fixed(thresholds.image.value, 4)],
    ["Pixel threshold", fixed(thresholds.pixel.value, 4)],
    ["Created", new Date(model.created).toLocaleString()],
  ];
  if (model.reference_outliers.length) {
    rows.push(["Outlier references", model.reference_outliers.join(", ")]);
  }
  for (const [term, value] of rows) details.append(element("dt", {}, term), element("dd", {}, value));
  const types = model.defect_types.map((name) => {
    const remove = element("button", { type: "button", class: "link", "aria-label": `remove ${name}` }, "remove");
    remove.addEventListener("click", () => removeDefectType(name));
    return element("li", {}, element("span", { class: "tag" }, name), remove);
  });
  $("#defect-list").append(...(types.length ? types : [element("li", { class: "none" }, "none yet")]));
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

// ---- inspecting --------------------------------------------------------------------------

function boxLine(box) {
  const type = box.defect_type ? element("span", { class: "tag" }, box.defect_type) : "";
  const similarity = box.similarity === null ? "" : ` (similarity ${fixed(box.similarity, 2)})`;
  return element(
    "li", {}, type,
    ` score ${fixed(box.score, 3)}${similarity} · x ${box.x0}–${box.x1}, y ${box.y0}–${box.y1} · ${box.area} px`,
  );
}

function resultCard(result, file) {
  const views = {
    overlay: `data:image/png;base64,${result.overlay_png}`,
    mask: `data:image/png;base64,${result.mask_png}`,
    photo: URL.createObjectURL(file),
  };
  const picture = element("img", { src: views.overlay, alt: `heatmap of ${result.filename}`, class: "picture" });
  const buttons = Object.keys(views).map((view) => {
    const button = element("button", { type: "button", class: view === "overlay" ? "view on" : "view" }, view);
    button.addEventListener("click", () => {
      picture.src = views[view];
      for (const other of buttons) other.classList.toggle("on", other === button);
    });
    return button;
  });
  const boxes = result.boxes.length
    ? element("ul", { class: "boxes" }, ...result.boxes.map(boxLine))
    : element("p", { class: "none" }, "no anomalous region");
  return element(
    "article", { class: `card ${result.verdict.toLowerCase()}` },
    element(
      "header", {},
      element("span", { class: `verdict ${result.verdict.toLowerCase()}` }, result.verdict),
      element("span", { class: "filename", title: result.filename }, result.filename),
      element("span", { class: "score" }, `score ${fixed(result.score)}`),
    ),
    picture,
    element("div", { class: "views" }, ...buttons),
    boxes,
  );
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
    const cards = answer.results.map((result, index) => resultCard(result, files[index]));
    $("#results").prepend(...cards);
    const flagged = answer.results.filter((r) => r.verdict === "NG").length;
    say("#inspect-message", `${plural(files.length, "photo")} inspected, ${flagged} NG`, "ok");
  } catch (error) {
    say("#inspect-message", error.message);
  }
  await refreshHistory();
}

// ---- defect types ------------------------------------------------------------------------

let defectFiles = [];

async function addDefectType(event) {
  event.preventDefault();
  say("#defect-message", "");
  if (!currentModel) {
    say("#defect-message", "create or pick a model first");
    return;
  }
  if (!defectFiles.length) {
    say("#defect-message", "drop photos of the defect first");
    return;
  }
  const name = $("#defect-name").value.trim();
  try {
    const form = formWith(defectFiles, { defect_type: name });
    showModel(await api(`${modelPath(currentModel)}/defect-types`, { method: "POST", body: form }));
    say("#defect-message", `defect type ${name} added`, "ok");
    defectFiles = [];
    $("#defect-chosen").textContent = "";
    $("#defect-name").value = "";
  } catch (error) {
    say("#defect-message", error.message);
  }
}

async function removeDefectType(name) {
  try {
    const path = `${modelPath(currentModel)}/defect-types/${encodeURIComponent(name)}`;
    showModel(await api(path, { method: "DELETE" }));
    say("#defect-message", `defect type ${name} removed`, "ok");
  } catch (error) {
    say("#defect-message", error.message);
  }
}

// ---- history -----------------------------------------------------------------------------

async function refreshHistory() {
  const everything = $("#history-all").checked || !currentModel;
  const query = everything ? "" : `&model=${encodeURIComponent(currentModel)}`;
  try {
    const entries = await api(`/api/inspections?limit=50${query}`);
    const rows = entries.map((entry) => {
      const types = entry.boxes.map((box) => box.defect_type).filter(Boolean);
      const boxes = entry.boxes.length + (types.length ? ` (${[...new Set(types)].join(", ")})` : "");
      return element(
        "tr", {},
        element("td", {}, new Date(entry.time).toLocaleString()),
        element("td", {}, entry.model),
        element("td", {}, entry.filename),
        element("td", { class: "hash", title: entry.sha256 }, entry.sha256.slice(0, 12)),
        element("td", { class: "number" }, fixed(entry.score)),
        element("td", {}, element("span", { class: `verdict ${entry.verdict.toLowerCase()}` }, entry.verdict)),
        element("td", {}, boxes),
      );
    });
    const empty = element("tr", {}, element("td", { colspan: "7", class: "none" }, "no inspections yet"));
    $("#history tbody").replaceChildren(...(rows.length ? rows : [empty]));
  } catch (error) {
    say("#inspect-message", `history: ${error.message}`);
  }
}

// ---- start -------------------------------------------------------------------------------

function chosen(target, files, what) {
  $(target).textContent = files.length ? `${plural(files.length, what)}: ${files.map((f) => f.name).join(", ")}` : "";
}

async function start() {
  dropzone("#good-drop", "#good-files", (files) => {
    goodFiles = files;
    chosen("#good-chosen", files, "good photo");
  });
  dropzone("#defect-drop", "#defect-files", (files) => {
    defectFiles = files;
    chosen("#defect-chosen", files, "photo");
  });
  dropzone("#inspect-drop", "#inspect-files", inspect);
  $("#create-form").addEventListener("submit", createModel);
  $("#defect-form").addEventListener("submit", addDefectType);
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
  await refreshHistory();
}

start();

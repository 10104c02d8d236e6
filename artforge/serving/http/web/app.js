// The artforge web page: the image endpoints (/v1/models/...) from a browser, nothing else.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], photo: null, resultUrl: null, originalUrl: null };

function token() {
  return $("token").value.trim();
}

function headers() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// The server's error body is {"error": "<one sentence>"}; anything else is shown as it came.
async function errorOf(response) {
  const text = await response.text();
  try {
    return JSON.parse(text).error || text;
  } catch (_) {
    return text || `${response.status} ${response.statusText}`;
  }
}

function current() {
  return state.models.find((m) => m.name === $("model").value);
}

function showOptions() {
  const model = current();
  const kind = model ? model.kind : "";
  $("generate-options").hidden = kind !== "generator";
  $("image-options").hidden = kind === "generator";
  $("format-field").hidden = kind === "classifier";
  $("original-figure").hidden = kind === "generator" || !state.photo;
  $("max-side-field").hidden = kind !== "stylizer";
  $("top-k-field").hidden = kind !== "classifier";
  $("model-info").textContent = model
    ? `${model.kind}, version ${model.versions[model.versions.length - 1]}, on ${model.backend}`
    : "";
  $("run").disabled = !model || (kind !== "generator" && !state.photo);
}

async function loadModels() {
  const response = await fetch("v1/models", { headers: headers() });
  if (!response.ok) {
    say(await errorOf(response), true);
    if (response.status === 401) $("token-box").open = true;
    return;
  }
  const body = await response.json();
  state.models = body.models.filter((m) => m.ready);
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} (${m.kind})`;
    return option;
  }));
  select.disabled = state.models.length === 0;
  const stylizer = state.models.find((m) => m.kind === "stylizer");
  if (stylizer) select.value = stylizer.name;
  say(state.models.length ? "" : "No model is ready on this server.", !state.models.length);
  showOptions();
}

function choose(file) {
  if (!file) return;
  state.photo = file;
  if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
  state.originalUrl = URL.createObjectURL(file);
  $("original").src = state.originalUrl;
  $("original-figure").hidden = false;
  showOptions();
}

function showImage(blob, name, caption) {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(blob);
  $("result").src = state.resultUrl;
  $("download").href = state.resultUrl;
  $("download").download = name;
  $("result-caption").textContent = caption;
  $("result-figure").hidden = false;
}

function showLabels(labels) {
  $("labels").replaceChildren(...labels.map((l) => {
    const item = document.createElement("li");
    item.textContent = `${l.label} ${(100 * l.score).toFixed(1)} %`;
    item.dataset.label = l.label;
    return item;
  }));
  $("labels").hidden = false;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function run() {
  const model = current();
  if (!model) return;
  const name = encodeURIComponent(model.name);
  let url;
  let init = { method: "POST", headers: headers() };
  if (model.kind === "generator") {
    url = `v1/models/${name}/generate` + query({ count: $("count").value, grid: $("grid").value,
                                                 seed: $("seed").value });
  } else if (model.kind === "classifier") {
    url = `v1/models/${name}/classify` + query({ top_k: $("top-k").value });
    init = { ...init, body: state.photo };
  } else {
    url = `v1/models/${name}/stylize` + query({ format: $("format").value, max_side: $("max-side").value });
    init = { ...init, body: state.photo };
  }
  $("run").disabled = true;
  $("labels").hidden = true;
  say("Working...");
  const started = performance.now();
  try {
    const response = await fetch(url, init);
    if (!response.ok) {
      say(await errorOf(response), true);
      return;
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    if (model.kind === "classifier") {
      $("result-figure").hidden = true;
      showLabels((await response.json()).labels);
    } else {
      const blob = await response.blob();
      const extension = (blob.type.split("/")[1] || "png").replace("jpeg", "jpg");
      const seed = response.headers.get("Artforge-Seed");
      const base = seed ? `${model.name}-${seed}` : `${model.name}`;
      showImage(blob, `${base}.${extension}`, seed ? `${model.name}, seed ${seed}` : model.name);
    }
    say(`Done in ${seconds} s.`);
  } catch (error) {
    say(`The server could not be reached (${error.message}).`, true);
  } finally {
    showOptions();
  }
}

function setUp() {
  $("token").value = sessionStorage.getItem("artforge-token") || "";
  $("token").addEventListener("change", () => {
    sessionStorage.setItem("artforge-token", token());
    loadModels();
  });
  $("model").addEventListener("change", showOptions);
  $("file").addEventListener("change", () => choose($("file").files[0]));
  $("run").addEventListener("click", run);
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choose(event.dataTransfer.files[0]);
  });
  loadModels();
}

setUp();

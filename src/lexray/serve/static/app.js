// lexray web page: plain JavaScript, no build step. Report text is only ever inserted with
// textContent (never innerHTML), so text from the index cannot inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
const statusEl = $("status");
const resultsEl = $("results");
const objectUrls = [];

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function call(url, options) {
  const response = await fetch(url, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  if (!response.ok) {
    let reason = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.detail) reason = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON: keep the status line */ }
    if (response.status === 401) $("token-panel").open = true;
    throw new Error(reason);
  }
  return response;
}

// Images go through fetch (not <img src>) so the bearer token, when set, is sent with them.
async function loadImage(img, url) {
  try {
    const blob = await (await call(url, {})).blob();
    const objectUrl = URL.createObjectURL(blob);
    objectUrls.push(objectUrl);
    img.src = objectUrl;
  } catch (err) {
    img.alt = "image unavailable: " + err.message;
  }
}

function clearResults() {
  while (objectUrls.length) URL.revokeObjectURL(objectUrls.pop());
  resultsEl.replaceChildren();
}

function render(data) {
  clearResults();
  const template = $("result-template");
  for (const hit of data.results) {
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.studyId = hit.study_id;
    node.querySelector(".rank").textContent = "#" + hit.rank;
    node.querySelector(".study").textContent = "study " + hit.study_id;
    node.querySelector(".score").textContent = "score " + hit.score.toFixed(3);
    node.querySelector(".findings").textContent = hit.findings || "—";
    node.querySelector(".impression").textContent = hit.impression || "—";
    const thumbs = node.querySelector(".thumbs");
    const matchedId = hit.matched_image ? hit.matched_image.id : null;
    const images = hit.matched_image && !hit.images.some((im) => im.id === matchedId)
      ? [hit.matched_image, ...hit.images] : hit.images;
    for (const im of images) {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.alt = "study " + hit.study_id + " " + (im.view || "image");
      if (im.id === matchedId) img.classList.add("matched");
      const caption = document.createElement("figcaption");
      caption.textContent = (im.view || "view ?") + (im.id === matchedId ? " (match)" : "");
      figure.append(img, caption);
      thumbs.append(figure);
      loadImage(img, im.url);
    }
    resultsEl.append(node);
  }
  const q = data.query;
  setStatus(
    data.results.length + " result(s) in " + data.total_ms.toFixed(0) + " ms" +
    " (embedding " + data.embed_ms.toFixed(0) + " ms, index " + data.search_ms.toFixed(1) + " ms)" +
    (q.kind === "image" ? "; query image " + q.width + "×" + q.height : "")
  );
}

async function run(form, button, send) {
  button.disabled = true;
  setStatus("searching…");
  try {
    const response = await send();
    render(await response.json());
  } catch (err) {
    clearResults();
    setStatus(err.message, true);
  } finally {
    button.disabled = false;
  }
}

$("image-file").addEventListener("change", () => {
  const file = $("image-file").files[0];
  const preview = $("image-preview");
  if (file && /^image\/(png|jpeg)$/.test(file.type)) {
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  } else {
    preview.hidden = true;
  }
});

$("image-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("image-file").files[0];
  if (!file) { setStatus("choose a radiograph first", true); return; }
  const body = new FormData();
  body.append("file", file);
  body.append("k", $("image-k").value);
  body.append("target", $("image-target").value);
  run(event.target, $("image-submit"), () => call("v1/search/image", { method: "POST", body }));
});

$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const payload = { text: $("text-query").value, k: Number($("text-k").value), target: $("text-target").value };
  run(event.target, $("text-submit"), () =>
    call("v1/search/text", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) }));
});

fetch("healthz").then((r) => r.json()).then((h) => {
  $("index-info").textContent =
    "index " + h.index_version + ": " + h.studies + " studies, " + h.images + " images (" + h.modalities.join(" + ") + ")";
  if (h.auth) $("token-panel").open = true;
}).catch(() => { $("index-info").textContent = "service unreachable"; });

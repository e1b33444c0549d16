// A mix from an image: drop (or choose) an A1111, ComfyUI or lorahub image; the server reads its
// LoRA stack with the same library call as `lorahub mix from-image` (a dry run lists what it
// found and what is missing), and "Save as mix" saves it, refused while a LoRA is missing unless
// the user allows that.

import { api } from "./api.js";
import { byId, fill, h } from "./dom.js";
import { showSavedMix } from "./mix.js";

let chosen = null; // the File dropped or picked

/** Wire the drop zone, the file input and the form (once). */
export function initFromImage(showError) {
  const zone = byId("drop-zone");
  const input = byId("from-image-file");
  input.addEventListener("change", () => {
    if (input.files && input.files.length) choose(input.files[0], showError);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) choose(file, showError);
  });
  byId("from-image-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save(showError);
  });
}

function route(params) {
  return `/v1/mixes/from-image?${new URLSearchParams(params).toString()}`;
}

/** A mix name from a file name: letters, digits, dot, dash and underscore, starting alphanumeric. */
export function suggestName(filename) {
  const stem = String(filename).replace(/\.[^.]*$/, "");
  return stem.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 80) || "from-image";
}

async function choose(file, showError) {
  chosen = file;
  const message = byId("from-image-message");
  byId("from-image-file-name").textContent = file.name;
  const name = byId("from-image-name");
  if (!name.value.trim()) name.value = suggestName(file.name);
  message.textContent = "Reading the image…";
  try {
    const data = await api(route({ dry_run: "true", filename: file.name }), { method: "POST", file });
    drawRecipe(data);
    message.textContent = data.missing.length
      ? `${data.missing.length} of the image's LoRAs ${data.missing.length === 1 ? "is" : "are"} not registered.`
      : `Found all ${data.found.length} of the image's LoRAs.`;
  } catch (err) {
    fill(byId("from-image-members"));
    message.textContent = err.message;
    showError(err);
  }
}

function drawRecipe(data) {
  const found = data.found.map((m) => h("li", { class: "found", dataset: { ref: m.adapter } },
    `${m.name} × ${m.weight} → `, h("a", { href: `#/adapter/${encodeURIComponent(m.adapter)}` }, m.adapter),
    h("span", { class: "muted" }, ` (by ${m.by})`)));
  const missing = data.missing.map((m) => h("li", { class: "missing", dataset: { name: m.name } },
    `${m.name}${m.hash ? ` (${m.hash})` : ""}: not registered`));
  const prompt = data.recipe && data.recipe.prompt;
  fill(byId("from-image-members"), found, missing,
    prompt ? h("li", { class: "muted small" }, `Prompt: ${prompt}`) : null);
}

async function save(showError) {
  const message = byId("from-image-message");
  const name = byId("from-image-name").value.trim();
  if (!chosen) {
    message.textContent = "Drop an image here or choose one first.";
    byId("from-image-file").focus();
    return;
  }
  if (!name) {
    message.textContent = "Give the mix a name.";
    byId("from-image-name").focus();
    return;
  }
  const params = { name, filename: chosen.name };
  if (byId("from-image-allow").checked) params.allow_missing = "true";
  if (byId("from-image-force").checked) params.force = "true";
  try {
    const data = await api(route(params), { method: "POST", file: chosen });
    drawRecipe(data);
    message.textContent = `Saved mix ${data.mix.name} (${data.mix.members.length} of the image's LoRAs).`;
    await showSavedMix(data.mix, showError);
  } catch (err) {
    message.textContent = err.message;
    showError(err);
  }
}

// The mix composer: adapters with a slider + number per weight, "Try" on a prompt, "Compare" one
// adapter's weights side by side (one request per weight, sent together: the server batches them),
// save by name, and the list of saved mixes (load, delete).

import { api, seg } from "./api.js";
import { byId, fill, h } from "./dom.js";

const members = []; // {ref, weight, te_weight, block_weights}
let adapters = [];
let rowId = 0;
let trying = 0;
let showErrorRef = () => {};
const MAX_COMPARE = 16;

/** Wire the composer's buttons (once). */
export function initMix(showError) {
  showErrorRef = showError;
  byId("mix-add").addEventListener("click", () => {
    const ref = byId("mix-pick").value;
    if (ref) addMember(ref);
  });
  byId("mix-clear").addEventListener("click", () => {
    members.splice(0, members.length);
    byId("mix-name").value = "";
    byId("mix-description").value = "";
    byId("mix-force").checked = false;
    byId("mix-message").textContent = "";
    drawMembers();
  });
  byId("mix-form").addEventListener("submit", (event) => {
    event.preventDefault();
    tryMix(showError);
  });
  byId("mix-save").addEventListener("click", () => saveMix(showError));
}

/** Refresh the adapter choices and the saved mixes; `route` may name a mix to load or an adapter to add. */
export async function renderMix(route, showError) {
  try {
    const [adapterData, mixData] = await Promise.all([api("/v1/adapters"), api("/v1/mixes")]);
    adapters = adapterData.adapters;
    fillPicker();
    drawSaved(mixData.mixes, showError);
    if (route.mix) loadMix(mixData.mixes.find((m) => m.name === route.mix), route.mix, showError);
    if (route.add) addMember(route.add);
    drawMembers();
  } catch (err) {
    showError(err);
  }
}

function fillPicker() {
  const select = byId("mix-pick");
  const current = select.value;
  fill(select, adapters.length
    ? adapters.map((a) => h("option", { value: a.ref }, `${a.ref} (${a.base_family}, rank ${a.rank ?? "?"})`))
    : h("option", { value: "" }, "no adapters registered"));
  if (current && adapters.some((a) => a.ref === current)) select.value = current;
}

/** Add an adapter at weight 1 (or focus its row when it is already in). */
export function addMember(ref) {
  if (!members.some((m) => m.ref === ref)) members.push({ ref, weight: 1, te_weight: null, block_weights: null });
  drawMembers();
  const row = [...byId("mix-members").children].find((li) => li.dataset.ref === ref);
  const input = row && row.querySelector("input[type=range]");
  if (input) input.focus();
}

function drawMembers() {
  const list = byId("mix-members");
  if (!members.length) {
    fill(list, h("li", { class: "muted empty" }, "No adapters yet: pick one above and press Add."));
    return;
  }
  fill(list, members.map(memberRow));
}

function memberRow(m) {
  rowId += 1;
  const rangeId = `mix-w-${rowId}`;
  const numberId = `mix-n-${rowId}`;
  const range = h("input", { id: rangeId, type: "range", min: "-2", max: "2", step: "0.05", value: String(m.weight) });
  const number = h("input", { id: numberId, type: "number", min: "-100", max: "100", step: "0.05", value: String(m.weight), class: "weight-number" });
  range.addEventListener("input", () => {
    m.weight = Number(range.value);
    number.value = range.value;
  });
  number.addEventListener("input", () => {
    const v = Number(number.value);
    if (number.value !== "" && Number.isFinite(v)) {
      m.weight = v;
      range.value = String(Math.max(-2, Math.min(2, v)));
    }
  });
  const known = adapters.find((a) => a.ref === m.ref);
  return h("li", { class: "member", dataset: { ref: m.ref } },
    h("div", { class: "member-name" },
      h("a", { href: `#/adapter/${encodeURIComponent(m.ref)}` }, m.ref),
      h("span", { class: "muted member-meta" }, memberMeta(m, known))),
    h("label", { for: rangeId, class: "visually-hidden" }, `Weight of ${m.ref} (slider)`),
    range,
    h("label", { for: numberId, class: "visually-hidden" }, `Weight of ${m.ref}`),
    number,
    h("button", { type: "button", class: "secondary small compare", "aria-label": `Compare weights of ${m.ref}`,
      on: { click: () => compareWeights(m.ref, showErrorRef) } }, "Compare"),
    h("button", { type: "button", class: "secondary small", "aria-label": `Remove ${m.ref} from the mix`,
      on: { click: () => removeMember(m.ref) } }, "Remove"));
}

/** Base and rank, plus the text-encoder and block weights a loaded mix keeps (not editable here). */
function memberMeta(m, known) {
  const parts = known ? [known.base_family, `rank ${known.rank ?? "?"}`] : ["not in the registry"];
  if (m.te_weight !== null && m.te_weight !== undefined) parts.push(`text encoder ${m.te_weight}`);
  if (m.block_weights) {
    parts.push(`blocks ${Object.entries(m.block_weights).map(([b, w]) => `${b}:${w}`).join(",")}`);
  }
  return parts.join(" · ");
}

function removeMember(ref) {
  const i = members.findIndex((m) => m.ref === ref);
  if (i >= 0) members.splice(i, 1);
  drawMembers();
  byId("mix-pick").focus();
}

function memberBody(m) {
  const body = { weight: m.weight };
  if (m.te_weight !== null && m.te_weight !== undefined) body.te_weight = m.te_weight;
  if (m.block_weights) body.block_weights = m.block_weights;
  return body;
}

function intOrNull(id) {
  const raw = byId(id).value.trim();
  return raw === "" ? null : Number.parseInt(raw, 10);
}

/** The /v1/generate body of the composer's current state. */
function requestBody() {
  const body = {
    prompt: byId("mix-prompt").value,
    adapters: members.map((m) => ({ name: m.ref, ...memberBody(m) })),
    n: 1,
  };
  const negative = byId("mix-negative").value.trim();
  if (negative) body.negative_prompt = negative;
  for (const [key, id] of [["seed", "mix-seed"], ["steps", "mix-steps"]]) {
    const v = intOrNull(id);
    if (v !== null) body[key] = v;
  }
  const size = intOrNull("mix-size");
  if (size !== null) Object.assign(body, { width: size, height: size });
  return body;
}

async function tryMix(showError) {
  const button = byId("mix-try");
  const result = byId("mix-result");
  const body = requestBody();
  const run = ++trying;
  button.disabled = true;
  result.setAttribute("aria-busy", "true");
  fill(result, h("p", { class: "muted" }, "Generating…"));
  try {
    const data = await api("/v1/generate", { method: "POST", body });
    if (run === trying) drawResult(data);
  } catch (err) {
    fill(result, h("p", { class: "error-text" }, err.message));
    showError(err);
  } finally {
    button.disabled = false;
    result.removeAttribute("aria-busy");
  }
}

/** The compare weights as numbers, or null when one is not a finite number (or there are none). */
function compareWeightList() {
  const parts = byId("mix-compare-weights").value.split(",").map((p) => p.trim());
  const weights = parts.map(Number);
  if (!parts.length || parts.some((p) => p === "") || weights.some((w) => !Number.isFinite(w))) return null;
  return weights;
}

/** One image per weight of `ref` (the other members keep theirs), requested together. */
async function compareWeights(ref, showError) {
  const result = byId("mix-result");
  const weights = compareWeightList();
  if (!weights || weights.length > MAX_COMPARE) {
    fill(result, h("p", { class: "error-text" },
      `Give 1 to ${MAX_COMPARE} weights as numbers separated by commas, e.g. 0, 0.5, 1.`));
    return;
  }
  const base = requestBody();
  const run = ++trying;
  result.setAttribute("aria-busy", "true");
  fill(result, h("p", { class: "muted" }, `Generating ${weights.length} images of ${ref}…`));
  const runs = weights.map((w) => api("/v1/generate", { method: "POST", body: {
    ...base, adapters: base.adapters.map((a) => (a.name === ref ? { ...a, weight: w } : a)) } }));
  const settled = await Promise.allSettled(runs);
  result.removeAttribute("aria-busy");
  if (run !== trying) return;
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) showError(failed.reason);
  fill(result,
    h("ul", { id: "compare-grid", class: "compare-grid", "aria-label": `${ref} at ${weights.length} weights` },
      settled.map((s, i) => h("li", { dataset: { weight: String(weights[i]) } }, h("figure", {},
        s.status === "fulfilled"
          ? h("img", { class: "generated", src: `data:image/png;base64,${s.value.images[0]}`,
            alt: `${base.prompt} with ${ref} at weight ${weights[i]}` })
          : h("p", { class: "error-text" }, s.reason.message),
        h("figcaption", {}, `${ref}: ${weights[i]}`))))),
    h("p", { class: "muted record" }, `seed ${base.seed ?? "default"} · same prompt and seed in every image`));
}

function drawResult(data) {
  const r = data.record || {};
  const used = (r.adapters || []).map((a) => `${a.name ?? a.ref} × ${a.weight}`).join(", ") || "no adapters";
  fill(byId("mix-result"),
    data.images.map((b64, i) => h("img", { id: i ? null : "mix-image", class: "generated", src: `data:image/png;base64,${b64}`,
      alt: `Generated: ${r.prompt ?? ""} (seed ${r.seed ?? "?"})` })),
    h("p", { class: "muted record" },
      `seed ${r.seed ?? "?"} · ${r.steps ?? "?"} steps · ${r.width ?? "?"}×${r.height ?? "?"} · ${used}`));
}

async function saveMix(showError) {
  const name = byId("mix-name").value.trim();
  const message = byId("mix-message");
  if (!members.length) {
    message.textContent = "Add at least one adapter before saving.";
    return;
  }
  if (!name) {
    message.textContent = "Give the mix a name.";
    byId("mix-name").focus();
    return;
  }
  const body = {
    name,
    members: members.map((m) => ({ ref: m.ref, ...memberBody(m) })),
    description: byId("mix-description").value.trim() || null,
    force: byId("mix-force").checked,
  };
  try {
    const data = await api("/v1/mixes", { method: "POST", body });
    const warnings = (data.warnings || []).join(" ");
    message.textContent = `Saved mix ${data.mix.name}.${warnings ? ` ${warnings}` : ""}`;
    const mixes = await api("/v1/mixes");
    drawSaved(mixes.mixes, showError);
  } catch (err) {
    message.textContent = err.message;
    showError(err);
  }
}

/** Show a mix saved elsewhere (made from an image): load it with its prompt and settings, list it. */
export async function showSavedMix(mix, showError) {
  loadMix(mix, mix.name, showError);
  const d = mix.defaults || {};
  if (d.prompt) byId("mix-prompt").value = d.prompt;
  if (d.negative_prompt) byId("mix-negative").value = d.negative_prompt;
  if (Number.isInteger(d.seed)) byId("mix-seed").value = String(d.seed);
  if (Number.isInteger(d.steps)) byId("mix-steps").value = String(Math.min(d.steps, 150));
  const mixes = await api("/v1/mixes");
  drawSaved(mixes.mixes, showError);
}

function loadMix(mix, name, showError) {
  if (!mix) {
    showError(new Error(`no mix named ${name}`));
    return;
  }
  members.splice(0, members.length, ...mix.members.map((m) => ({
    ref: m.adapter || m.ref, weight: m.weight, te_weight: m.te_weight, block_weights: m.block_weights,
  })));
  byId("mix-name").value = mix.name;
  byId("mix-description").value = mix.description || "";
  byId("mix-force").checked = true;
  drawMembers();
  byId("mix-message").textContent = `Loaded mix ${mix.name}.`;
}

function drawSaved(mixes, showError) {
  const list = byId("mix-list");
  if (!mixes.length) {
    fill(list, h("li", { class: "muted" }, "No saved mixes."));
    return;
  }
  fill(list, mixes.map((mix) => h("li", { class: "saved-mix", dataset: { mix: mix.name } },
    h("div", {}, h("strong", { class: "mix-name" }, mix.name), " ",
      h("span", { class: "badge" }, mix.base_family || "?")),
    mix.description ? h("p", { class: "muted" }, mix.description) : null,
    h("p", { class: "mix-members" }, mix.members.map((m) => `${m.adapter || m.ref} × ${m.weight}`).join(", ")),
    h("div", { class: "buttons" },
      h("button", { type: "button", class: "secondary small", "aria-label": `Load mix ${mix.name} into the composer`,
        on: { click: () => loadMix(mix, mix.name, showError) } }, "Load"),
      deleteButton(mix.name, showError)))));
}

function deleteButton(name, showError) {
  const button = h("button", { type: "button", class: "danger small", "aria-label": `Delete mix ${name}` }, "Delete");
  button.addEventListener("click", async () => {
    if (button.dataset.armed !== "1") {
      button.dataset.armed = "1";
      button.textContent = "Confirm delete";
      button.setAttribute("aria-label", `Confirm: delete mix ${name}`);
      return;
    }
    try {
      await api(`/v1/mixes/${seg(name)}`, { method: "DELETE" });
      const mixes = await api("/v1/mixes");
      drawSaved(mixes.mixes, showError);
    } catch (err) {
      showError(err);
    }
  });
  return button;
}

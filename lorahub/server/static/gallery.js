// The gallery: one card per adapter (preview or placeholder, name, base, rank, tags, triggers),
// filtered by tag, base and text through the API's own filters.

import { api, previewUrl } from "./api.js";
import { byId, chips, fill, h } from "./dom.js";

const filters = { q: "", tag: "", base: "" };
let loaded = 0;

/** Wire the filter form (once). */
export function initGallery(showError) {
  const form = byId("filters");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    readFilters();
    renderGallery(showError);
  });
  for (const id of ["filter-tag", "filter-base"]) {
    byId(id).addEventListener("change", () => {
      readFilters();
      renderGallery(showError);
    });
  }
  byId("filter-clear").addEventListener("click", () => {
    byId("filter-q").value = "";
    byId("filter-tag").value = "";
    byId("filter-base").value = "";
    readFilters();
    renderGallery(showError);
  });
}

function readFilters() {
  filters.q = byId("filter-q").value.trim();
  filters.tag = byId("filter-tag").value;
  filters.base = byId("filter-base").value;
}

function query() {
  const params = new URLSearchParams();
  if (filters.tag) params.append("tag", filters.tag);
  if (filters.base) params.set("base", filters.base);
  if (filters.q) params.set("q", filters.q);
  const s = params.toString();
  return s ? `?${s}` : "";
}

/** Fetch and draw the cards for the current filters (and refresh the filter choices). */
export async function renderGallery(showError) {
  const list = byId("gallery");
  const run = ++loaded;
  list.setAttribute("aria-busy", "true");
  try {
    const [all, shown] = await Promise.all([api("/v1/adapters"), api(`/v1/adapters${query()}`)]);
    if (run !== loaded) return;
    updateChoices(all.adapters);
    const count = shown.adapters.length;
    byId("gallery-count").textContent =
      `${count} of ${all.adapters.length} adapter${all.adapters.length === 1 ? "" : "s"}`;
    fill(list, count ? shown.adapters.map(card) : h("li", { class: "empty" }, "No adapters match."));
    shown.adapters.forEach((a) => loadPreview(a, list));
  } catch (err) {
    showError(err);
  } finally {
    list.removeAttribute("aria-busy");
  }
}

function updateChoices(adapters) {
  const tags = [...new Set(adapters.flatMap((a) => a.tags))].sort();
  const bases = [...new Set(adapters.map((a) => a.base_family).filter(Boolean))].sort();
  setOptions(byId("filter-tag"), "any tag", tags, filters.tag);
  setOptions(byId("filter-base"), "any base", bases, filters.base);
}

function setOptions(select, anyLabel, values, current) {
  const keep = values.includes(current) || !current ? values : [...values, current];
  fill(
    select,
    h("option", { value: "" }, anyLabel),
    keep.map((v) => h("option", { value: v, selected: v === current }, v)),
  );
  select.value = current;
}

/** One adapter card: the whole card is reachable through the link on its name. */
export function card(a) {
  const href = `#/adapter/${encodeURIComponent(a.ref)}`;
  return h(
    "li",
    { class: "card", dataset: { ref: a.ref } },
    h("div", { class: "thumb" }, placeholder(a)),
    h(
      "div",
      { class: "card-body" },
      h("h2", { class: "card-title" }, h("a", { href, class: "card-link" }, a.ref)),
      h(
        "p",
        { class: "card-meta" },
        h("span", { class: "badge" }, a.base_family || "unknown"),
        " ",
        h("span", { class: "rank" }, a.rank ? `rank ${a.rank}` : "rank ?"),
        " · ",
        h("span", {}, a.network_type || ""),
      ),
      a.tags.length
        ? h("div", { class: "card-tags", "aria-label": "Tags" }, chips(a.tags, "chip tag"))
        : h("p", { class: "card-tags muted small" }, "No tags"),
      a.trigger_words.length
        ? h("p", { class: "triggers" }, h("span", { class: "muted" }, "Triggers: "),
            h("span", { class: "trigger-text" }, a.trigger_words.join(", ")))
        : null,
    ),
  );
}

/** A stand-in for a missing preview: the adapter's initials on a colour derived from its name. */
export function placeholder(a) {
  let hash = 0;
  for (const ch of a.name) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  const hue = hash % 360;
  return h(
    "div",
    { class: "placeholder", role: "img", "aria-label": `No preview for ${a.ref}`,
      style: { "--hue": hue } },
    h("span", { "aria-hidden": "true" }, a.name.slice(0, 2).toUpperCase()),
  );
}

async function loadPreview(a, list) {
  if (!a.preview) return;
  const url = await previewUrl(a.ref).catch(() => null);
  if (!url) return;
  const item = [...list.children].find((li) => li.dataset.ref === a.ref);
  if (!item) return;
  fill(item.querySelector(".thumb"), h("img", { src: url, alt: `Preview of ${a.ref}`, class: "preview" }));
}

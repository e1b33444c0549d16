// The gallery: one card per adapter (preview or placeholder, name, base, rank, tags, triggers),
// filtered by tag, base and text through the API's own filters.

import { api, previewUrl } from "./api.js";
import { byId, chips, fill, h } from "./dom.js";
import { strip } from "./images.js";

const filters = { q: "", tag: "", base: "" };
const PAGE = 60; // cards per page: a library of 100,000 adapters never loads whole
let loaded = 0;
let shownCount = 0;

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
  byId("gallery-more").addEventListener("click", () => renderGallery(showError, true));
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

function query(offset) {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  if (filters.tag) params.append("tag", filters.tag);
  if (filters.base) params.set("base", filters.base);
  if (filters.q) params.set("q", filters.q);
  const s = params.toString();
  return s ? `?${s}` : "";
}

/** Fetch and draw a page of cards for the current filters (`more`: append the next page). */
export async function renderGallery(showError, more = false) {
  const list = byId("gallery");
  const run = ++loaded;
  const offset = more ? shownCount : 0;
  list.setAttribute("aria-busy", "true");
  try {
    const [facets, page] = await Promise.all([
      more ? null : api("/v1/adapters/facets"),
      api(`/v1/adapters${query(offset)}`),
    ]);
    if (run !== loaded) return;
    if (facets) updateChoices(facets);
    shownCount = offset + page.adapters.length;
    const cards = page.adapters.map((a) => card(a, (page.images || {})[a.ref]));
    if (more) list.append(...cards);
    else fill(list, cards.length ? cards : h("li", { class: "empty" }, "No adapters match."));
    byId("gallery-count").textContent =
      `${page.total} of ${page.all} adapter${page.all === 1 ? "" : "s"}` +
      (shownCount < page.total ? ` (showing ${shownCount})` : "");
    byId("gallery-more").hidden = shownCount >= page.total;
    page.adapters.forEach((a) => loadPreview(a, list));
  } catch (err) {
    showError(err);
  } finally {
    list.removeAttribute("aria-busy");
  }
}

function updateChoices(facets) {
  setOptions(byId("filter-tag"), "any tag", facets.tags, filters.tag);
  setOptions(byId("filter-base"), "any base", facets.bases, filters.base);
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

/** One adapter card (with a strip of its example images when it has several): the whole card
 * is reachable through the link on its name. */
export function card(a, images) {
  const href = `#/adapter/${encodeURIComponent(a.ref)}`;
  return h(
    "li",
    { class: "card", dataset: { ref: a.ref } },
    h("div", { class: "thumb" }, placeholder(a)),
    strip(a.ref, images),
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

// One adapter: everything `inspect` knows, example images, lineage, publications, tags
// (add/remove), preview.

import { api, previewUrl, seg } from "./api.js";
import { byId, bytes, chips, defs, fill, h, num, safeHref, text } from "./dom.js";
import { placeholder } from "./gallery.js";
import { exampleGallery } from "./images.js";

const LONG = 400;

/** Fetch and draw the adapter `ref` into the detail view. */
export async function renderAdapter(ref, showError, notify) {
  const root = byId("adapter-detail");
  fill(root, h("h1", { id: "adapter-title" }, ref), h("p", { class: "muted" }, "Loading…"));
  try {
    const data = await api(`/v1/adapters/${seg(ref)}`);
    draw(root, data, showError, notify);
  } catch (err) {
    fill(root, h("h1", { id: "adapter-title" }, ref));
    showError(err);
  }
}

function draw(root, data, showError, notify) {
  const a = data.adapter;
  const refresh = () => renderAdapter(a.ref, showError, notify);
  fill(
    root,
    h("div", { class: "detail-head" },
      h("div", { class: "detail-preview" }, h("div", { id: "detail-thumb", class: "thumb large" }, placeholder(a)),
        previewButton(a, refresh, showError)),
      h("div", { class: "detail-main" },
        h("h1", { id: "adapter-title" }, a.ref),
        h("p", { class: "card-meta" }, h("span", { class: "badge" }, a.base_family || "unknown"), " ",
          `${a.format} · ${a.network_type} · rank ${a.rank ?? "?"}`),
        h("p", { id: "adapter-description", class: "description" }, describe(a)),
        h("h2", {}, "Trigger words"),
        h("div", { id: "adapter-triggers" }, chips(a.trigger_words, "chip trigger")),
        h("h2", {}, "Tags"),
        tagEditor(a, refresh, showError, notify),
        h("p", {}, h("a", { class: "button", href: `#/mix?add=${encodeURIComponent(a.ref)}` }, "Add to a mix")))),
    section("Example images", exampleGallery(a.ref, data.images)),
    h("div", { class: "detail-columns" },
      h("div", {},
        section("File", defs(fileFacts(a))),
        section("Hashes", defs(hashFacts(a), "facts mono"))),
      h("div", {},
        section("Lineage", lineage(data.lineage)),
        section("Publications", publications(data.publications)),
        section("Mixes using it", mixLinks(data.mixes || [])))),
    section("Training metadata", summaryFacts(a.summary)),
    section("Raw metadata", rawMetadata(a.metadata)),
  );
  if (a.preview) {
    previewUrl(a.ref).then((url) => {
      if (url) fill(byId("detail-thumb"), h("img", { src: url, alt: `Preview of ${a.ref}`, class: "preview" }));
    }).catch(() => {});
  }
}

/** The registry's description, else the one the file's own metadata carries (modelspec). */
export function describe(a) {
  return a.description || (a.summary && a.summary.modelspec_description) || "No description.";
}

function section(title, body) {
  return h("section", { class: "panel detail-section" }, h("h2", {}, title), body);
}

function fileFacts(a) {
  const ranks = Object.entries(a.rank_summary || {}).map(([r, n]) => `rank ${r}: ${n} modules`);
  return [
    ["Format", a.format],
    ["Network type", a.network_type],
    ["Base family", a.base_family],
    ["Base evidence", (a.base_evidence || []).join("; ")],
    ["Base conflict", a.base_conflict],
    ["Components", a.components],
    ["Rank", a.rank_min !== a.rank_max ? `${a.rank} (from ${a.rank_min} to ${a.rank_max})` : a.rank],
    ["Rank summary", ranks],
    ["Alpha", a.alpha],
    ["Dtype", a.dtype],
    ["Parameters", num(a.param_count)],
    ["Modules", num(a.module_count)],
    ["Targets", a.targets],
    ["Size", bytes(a.size)],
    ["Path", a.path],
    ["Version", a.version],
    ["Source", a.managed ? `${a.source} (managed copy)` : a.source],
    ["Added", a.created_at],
    ["Updated", a.updated_at],
  ];
}

function hashFacts(a) {
  return [["SHA-256", a.sha256], ["AutoV2", a.autov2], ["Tensor SHA-256", a.tensor_sha256], ["AutoV3", a.autov3]];
}

function summaryFacts(summary) {
  const entries = Object.entries(summary || {});
  if (!entries.length) return h("p", { class: "muted" }, "No training metadata.");
  return defs(entries.map(([k, v]) => [k.replaceAll("_", " "), clip(text(v))]));
}

function rawMetadata(metadata) {
  const entries = Object.entries(metadata || {});
  if (!entries.length) return h("p", { class: "muted" }, "No metadata in the file.");
  return h("details", {},
    h("summary", {}, `${entries.length} entr${entries.length === 1 ? "y" : "ies"}`),
    h("table", { class: "kv" },
      h("tbody", {}, entries.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, clip(String(v))))))));
}

function clip(value) {
  return value.length > LONG ? `${value.slice(0, LONG)}… (${value.length} characters)` : value;
}

function lineage(edges) {
  if (!edges || !edges.length) return h("p", { class: "muted" }, "No recorded parents or children.");
  return h("ul", { id: "adapter-lineage", class: "plain lineage" }, edges.map((e) => h("li", {},
    node(e.child), " ", h("span", { class: "relation" }, e.relation), " ", node(e.parent),
    e.created_at ? h("span", { class: "muted" }, " (", stamp(e.created_at), ")") : null,
    lineageDetails(e.details))));
}

/** An edge's details: the key facts on one line (as `lorahub show` gives them), everything on demand. */
function lineageDetails(details) {
  if (details === null || details === undefined) return null;
  if (typeof details === "object" && !Array.isArray(details) && !Object.keys(details).length) return null;
  return h("details", { class: "lineage-details" },
    h("summary", {}, briefDetails(details)),
    h("pre", {}, JSON.stringify(details, null, 2)));
}

const KEY_FACTS = ["method", "rank", "error", "weight", "relation", "base", "steps", "repo"];

/** Scalar facts (nested keys dotted, lists counted), key facts first, at most `limit`. */
export function briefDetails(details, limit = 6) {
  if (typeof details !== "object" || details === null || Array.isArray(details)) return clip(text(details));
  const parts = [];
  const walk = (prefix, value) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(`${prefix}${k}.`, v);
    } else if (Array.isArray(value)) {
      parts.push(`${prefix.slice(0, -1)}: ${value.length} item${value.length === 1 ? "" : "s"}`);
    } else if (value !== null && value !== undefined) {
      const shown = typeof value === "number" && !Number.isInteger(value) ? String(Number(value.toPrecision(4))) : String(value);
      parts.push(`${prefix.slice(0, -1)}=${shown}`);
    }
  };
  walk("", details);
  const key = (p) => KEY_FACTS.some((k) => p.split("=")[0].includes(k));
  const sorted = [...parts.filter(key), ...parts.filter((p) => !key(p))];
  const more = sorted.length > limit ? `; … ${sorted.length - limit} more` : "";
  return clip(sorted.slice(0, limit).join("; ") + more || "details");
}

/** An ISO time as "YYYY-MM-DD HH:MM" (UTC, as stored), the full value in `datetime`. */
function stamp(iso) {
  return h("time", { datetime: iso, title: iso }, String(iso).slice(0, 16).replace("T", " "));
}

function node(n) {
  const label = n.label || n.id;
  if (n.kind === "adapter") return h("a", { href: `#/adapter/${encodeURIComponent(label)}` }, label);
  return h("span", {}, `${n.kind} `, h("code", {}, label));
}

function publications(pubs) {
  if (!pubs || !pubs.length) return h("p", { class: "muted" }, "Not published.");
  return h("table", { class: "kv" },
    h("thead", {}, h("tr", {}, ["Repository", "Revision", "Commit", "When"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, pubs.map((p) => {
      const href = p.url ? safeHref(p.url) : null;
      return h("tr", {},
        h("td", {}, href ? h("a", { href, rel: "noopener noreferrer" }, p.repo) : p.repo),
        h("td", {}, p.revision), h("td", {}, h("code", {}, (p.commit_sha || "—").slice(0, 12))), h("td", {}, stamp(p.created_at)));
    })));
}

function mixLinks(names) {
  if (!names.length) return h("p", { class: "muted" }, "In no saved mix.");
  return h("ul", { class: "chips" }, names.map((n) => h("li", {}, h("a", { href: `#/mix/${encodeURIComponent(n)}` }, n))));
}

function tagEditor(a, refresh, showError, notify) {
  const list = h("ul", { id: "adapter-tags", class: "chips" },
    a.tags.length ? a.tags.map((t) => h("li", { class: "chip tag", dataset: { tag: t } }, t,
      h("button", { type: "button", class: "chip-remove", "aria-label": `Remove tag ${t}`,
        on: { click: () => changeTags(a.ref, [t], "DELETE", refresh, showError, notify) } }, "×")))
      : h("li", { class: "muted" }, "none"));
  const input = h("input", { id: "tag-input", name: "tag-input", type: "text", autocomplete: "off", placeholder: "e.g. style, portrait" });
  const form = h("form", { id: "tag-form", class: "inline-form",
    on: { submit: (event) => {
      event.preventDefault();
      const tags = input.value.split(",").map((t) => t.trim()).filter(Boolean);
      if (tags.length) changeTags(a.ref, tags, "POST", refresh, showError, notify);
    } } },
  h("label", { for: "tag-input" }, "Add tags (comma-separated)"), input,
  h("button", { id: "tag-add", type: "submit" }, "Add tags"));
  return h("div", { class: "tag-editor" }, list, form);
}

async function changeTags(ref, tags, method, refresh, showError, notify) {
  try {
    await api(`/v1/adapters/${seg(ref)}/tags`, { method, body: { tags } });
    notify(method === "POST" ? `Added ${tags.join(", ")}.` : `Removed ${tags.join(", ")}.`);
    await refresh();
    byId("tag-input").focus();
  } catch (err) {
    showError(err);
  }
}

function previewButton(a, refresh, showError) {
  const button = h("button", { id: "preview-make", type: "button", class: "secondary" },
    a.preview ? "Regenerate preview" : "Generate preview");
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = "Generating…";
    try {
      await api(`/v1/adapters/${seg(a.ref)}/preview`, { method: "POST", body: { seed: 0 } });
      await refresh();
    } catch (err) {
      showError(err);
      button.disabled = false;
      button.textContent = "Generate preview";
    }
  });
  return button;
}

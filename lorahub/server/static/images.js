// Example images: a strip of thumbnails on a gallery card, a gallery with each image's
// generation parameters on the adapter page. Images are fetched through the API (with the token)
// and shown from blob: URLs; their parameters come from other people's files and land as text.

import { imageUrl, seg } from "./api.js";
import { defs, fill, h } from "./dom.js";

const THUMB = 96; // pixels, the strip's thumbnails
const LARGE = 512; // pixels, the adapter page's images

/** The API path of an adapter's image at `position` (built here: nothing else is fetched). */
function imagePath(ref, position, size) {
  return `/v1/adapters/${seg(ref)}/images/${Number(position)}?size=${size}`;
}

function load(box, ref, position, size, alt) {
  imageUrl(imagePath(ref, position, size)).then((url) => {
    if (url) fill(box, h("img", { src: url, alt, class: "example-img" }));
  }).catch(() => {});
}

/** A card's strip: the first images (from the gallery page's `images` map) and how many more. */
export function strip(ref, info) {
  if (!info || info.count < 2) return null;
  const items = info.items.map((item) => {
    const box = h("li", { class: "strip-item", dataset: { position: item.position } });
    load(box, ref, item.position, THUMB, `Example ${item.position + 1} of ${ref}`);
    return box;
  });
  const more = info.count - info.items.length;
  return h("ul", { class: "strip", "aria-label": `${info.count} example images` },
    items, more > 0 ? h("li", { class: "strip-more muted" }, `+${more}`) : null);
}

/** The adapter page's gallery: every image with the parameters it was made with. */
export function exampleGallery(ref, images) {
  if (!images || !images.length) {
    return h("p", { class: "muted" }, "No example images (lorahub images add NAME IMAGE...).");
  }
  return h("ul", { id: "adapter-images", class: "examples" }, images.map((image) => {
    const box = h("div", { class: "example-box" });
    load(box, ref, image.position, LARGE, `Example ${image.position + 1} of ${ref}`);
    return h("li", { class: "example", dataset: { position: image.position } },
      h("figure", {}, box, h("figcaption", {}, caption(image))));
  }));
}

function caption(image) {
  const p = image.params;
  if (!p) return h("p", { class: "muted small" }, "No generation parameters in this image.");
  const size = p.width && p.height ? `${p.width}×${p.height}` : null;
  const loras = (p.members || []).map((m) => `${m.name} × ${m.weight}`);
  const pairs = [
    ["Prompt", p.prompt], ["Negative prompt", p.negative_prompt], ["LoRAs", loras],
    ["Seed", p.seed], ["Steps", p.steps], ["Sampler", p.sampler], ["Guidance", p.guidance],
    ["Size", size], ["Made with", image.tool],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "" && !(Array.isArray(v) && !v.length));
  return defs(pairs, "facts params");
}

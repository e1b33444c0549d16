// DOM helpers: every element is built with createElement and every string lands as text.
// Nothing here (or anywhere in the page) assigns innerHTML: names, tags, descriptions and
// metadata come from files other people made.

/** Build an element: h("a", {href: "#/", class: "x", on: {click: fn}}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") {
      for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "style") {
      for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop, String(v));
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key in PROPS) {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

const PROPS = { value: 1, checked: 1, disabled: 1, selected: 1, src: 1, alt: 1 };

/** Append children (strings become text nodes; arrays are flattened; null is skipped). */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace every child of `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** The element with this id (throws when the page lacks it: a bug, not a user error). */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing #${id}`);
  return node;
}

/** A labelled input: returns [label, input] (every input has a <label for>). */
export function field(id, label, attrs = {}) {
  const input = h(attrs.tag || "input", { id, name: id, ...attrs, tag: null });
  return [h("label", { for: id }, label), input];
}

/** A number with thousands separators, or an em dash when absent. */
export function num(value) {
  if (value === null || value === undefined || value === "") return "—";
  return typeof value === "number" ? value.toLocaleString("en-US") : String(value);
}

/** Bytes as KiB/MiB. */
export function bytes(value) {
  if (typeof value !== "number") return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = value;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** Any value as one line of text (objects as JSON). */
export function text(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (Array.isArray(value)) return value.length ? value.map(text).join(", ") : "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A <dl> from [term, value] pairs (values may be nodes or text). */
export function defs(pairs, cls = "facts") {
  return h(
    "dl",
    { class: cls },
    pairs.map(([term, value]) => [
      h("dt", {}, term),
      h("dd", {}, value instanceof Node ? value : text(value)),
    ]),
  );
}

/** Only http(s) links are followed; anything else is shown as text. */
export function safeHref(url) {
  try {
    const parsed = new URL(String(url), window.location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

/** A small list of tag-like chips. */
export function chips(items, cls = "chip") {
  if (!items || !items.length) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "chips" }, items.map((t) => h("li", { class: cls }, t)));
}

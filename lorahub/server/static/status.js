// The server's state: loaded base, resident adapters, queue, recent generations.

import { api } from "./api.js";
import { byId, defs, fill, h, num, text } from "./dom.js";

/** Fetch /v1/status and draw it; also refresh the one-line summary in the header. */
export async function renderStatus(showError, { panel = true } = {}) {
  try {
    const s = await api("/v1/status");
    byId("server-line").textContent =
      `${s.base} (${s.base_family ?? "?"}) · queue ${s.queue.depth}/${s.queue.limit}`;
    if (panel) draw(s);
  } catch (err) {
    if (panel) showError(err);
  }
}

function draw(s) {
  fill(
    byId("status-body"),
    h("div", { class: "status-grid" },
      h("section", { class: "panel" }, h("h2", {}, "Base model"),
        defs([
          ["Base", s.base],
          ["Family", s.base_family],
          ["Pipeline loaded", s.engine_loaded ? "yes" : "not yet (loads on the first generation)"],
          ["Version", s.version],
          ["Up for", duration(s.uptime_s)],
          ["Token required", s.auth ? "yes" : "no"],
        ])),
      h("section", { class: "panel" }, h("h2", {}, "Queue"),
        defs([
          ["Running or waiting", num(s.queue.depth)],
          ["Admitted at once", num(s.queue.limit)],
          ["Generations", num(s.generations)],
          ["Images", num(s.images)],
        ])),
      h("section", { class: "panel" }, h("h2", {}, "Resident adapters"), resident(s.resident_adapters))),
    h("section", { class: "panel" }, h("h2", {}, "Recent generations"), recent(s.recent)),
  );
}

function resident(items) {
  if (!items || !items.length) return h("p", { class: "muted" }, "None resident.");
  return h("ul", { id: "resident-list", class: "chips" }, items.map((item) => {
    if (typeof item !== "object" || item === null) return h("li", { class: "chip" }, String(item));
    const label = item.name ?? item.ref ?? text(item);
    return h("li", { class: item.active ? "chip active" : "chip" }, label,
      item.active ? h("span", { class: "muted" }, " (active)") : null);
  }));
}

function recent(items) {
  if (!items || !items.length) return h("p", { class: "muted" }, "No generations yet.");
  const cols = ["When", "Prompt", "Adapters", "Seed", "Steps", "Size", "Seconds"];
  return h("table", { id: "recent-table", class: "kv recent" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, items.map((g) => h("tr", {},
      h("td", {}, h("time", { datetime: g.time ?? "" }, when(g.time))),
      h("td", { class: "prompt" }, g.prompt ?? ""),
      h("td", {}, (g.adapters || []).map((a) => `${a.name} × ${a.weight}`).join(", ") || "none"),
      h("td", {}, text(g.seed)), h("td", {}, text(g.steps)),
      h("td", {}, g.width ? `${g.width}×${g.height}${g.n > 1 ? ` ×${g.n}` : ""}` : "—"),
      h("td", {}, text(g.seconds))))));
}

function when(iso) {
  const date = iso ? new Date(iso) : null;
  return date && !Number.isNaN(date.getTime()) ? date.toLocaleString() : text(iso);
}

function duration(seconds) {
  if (typeof seconds !== "number") return "—";
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

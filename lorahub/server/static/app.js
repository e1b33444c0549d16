// The page's entry point: hash routes (#/, #/adapter/NAME, #/mix, #/mix/NAME, #/status),
// one place that shows errors and notices.

import { ApiError } from "./api.js";
import { byId } from "./dom.js";
import { renderAdapter } from "./detail.js";
import { initGallery, renderGallery } from "./gallery.js";
import { initFromImage } from "./fromimage.js";
import { initMix, renderMix } from "./mix.js";
import { renderStatus } from "./status.js";

const VIEWS = ["gallery", "adapter", "mix", "status"];
const NAV = { gallery: "nav-gallery", adapter: "nav-gallery", mix: "nav-mix", status: "nav-status" };
let statusTimer = null;
let noticeTimer = null;

/** Show an API error (or any error) in the alert region. */
function showError(err) {
  const message = err instanceof ApiError ? `${err.message} (${err.code})` : String(err.message || err);
  showNotice(message, true);
}

/** Show a short notice (an error stays until the next action). */
function notify(message) {
  showNotice(message, false);
}

function showNotice(message, isError) {
  const box = byId("notice");
  box.textContent = message;
  box.classList.toggle("error", isError);
  box.hidden = false;
  clearTimeout(noticeTimer);
  if (!isError) noticeTimer = setTimeout(() => { box.hidden = true; }, 4000);
}

function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part; // a stray "%" in a typed URL: use the text as it is
  }
}

/** Parse the hash into a route: {view, ref?, mix?, add?}. */
export function parseRoute(hash) {
  const raw = (hash || "").replace(/^#\/?/, "");
  const [path, queryString] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decode);
  const params = new URLSearchParams(queryString || "");
  if (parts[0] === "adapter" && parts[1]) return { view: "adapter", ref: parts[1] };
  if (parts[0] === "mix") return { view: "mix", mix: parts[1] || null, add: params.get("add") };
  if (parts[0] === "status") return { view: "status" };
  return { view: "gallery" };
}

function show(view) {
  for (const v of VIEWS) byId(`view-${v}`).hidden = v !== view;
  for (const id of new Set(Object.values(NAV))) byId(id).removeAttribute("aria-current");
  byId(NAV[view]).setAttribute("aria-current", "page");
}

async function route() {
  const r = parseRoute(window.location.hash);
  byId("notice").hidden = true;
  show(r.view);
  clearInterval(statusTimer);
  if (r.view === "gallery") await renderGallery(showError);
  if (r.view === "adapter") await renderAdapter(r.ref, showError, notify);
  if (r.view === "mix") {
    if (r.add || r.mix) window.history.replaceState(null, "", "#/mix");
    await renderMix(r, showError);
  }
  if (r.view === "status") {
    await renderStatus(showError);
    statusTimer = setInterval(() => renderStatus(showError), 5000);
  }
  const title = byId(`view-${r.view}`).querySelector("h1");
  document.title = title ? `${title.textContent} · lorahub` : "lorahub";
}

function start() {
  initGallery(showError);
  initMix(showError);
  initFromImage(showError);
  byId("status-refresh").addEventListener("click", () => renderStatus(showError));
  byId("skip-link").addEventListener("click", (event) => {
    event.preventDefault(); // the hash holds the route: move focus instead of navigating
    byId("main").focus();
  });
  window.addEventListener("hashchange", () => {
    route();
    byId("main").focus({ preventScroll: true });
  });
  route().then(() => renderStatus(showError, { panel: false }));
}

start();

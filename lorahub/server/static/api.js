// Talking to the lorahub HTTP API: JSON in and out, the bearer token, one error shape.

import { byId } from "./dom.js";

const TOKEN_KEY = "lorahub-token";
let waitingForToken = null;

/** An API failure with the server's code and one-line message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The token kept for this browser tab (sessionStorage), or null. */
export function getToken() {
  return window.sessionStorage.getItem(TOKEN_KEY);
}

function setToken(token) {
  if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
  else window.sessionStorage.removeItem(TOKEN_KEY);
}

/** Call the API; on 401 ask for the token and retry. Returns parsed JSON (or a Blob with `blob`).
 * `body` is sent as JSON; `file` (a File or Blob) is sent as it is, with its own type. */
export async function api(path, { method = "GET", body, blob = false, file } = {}) {
  for (;;) {
    const headers = { Accept: blob ? "*/*" : "application/json" };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (file !== undefined) headers["Content-Type"] = file.type || "application/octet-stream";
    const response = await fetch(path, {
      method,
      headers,
      body: file !== undefined ? file : body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      await askForToken(Boolean(token));
      continue;
    }
    if (!response.ok) throw await toError(response);
    return blob ? response.blob() : response.json();
  }
}

async function toError(response) {
  try {
    const data = await response.json();
    const err = data && data.error;
    if (err && err.message) return new ApiError(response.status, err.code, err.message);
  } catch {
    // not JSON: fall through to the status line
  }
  return new ApiError(response.status, "http_error", `${response.status} ${response.statusText}`);
}

/** Show the token form (once for every request waiting) and resolve when a token is entered. */
function askForToken(rejected) {
  if (waitingForToken) return waitingForToken;
  const dialog = byId("token-panel");
  const form = byId("token-form");
  const input = byId("token-input");
  byId("token-message").textContent = rejected
    ? "That token was not accepted. Enter the server's token."
    : "This server needs a token (the one given to lorahub serve --token).";
  setToken(null);
  dialog.hidden = false;
  input.value = "";
  input.focus();
  waitingForToken = new Promise((resolve) => {
    const submit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      setToken(value);
      form.removeEventListener("submit", submit);
      dialog.hidden = true;
      waitingForToken = null;
      resolve();
    };
    form.addEventListener("submit", submit);
  });
  return waitingForToken;
}

/** A path segment for an adapter or mix reference. */
export function seg(ref) {
  return encodeURIComponent(ref);
}

/** An object URL for an adapter's preview image, or null when it has none. */
export function previewUrl(ref) {
  return imageUrl(`/v1/adapters/${seg(ref)}/preview`);
}

/** An object URL for an image the API serves (fetched with the token), or null on 404. */
export async function imageUrl(path) {
  try {
    const data = await api(path, { blob: true });
    return URL.createObjectURL(data);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

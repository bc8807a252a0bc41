// Access to the service's HTTP API, with the bearer key kept in this browser's localStorage.

import { showError } from "./page.js";
import { KEY_STORAGE } from "./state.js";

class ApiError extends Error {
  constructor(status, detail) {
    super(status ? `API error ${status}: ${detail}` : detail);
    this.status = status;
    this.detail = detail;
  }
}

export function storedKey() {
  try {
    return window.localStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return "";
  }
}

export function storeKey(key) {
  try {
    if (key) window.localStorage.setItem(KEY_STORAGE, key);
    else window.localStorage.removeItem(KEY_STORAGE);
  } catch {
    showError(new Error("This browser does not allow storing the API key (localStorage)."));
  }
}

// FastAPI answers {"detail": "..."} or, for validation errors, {"detail": [{loc, msg}, ...]}.
function describeDetail(detail) {
  if (detail === undefined || detail === null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((item) => {
      if (!item || typeof item !== "object") return String(item);
      const where = (item.loc ?? []).filter((part) => part !== "query" && part !== "body").join(".");
      return where ? `${where}: ${item.msg}` : String(item.msg ?? JSON.stringify(item));
    }).join("; ");
  }
  return JSON.stringify(detail);
}

export async function api(path, params, signal) {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(`${path}?${params}`, { headers, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `Cannot reach the service (${err.message}).`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    // The Prometheus API answers {"status": "error", "errorType", "error"}.
    const detail = body?.detail ?? (body?.errorType ? `${body.errorType}: ${body.error}` : undefined);
    throw new ApiError(response.status, describeDetail(detail) || response.statusText);
  }
  return body;
}

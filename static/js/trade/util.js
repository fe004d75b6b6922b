// Shared helpers of the trade dashboard: configuration, translations, locale formatting, DOM and REST.

const configEl = document.getElementById("trade-config");
export const config = configEl ? JSON.parse(configEl.textContent) : { strings: {}, api: {}, ws: {} };
const lang = config.language || document.documentElement.lang || "en";

/** Translated string for `key` (rendered by the server), with `{name}` placeholders filled in. */
export function t(key, params) {
  let s = (config.strings && config.strings[key]) || key;
  if (params) {
    for (const [k, v] of Object.entries(params)) s = s.split(`{${k}}`).join(String(v));
  }
  return s;
}

// ---- numbers, per the page's language --------------------------------------------------------------
const nfCache = new Map();
function nf(opts) {
  const key = JSON.stringify(opts);
  let f = nfCache.get(key);
  if (!f) {
    f = new Intl.NumberFormat(lang, opts);
    nfCache.set(key, f);
  }
  return f;
}

export function num(v) {
  if (v === null || v === undefined || v === "") return NaN;
  return typeof v === "number" ? v : Number(v);
}

/** KRW amounts: no decimals. */
export function fmtKRW(v) {
  const n = num(v);
  return Number.isFinite(n) ? nf({ maximumFractionDigits: 0 }).format(n) : "–";
}

/** Decimals a KRW price needs at its magnitude (Upbit's tick table). */
export function priceDecimals(price) {
  const p = Math.abs(num(price));
  if (!Number.isFinite(p) || p >= 1000) return 0;
  if (p >= 100) return 1;
  if (p >= 10) return 2;
  if (p >= 1) return 3;
  if (p === 0) return 0;
  return Math.min(8, 3 - Math.floor(Math.log10(p)));
}

/** A KRW price: as many decimals as its tick (none above 1,000 KRW). */
export function fmtPrice(v) {
  const n = num(v);
  if (!Number.isFinite(n)) return "–";
  const d = priceDecimals(n);
  return nf({ minimumFractionDigits: d, maximumFractionDigits: d }).format(n);
}

/** Coin volumes: 8 decimals. */
export function fmtVol(v, digits = 8) {
  const n = num(v);
  return Number.isFinite(n) ? nf({ minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n) : "–";
}

/** Traded volume in full digits with separators (1,160 BTC, 0.532 BTC): Korean readers expect digits, not
 *  compact units like "1.16천". */
export function fmtVolume(v) {
  const n = Math.abs(num(v));
  if (!Number.isFinite(n)) return "–";
  const digits = n >= 1000 ? 0 : n >= 1 ? 3 : 8;
  return nf({ maximumFractionDigits: digits }).format(num(v));
}

/** A compact number for chart axes. */
export function fmtCompact(v) {
  const n = num(v);
  return Number.isFinite(n) ? nf({ notation: "compact", maximumFractionDigits: 2 }).format(n) : "–";
}

/** A ratio (0.01 = 1 %) as a signed percentage. */
export function fmtPct(v, digits = 2) {
  const n = num(v);
  if (!Number.isFinite(n)) return "–";
  return nf({ style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits, signDisplay: "exceptZero" }).format(n);
}

export function fmtSignedKRW(v) {
  const n = num(v);
  return Number.isFinite(n) ? nf({ maximumFractionDigits: 0, signDisplay: "exceptZero" }).format(n) : "–";
}

const timeFmt = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const dateTimeFmt = new Intl.DateTimeFormat(lang, {
  month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const dateFmt = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });

export function toDate(v) {
  if (v === null || v === undefined || v === "") return null;
  const d = typeof v === "number" ? new Date(v < 1e12 ? v * 1000 : v) : new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}
export function fmtTime(v) {
  const d = toDate(v);
  return d ? timeFmt.format(d) : "–";
}
export function fmtDateTime(v) {
  const d = toDate(v);
  return d ? dateTimeFmt.format(d) : "–";
}
export function fmtDate(v) {
  const d = toDate(v);
  return d ? dateFmt.format(d) : "–";
}

/** -1, 0 or 1 as a CSS class: rises red, falls blue (as in Korea). */
export function dirClass(v) {
  const n = num(v);
  if (!Number.isFinite(n) || n === 0) return "flat";
  return n > 0 ? "up" : "down";
}

// ---- DOM ------------------------------------------------------------------------------------------
export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** Create an element: h("td", {class: "num"}, "text", child...). */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

/** Replace a tbody's rows, or show a one-cell "empty" row. */
export function fillRows(tbody, rows, emptyText, cols) {
  if (!rows.length) {
    tbody.replaceChildren(h("tr", { class: "empty" }, h("td", { colspan: cols, class: "muted" }, emptyText)));
  } else {
    tbody.replaceChildren(...rows);
  }
}

let toastSeq = 0;
/** A short message in the aria-live region; errors stay longer. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const id = `toast-${++toastSeq}`;
  const node = h("div", { class: `toast toast-${kind}`, id, role: kind === "error" ? "alert" : null }, message);
  box.append(node);
  setTimeout(() => node.remove(), kind === "error" ? 8000 : 4000);
}

// ---- REST -----------------------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(message, status, code, fields) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields || {};
  }
}

function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : config.csrf || "";
}

/** The user-facing message of an API error body (already in the user's language on the server). */
function errorMessage(body, status) {
  const err = body && (body.error || body);
  if (err && typeof err === "object") {
    if (err.message && err.message !== "Invalid input.") return String(err.message);
    const fields = err.fields || (body.error ? null : body);
    if (fields && typeof fields === "object") {
      const parts = [];
      for (const v of Object.values(fields)) {
        if (Array.isArray(v)) parts.push(...v.map(String));
        else if (typeof v === "string") parts.push(v);
      }
      if (parts.length) return parts.join(" ");
    }
    if (err.message) return String(err.message);
    if (err.detail) return String(err.detail);
  }
  if (status === 401 || status === 403) return t("session_expired");
  if (status === 503 || status === 502 || status === 504) return t("error_unavailable");
  return t("error_generic");
}

/** Fill `{id}`-style placeholders of an endpoint from config.api. */
export function endpoint(name, params) {
  let url = config.api[name];
  // Not installed on this server (the page was rendered without it): behave like a 404.
  if (!url) throw new ApiError(t("error_unavailable"), 404, "not_installed");
  if (params) for (const [k, v] of Object.entries(params)) url = url.replace(`{${k}}`, encodeURIComponent(v));
  return url;
}

/** fetch() with the session cookie, CSRF header, JSON in/out and errors as ApiError with a clear message. */
export async function api(name, { method = "GET", query, body, params, signal, timeout = 10000, headers: extra } = {}) {
  let url = endpoint(name, params);
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") qs.set(k, v);
    const s = qs.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const headers = { Accept: "application/json", "Accept-Language": lang, ...(extra || {}) };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeout);
  if (signal) signal.addEventListener("abort", () => ctrl.abort(), { once: true });
  init.signal = ctrl.signal;
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    if (signal && signal.aborted) throw e;
    throw new ApiError(t("error_network"), 0, "network");
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(errorMessage(data, res.status), res.status, err.code || String(res.status), err.fields);
  }
  return data;
}

/** A list out of a paginated or plain response. */
export function listOf(data, ...keys) {
  if (Array.isArray(data)) return data;
  if (!data || typeof data !== "object") return [];
  for (const k of [...keys, "results", "items", "data"]) if (Array.isArray(data[k])) return data[k];
  return [];
}

/** A fresh idempotency key per user action (Upbit `identifier`). */
export function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Run fn at most once per animation frame, with the latest arguments. */
export function rafThrottle(fn) {
  let pending = false;
  let lastArgs = null;
  return (...args) => {
    lastArgs = args;
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn(...lastArgs);
    });
  };
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

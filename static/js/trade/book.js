// Live order book: a ladder (price, size, cumulative size with depth bars) and a cumulative depth chart on
// a canvas. Updates arrive up to 20/s; both are painted at most once per animation frame (latest wins),
// and the ladder reuses its rows so a paint only touches the text that changed.

import { fmtCompact, fmtPrice, fmtVol, h, setText, t } from "./util.js";

const ASK_FILL = "rgba(25, 98, 209, 0.16)";
const ASK_LINE = "#1962d1";
const BID_FILL = "rgba(214, 46, 46, 0.16)";
const BID_LINE = "#d62e2e";

export class OrderBookView {
  constructor({ asksBody, midBody, bidsBody, canvas, spreadEl, levels = 15, depth = true, ladder = true, onPick, stats }) {
    this.asksBody = asksBody;
    this.midBody = midBody;
    this.bidsBody = bidsBody;
    this.canvas = canvas;
    this.spreadEl = spreadEl;
    this.levels = levels;
    this.depthEnabled = depth && !!canvas;
    this.ladderEnabled = ladder;
    this.onPick = onPick;
    this.stats = stats || {};
    this.book = null;
    this.pending = false;
    this.askRows = this._rows(asksBody, "ask");
    this.bidRows = this._rows(bidsBody, "bid");
    this.midCell = h("td", { colspan: 3, class: "mid-cell muted" }, t("loading"));
    midBody.replaceChildren(h("tr", null, this.midCell));
    if (canvas && !this.depthEnabled) canvas.hidden = true;
    // The canvas size is cached from the ResizeObserver: reading clientWidth while painting would force a
    // synchronous layout of the whole page right after the ladder's text changed (several ms per update).
    this.cssW = 0;
    this.cssH = 0;
    // Axis labels are HTML over the canvas: canvas fillText costs ~2 ms a frame in software rendering.
    this.labels = {};
    if (this.depthEnabled) {
      const wrap = h("div", { class: "depth-wrap" });
      canvas.replaceWith(wrap);
      wrap.append(canvas);
      for (const name of ["max", "lo", "mid", "hi"]) {
        this.labels[name] = h("span", { class: `depth-label depth-${name}`, "aria-hidden": "true" });
        wrap.append(this.labels[name]);
      }
    }
    if (this.depthEnabled && "ResizeObserver" in window) {
      new ResizeObserver((entries) => {
        const box = entries[entries.length - 1].contentRect;
        this.cssW = box.width;
        this.cssH = box.height;
        this._schedule();
      }).observe(canvas);
    } else if (this.depthEnabled) {
      this.cssW = canvas.clientWidth;
      this.cssH = canvas.clientHeight;
    }
  }

  _rows(body, side) {
    const rows = [];
    const frag = document.createDocumentFragment();
    for (let i = 0; i < this.levels; i++) {
      const price = h("td", { class: `num price ${side === "ask" ? "down" : "up"}` });
      const size = h("td", { class: "num" });
      const cum = h("td", { class: "num cum" });
      const tr = h("tr", { class: `lvl ${side}` }, price, size, cum);
      tr.hidden = true;
      const pick = () => {
        if (this.onPick && tr.dataset.price) this.onPick(Number(tr.dataset.price), side);
      };
      // Keyboard users pick a level too: focus the row, Enter or Space fills the limit price.
      tr.tabIndex = 0;
      tr.addEventListener("click", pick);
      tr.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          pick();
        }
      });
      frag.append(tr);
      rows.push({ tr, price, size, cum, key: "" });
    }
    body.replaceChildren(frag);
    return rows;
  }

  /** New order-book payload ({asks: [[p, s, cum]...], bids: [...], spread, mid, ts}). */
  update(book) {
    if (!book || !Array.isArray(book.asks) || !Array.isArray(book.bids)) return;
    this.book = book;
    this.stats.bookUpdates = (this.stats.bookUpdates || 0) + 1;
    this._schedule();
  }

  clear() {
    this.book = null;
    for (const r of [...this.askRows, ...this.bidRows]) {
      r.tr.hidden = true;
      r.key = "";
    }
    setText(this.midCell, t("loading"));
    this._schedule();
  }

  _schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this._paint();
    });
  }

  _paint() {
    const book = this.book;
    const t0 = performance.now();
    if (this.ladderEnabled) this._paintLadder(book);
    if (this.depthEnabled) this._paintDepth(book);
    this.stats.paintMs = (this.stats.paintMs || 0) + (performance.now() - t0);
    if (book) {
      this.stats.bookPaints = (this.stats.bookPaints || 0) + 1;
      if (!this.stats.firstBookPaint) {
        this.stats.firstBookPaint = performance.now();
        try {
          performance.mark("first-book-paint");
        } catch {
          /* marks are optional */
        }
      }
    }
  }

  _paintLadder(book) {
    if (!book) return;
    const asks = book.asks.slice(0, this.levels);
    const bids = book.bids.slice(0, this.levels);
    let maxSize = 0;
    for (const l of asks) maxSize = Math.max(maxSize, l[1]);
    for (const l of bids) maxSize = Math.max(maxSize, l[1]);
    // Asks: highest price on top, best ask just above the middle row.
    const n = this.levels;
    for (let i = 0; i < n; i++) {
      const lvl = asks[n - 1 - i];
      this._fillRow(this.askRows[i], lvl, maxSize);
    }
    for (let i = 0; i < n; i++) this._fillRow(this.bidRows[i], bids[i], maxSize);
    const bestAsk = asks[0] && asks[0][0];
    const bestBid = bids[0] && bids[0][0];
    if (bestAsk !== undefined && bestBid !== undefined) {
      const spread = bestAsk - bestBid;
      const rel = bestBid > 0 ? spread / ((bestAsk + bestBid) / 2) : 0;
      const text = `${fmtPrice(bestBid)} / ${fmtPrice(bestAsk)} · Δ ${fmtPrice(spread)} (${(rel * 100).toFixed(3)}%)`;
      setText(this.midCell, text);
      this.midCell.classList.remove("muted");
      if (this.spreadEl) setText(this.spreadEl, `${t("depth_label")}`);
    }
  }

  _fillRow(row, lvl, maxSize) {
    if (!lvl) {
      if (!row.tr.hidden) row.tr.hidden = true;
      row.key = "";
      return;
    }
    const [price, size, cum] = lvl;
    const key = `${price}|${size}|${cum}`;
    if (row.tr.hidden) row.tr.hidden = false;
    if (row.key === key) return;
    row.key = key;
    row.tr.dataset.price = String(price);
    setText(row.price, fmtPrice(price));
    setText(row.size, fmtVol(size));
    setText(row.cum, fmtVol(cum, 4));
    const w = maxSize > 0 ? Math.min(100, (size / maxSize) * 100) : 0;
    row.tr.style.setProperty("--w", `${w.toFixed(1)}%`);
  }

  _paintDepth(book) {
    const canvas = this.canvas;
    const cssW = this.cssW;
    const cssH = this.cssH;
    if (!cssW || !cssH) return;
    const dpr = window.devicePixelRatio || 1;
    const W = Math.round(cssW * dpr);
    const H = Math.round(cssH * dpr);
    if (canvas.width !== W || canvas.height !== H) {
      canvas.width = W;
      canvas.height = H;
    }
    // Opaque canvas: the compositor does not blend it with the page behind (cheaper frames in software).
    if (!this.ctx) this.ctx = canvas.getContext("2d", { alpha: false });
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, cssW, cssH);
    if (!book || (!book.asks.length && !book.bids.length)) return;
    const asks = book.asks;
    const bids = book.bids;
    const lo = bids.length ? bids[bids.length - 1][0] : asks[0][0];
    const hi = asks.length ? asks[asks.length - 1][0] : bids[0][0];
    const maxCum = Math.max(asks.length ? asks[asks.length - 1][2] : 0, bids.length ? bids[bids.length - 1][2] : 0);
    if (!(hi > lo) || !(maxCum > 0)) return;
    const padB = 16;
    const padT = 6;
    const plotH = cssH - padB - padT;
    const x = (p) => ((p - lo) / (hi - lo)) * cssW;
    const y = (c) => padT + plotH - (c / maxCum) * plotH;
    const base = padT + plotH;

    // Bids: from the best bid leftwards, a step down-left curve.
    if (bids.length) {
      ctx.beginPath();
      let prevX = x(bids[0][0]);
      ctx.moveTo(prevX, base);
      let prevY = base;
      for (const [p, , c] of bids) {
        const nx = x(p);
        ctx.lineTo(prevX, y(c));
        ctx.lineTo(nx, y(c));
        prevX = nx;
        prevY = y(c);
      }
      ctx.lineTo(0, prevY);
      ctx.lineTo(0, base);
      ctx.closePath();
      ctx.fillStyle = BID_FILL;
      ctx.fill();
      ctx.strokeStyle = BID_LINE;
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    if (asks.length) {
      ctx.beginPath();
      let prevX = x(asks[0][0]);
      let prevY = base;
      ctx.moveTo(prevX, base);
      for (const [p, , c] of asks) {
        const nx = x(p);
        ctx.lineTo(prevX, y(c));
        ctx.lineTo(nx, y(c));
        prevX = nx;
        prevY = y(c);
      }
      ctx.lineTo(cssW, prevY);
      ctx.lineTo(cssW, base);
      ctx.closePath();
      ctx.fillStyle = ASK_FILL;
      ctx.fill();
      ctx.strokeStyle = ASK_LINE;
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    // Axis labels (HTML): lowest, mid and highest price; the largest cumulative size; a dashed mid line.
    setText(this.labels.lo, fmtPrice(lo));
    setText(this.labels.hi, fmtPrice(hi));
    setText(this.labels.max, fmtCompact(maxCum));
    if (book.mid) {
      setText(this.labels.mid, fmtPrice(book.mid));
      const mx = x(book.mid);
      this.labels.mid.style.left = `${mx.toFixed(0)}px`;
      ctx.strokeStyle = "rgba(102,112,133,0.5)";
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(mx, padT);
      ctx.lineTo(mx, base);
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }
}

// Price chart: TradingView lightweight-charts (npm, served from /static/vendor/) when installed, else a small
// built-in canvas renderer, so the page never breaks. A live line of the last minutes (one point per second)
// or candles for a range, and the model's prediction as a dashed segment from now to now + horizon.

import { fmtPrice, fmtTime, num, priceDecimals, t } from "./util.js";

const LIVE_WINDOW_S = 15 * 60;
const UP = "#d62e2e";
const DOWN = "#1962d1";
const LINE = "#0f5fd7";
const PRED = "#f08c00";
// lightweight-charts shows times as UTC: shift by the browser's offset so the axis reads local time.
const TZ_SHIFT = -new Date().getTimezoneOffset() * 60;

export class PriceChart {
  constructor(container, noteEl) {
    this.container = container;
    this.noteEl = noteEl;
    this.mode = "live";
    this.live = []; // [{time, value}] local-shifted seconds, ascending, unique
    this.candles = [];
    this.prediction = null;
    this.lib = null;
    this.impl = null;
    this.decimals = null;
  }

  async init(vendorUrl) {
    try {
      if (!vendorUrl) throw new Error("no chart library configured");
      const lib = await import(vendorUrl);
      this.impl = new LibChart(this.container, lib);
    } catch (e) {
      this.impl = new CanvasChart(this.container);
      if (this.noteEl) this.noteEl.textContent = t("chart_fallback");
    }
    this.container.dataset.renderer = this.impl.kind;
    this._render();
    return this.impl.kind;
  }

  setMode(mode) {
    this.mode = mode;
    this._render();
  }

  /** Seed the live line from recent trades/prices: [{ts (ms), price}]; `merge` keeps what is there. */
  seedLive(points, { merge = false } = {}) {
    const bySecond = new Map();
    if (merge) for (const p of this.live) bySecond.set(p.time - TZ_SHIFT, p.value);
    for (const p of points) {
      const ts = num(p.ts);
      const price = num(p.price);
      if (!Number.isFinite(ts) || !Number.isFinite(price)) continue;
      bySecond.set(Math.floor(ts / 1000), price);
    }
    const nowS = Math.floor(Date.now() / 1000);
    const sorted = Array.from(bySecond.entries())
      .filter(([s]) => s > nowS - LIVE_WINDOW_S)
      .sort((a, b) => a[0] - b[0]);
    // One point per second, interpolated between the known prices: the chart spaces points by index, so
    // gaps (minute closes before the live trades) would distort time.
    this.live = [];
    for (let i = 0; i < sorted.length; i++) {
      const [sec, v] = sorted[i];
      const [next, nv] = i + 1 < sorted.length ? sorted[i + 1] : [sec + 1, v];
      for (let x = sec; x < next; x++) this.live.push({ time: x + TZ_SHIFT, value: v + ((nv - v) * (x - sec)) / (next - sec) });
    }
    if (this.live.length) this._precision(this.live[this.live.length - 1].value);
    if (this.mode === "live") this._render();
  }

  /** One live price at `ts` (ms). Same second: replaces the point. */
  addLive(ts, price) {
    const p = num(price);
    if (!Number.isFinite(p)) return;
    const time = Math.floor(num(ts) / 1000) + TZ_SHIFT;
    const last = this.live[this.live.length - 1];
    if (last && time < last.time) return; // late trade of an older second: the line keeps moving forward
    this._precision(p);
    if (last && last.time === time) last.value = p;
    else {
      if (last && time - last.time > 1) {
        // Carry the last price over the silent seconds (at most the window) so time stays proportional.
        for (let x = Math.max(last.time + 1, time - LIVE_WINDOW_S); x < time; x++) {
          const filler = { time: x, value: last.value };
          this.live.push(filler);
          if (this.mode === "live" && this.impl) this.impl.updateLive(filler, this.live);
        }
      }
      this.live.push({ time, value: p });
    }
    const cutoff = time - LIVE_WINDOW_S;
    let drop = 0;
    while (drop < this.live.length && this.live[drop].time < cutoff) drop++;
    if (drop) this.live.splice(0, drop);
    if (this.mode === "live" && this.impl) this.impl.updateLive(this.live[this.live.length - 1], this.live);
  }

  _precision(price) {
    const d = priceDecimals(price);
    if (d !== this.decimals && this.impl) {
      this.decimals = d;
      this.impl.setPrecision(d);
    }
  }

  /** Candles: [{time (s, UTC), open, high, low, close}] ascending. */
  setCandles(candles) {
    this.candles = candles.map((c) => ({ ...c, time: c.time + TZ_SHIFT }));
    if (candles.length) this._precision(candles[candles.length - 1].close);
    if (this.mode !== "live") this._render();
  }

  /** The model's prediction: {ts (ms), price, horizon_s, predicted_return} or null to hide it. */
  setPrediction(pred) {
    if (!pred) {
      this.prediction = null;
    } else {
      const from = Math.floor(num(pred.ts) / 1000) + TZ_SHIFT;
      const to = from + Math.max(1, Math.round(num(pred.horizon_s) || 30));
      const p0 = num(pred.price);
      const p1 = p0 * Math.exp(num(pred.predicted_return) || 0);
      if (Number.isFinite(p0) && Number.isFinite(p1) && Number.isFinite(from)) {
        // One point per second (the chart spaces points by index), a straight line from now to now + horizon.
        this.prediction = [];
        for (let x = from; x <= to; x++) this.prediction.push({ time: x, value: p0 + ((p1 - p0) * (x - from)) / (to - from) });
      } else this.prediction = null;
    }
    if (this.mode === "live" && this.impl) this.impl.setPrediction(this.prediction);
  }

  _render() {
    if (!this.impl) return;
    if (this.mode === "live") this.impl.showLive(this.live, this.prediction);
    else this.impl.showCandles(this.candles);
  }
}

class LibChart {
  constructor(container, lib) {
    this.kind = "lightweight-charts";
    const create = lib.createChart;
    this.chart = create(container, {
      autoSize: true,
      layout: { background: { color: "transparent" }, textColor: "#475467", fontFamily: "inherit", attributionLogo: false },
      grid: { vertLines: { color: "rgba(152,162,179,0.15)" }, horzLines: { color: "rgba(152,162,179,0.15)" } },
      rightPriceScale: { borderVisible: false },
      timeScale: { borderVisible: false, timeVisible: true, secondsVisible: true },
      localization: { priceFormatter: (p) => fmtPrice(p) },
    });
    const add = (type, opts) => (this.chart.addSeries ? this.chart.addSeries(lib[`${type}Series`], opts) : this.chart[`add${type}Series`](opts));
    const pf = { type: "custom", formatter: (p) => fmtPrice(p), minMove: 0.00000001 };
    this.line = add("Line", { color: LINE, lineWidth: 2, priceFormat: pf, lastValueVisible: true });
    this.pred = add("Line", { color: PRED, lineWidth: 2, lineStyle: 2, priceFormat: pf, lastValueVisible: false, priceLineVisible: false });
    this.candles = add("Candlestick", {
      upColor: UP, downColor: DOWN, borderUpColor: UP, borderDownColor: DOWN, wickUpColor: UP, wickDownColor: DOWN,
      priceFormat: pf, visible: false,
    });
  }

  setPrecision(d) {
    const minMove = 10 ** -d;
    for (const s of [this.line, this.pred, this.candles]) s.applyOptions({ priceFormat: { type: "custom", formatter: (p) => fmtPrice(p), minMove } });
  }

  showLive(points, prediction) {
    this.candles.setData([]); // hidden series still stretch the time scale
    this.candles.applyOptions({ visible: false });
    this.line.applyOptions({ visible: true });
    this.pred.applyOptions({ visible: true });
    this.chart.applyOptions({ timeScale: { secondsVisible: true } });
    this.line.setData(points);
    this.setPrediction(prediction);
    this.chart.timeScale().fitContent();
  }

  updateLive(point) {
    if (point) this.line.update(point);
  }

  setPrediction(prediction) {
    this.pred.setData(prediction || []);
  }

  showCandles(candles) {
    this.line.setData([]);
    this.pred.setData([]);
    this.line.applyOptions({ visible: false });
    this.pred.applyOptions({ visible: false });
    this.candles.applyOptions({ visible: true });
    this.chart.applyOptions({ timeScale: { secondsVisible: false } });
    this.candles.setData(candles);
    this.chart.timeScale().fitContent();
  }
}

/** The fallback: a plain canvas line/candle chart with min/max and time labels. */
class CanvasChart {
  constructor(container) {
    this.kind = "canvas";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "chart-canvas";
    container.replaceChildren(this.canvas);
    this.data = [];
    this.candleMode = false;
    this.prediction = null;
    this.pending = false;
    if ("ResizeObserver" in window) new ResizeObserver(() => this._schedule()).observe(container);
  }

  setPrecision() {}

  showLive(points, prediction) {
    this.candleMode = false;
    this.data = points;
    this.prediction = prediction;
    this._schedule();
  }

  updateLive(_point, points) {
    this.data = points;
    this._schedule();
  }

  setPrediction(prediction) {
    this.prediction = prediction;
    this._schedule();
  }

  showCandles(candles) {
    this.candleMode = true;
    this.data = candles;
    this.prediction = null;
    this._schedule();
  }

  _schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this._draw();
    });
  }

  _draw() {
    const c = this.canvas;
    const w = c.clientWidth;
    const hgt = c.clientHeight;
    if (!w || !hgt) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr)) c.width = Math.round(w * dpr);
    if (c.height !== Math.round(hgt * dpr)) c.height = Math.round(hgt * dpr);
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const data = this.data;
    if (!data.length) return;
    const pred = this.prediction || [];
    let lo = Infinity;
    let hi = -Infinity;
    for (const d of data) {
      lo = Math.min(lo, this.candleMode ? d.low : d.value);
      hi = Math.max(hi, this.candleMode ? d.high : d.value);
    }
    for (const p of pred) {
      lo = Math.min(lo, p.value);
      hi = Math.max(hi, p.value);
    }
    if (hi === lo) {
      hi += 1;
      lo -= 1;
    }
    const t0 = data[0].time;
    const t1 = Math.max(data[data.length - 1].time, pred.length ? pred[pred.length - 1].time : 0, t0 + 1);
    ctx.font = "11px system-ui, sans-serif";
    const padR = Math.ceil(Math.max(ctx.measureText(fmtPrice(hi)).width, ctx.measureText(fmtPrice(lo)).width)) + 12;
    const padB = 18;
    const plotW = w - padR;
    const plotH = hgt - padB - 6;
    const x = (tm) => ((tm - t0) / (t1 - t0)) * plotW;
    const y = (v) => 6 + plotH - ((v - lo) / (hi - lo)) * plotH;
    if (this.candleMode) {
      const bw = Math.max(1, Math.min(12, (plotW / data.length) * 0.7));
      for (const d of data) {
        const color = d.close >= d.open ? UP : DOWN;
        ctx.strokeStyle = color;
        ctx.fillStyle = color;
        const cx = x(d.time);
        ctx.beginPath();
        ctx.moveTo(cx, y(d.high));
        ctx.lineTo(cx, y(d.low));
        ctx.stroke();
        const top = y(Math.max(d.open, d.close));
        ctx.fillRect(cx - bw / 2, top, bw, Math.max(1, y(Math.min(d.open, d.close)) - top));
      }
    } else {
      ctx.strokeStyle = LINE;
      ctx.lineWidth = 2;
      ctx.beginPath();
      data.forEach((d, i) => (i ? ctx.lineTo(x(d.time), y(d.value)) : ctx.moveTo(x(d.time), y(d.value))));
      ctx.stroke();
      if (pred.length >= 2) {
        const end = pred[pred.length - 1];
        ctx.strokeStyle = PRED;
        ctx.setLineDash([5, 4]);
        ctx.beginPath();
        ctx.moveTo(x(pred[0].time), y(pred[0].value));
        ctx.lineTo(x(end.time), y(end.value));
        ctx.stroke();
        ctx.setLineDash([]);
      }
    }
    ctx.fillStyle = "#475467";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    const last = data[data.length - 1];
    const lastV = this.candleMode ? last.close : last.value;
    if (Math.abs(y(lastV) - 6) > 14) ctx.fillText(fmtPrice(hi), plotW + 6, 4);
    ctx.textBaseline = "bottom";
    if (Math.abs(y(lastV) - (6 + plotH)) > 14) ctx.fillText(fmtPrice(lo), plotW + 6, 6 + plotH);
    ctx.textBaseline = "middle";
    ctx.fillStyle = LINE;
    ctx.fillText(fmtPrice(lastV), plotW + 6, y(lastV));
    ctx.fillStyle = "#475467";
    ctx.textBaseline = "bottom";
    const label = (tm) => (this.candleMode ? new Date((tm - TZ_SHIFT) * 1000).toLocaleDateString() : fmtTime((tm - TZ_SHIFT) * 1000));
    ctx.fillText(label(t0), 0, hgt);
    ctx.textAlign = "right";
    ctx.fillText(label(data[data.length - 1].time), plotW, hgt);
  }
}


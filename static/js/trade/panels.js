// Account-side panels: my assets, orders (open, scheduled, history), auto-trading and the order forms.
// All loads are REST (first paint, after a user event or a reconnect, after an action); live changes
// arrive as user events over /ws/user/.

import {
  $,
  $$,
  api,
  ApiError,
  config,
  debounce,
  dirClass,
  fillRows,
  fmtDateTime,
  fmtKRW,
  fmtPct,
  fmtPrice,
  fmtSignedKRW,
  fmtTime,
  fmtVol,
  h,
  idempotencyKey,
  listOf,
  num,
  setText,
  t,
  toast,
} from "./util.js";

// ---- my assets ------------------------------------------------------------------------------------------
export class AssetsPanel {
  constructor({ coin }) {
    this.coin = coin;
    this.data = null;
    this.loadSoon = debounce(() => this.load(), 400);
    this.badge = $("#mode-badge");
    this.req = 0;
  }

  async load() {
    const req = ++this.req;
    try {
      const data = await api("portfolio");
      if (req !== this.req) return;
      // GET portfolio: {mode, portfolio: PortfolioOutput} (trading/api/serializers.py).
      this.data = { ...data.portfolio, mode: data.mode };
      this.render();
    } catch (e) {
      if (req !== this.req) return;
      if (e instanceof ApiError && e.status === 404) return; // API not deployed: keep the placeholders
      setText($("#assets-total"), "–");
      $("#holdings-body").replaceChildren(h("tr", null, h("td", { colspan: 5, class: "muted" }, e.message)));
    }
  }

  /** Volume of a currency the user can sell (for the 25/50/100 % buttons). */
  available(currency) {
    const hs = this.holdings();
    const hold = hs.find((x) => x.currency === currency);
    return hold ? num(hold.balance) : 0;
  }

  holdings() {
    return ((this.data && this.data.holdings) || []).filter((x) => x.currency !== "KRW");
  }

  onPrice(market, price) {
    // Keep the current market's holding valued at the live price between REST loads.
    if (!this.data || !Number.isFinite(price)) return;
    const hold = this.holdings().find((x) => x.market === market);
    if (!hold) return;
    const now = Date.now();
    if (this._lastLive && now - this._lastLive < 1000) return;
    this._lastLive = now;
    hold.price = price;
    this.render();
  }

  render() {
    const d = this.data || {};
    const mode = d.mode || "paper";
    this.badge.hidden = false;
    this.badge.textContent = mode === "live" ? t("live_mode") : t("paper");
    this.badge.className = `badge badge-mode badge-${mode}`;
    this.badge.title = mode === "live" ? "" : t("mode_paper_hint");
    const hs = this.holdings();
    // The server marks every figure at one price per coin (fees included); between loads the live price
    // moves a holding's value, and that same change moves Total, P&L today and P&L total together.
    let total = num(d.krw_balance) + num(d.krw_locked ?? 0);
    let unrealized = 0;
    let drift = 0; // live value - the server's value of the holdings it priced
    let unpriced = 0; // P&L of holdings only the live price could value
    const rows = hs.map((x) => {
      const vol = num(x.volume);
      const avg = num(x.avg_buy_price);
      const price = x.price === null || x.price === undefined ? NaN : num(x.price);
      const serverValue = x.value_krw === null || x.value_krw === undefined ? NaN : num(x.value_krw);
      const value = Number.isFinite(price) ? vol * price : serverValue;
      const cost = Number.isFinite(num(x.cost_krw)) ? num(x.cost_krw) : vol * avg;
      const pnl = Number.isFinite(value) ? value - cost : NaN;
      const rate = cost > 0 && Number.isFinite(pnl) ? pnl / cost : NaN;
      if (Number.isFinite(value)) total += value;
      if (Number.isFinite(pnl)) unrealized += pnl;
      if (Number.isFinite(value) && Number.isFinite(serverValue)) drift += value - serverValue;
      else if (Number.isFinite(pnl)) unpriced += pnl;
      return h(
        "tr",
        { "data-currency": x.currency },
        h("th", { scope: "row" }, x.currency),
        h("td", { class: "num" }, fmtVol(vol)),
        h("td", { class: "num" }, fmtPrice(avg)),
        h("td", { class: "num" }, fmtKRW(value)),
        h("td", { class: `num ${dirClass(pnl)}` }, `${fmtSignedKRW(pnl)} (${fmtPct(rate)})`),
      );
    });
    fillRows($("#holdings-body"), rows, t("no_assets"), 5);
    const apiTotal = num(d.total_assets_krw);
    if (!hs.length && Number.isFinite(apiTotal)) total = apiTotal;
    setText($("#assets-total"), `${fmtKRW(total)} KRW`);
    setText($("#assets-krw"), `${fmtKRW(d.krw_balance)} KRW`);
    const apiToday = d.pnl_today;
    const today = apiToday === undefined || apiToday === null ? apiToday : num(apiToday) + drift;
    const pToday = $("#assets-pnl-today");
    setText(pToday, today === undefined || today === null ? "–" : `${fmtSignedKRW(today)} KRW`);
    pToday.className = dirClass(today);
    const realized = num(d.realized_pnl ?? 0);
    const pTotal = $("#assets-pnl-total");
    const apiPnlTotal = d.pnl_total;
    const totalPnl = apiPnlTotal === undefined || apiPnlTotal === null
      ? realized + unrealized
      : num(apiPnlTotal) + drift + unpriced;
    setText(pTotal, `${fmtSignedKRW(totalPnl)} KRW`);
    pTotal.className = dirClass(totalPnl);
  }
}

// ---- orders ------------------------------------------------------------------------------------------------
// Dispatched on document when an order action succeeded (placed, cancelled): stale form errors go.
const ACTION_DONE = "trade:action-done";
const OPEN_STATES = new Set(["pending", "open", "wait", "watch"]);

/** What a closed order's row shows: the average fill price when something filled, else what was ordered
 * (the limit price, or the KRW amount of a market buy); the volume as "executed / ordered" when the order
 * did not fill completely (a cancelled limit order reads "0.00000000 / 0.00100000"). */
export function historyFigures(o) {
  const executed = num(o.executed_volume);
  const ordered = num(o.volume);
  const filled = executed > 0;
  const avg = num(o.avg_price) || (filled ? num(o.executed_funds) / executed : NaN);
  let price = fmtPrice(avg);
  let priceTitle = t("avg_fill_price");
  if (!filled) {
    if (o.ord_type === "price") price = `${fmtKRW(o.price)} KRW`;
    else price = fmtPrice(o.price);
    priceTitle = o.ord_type === "limit" ? t("limit_price") : t("ordered_amount");
  }
  const partial = Number.isFinite(ordered) && ordered > 0 && !(executed >= ordered);
  const volume = partial ? `${fmtVol(Number.isFinite(executed) ? executed : 0)} / ${fmtVol(ordered)}` : fmtVol(executed);
  const volumeTitle = partial ? t("executed_of_ordered") : t("executed_volume");
  return { price, priceTitle, volume, volumeTitle };
}

export class OrdersPanel {
  constructor() {
    this.open = [];
    this.history = [];
    this.scheduled = [];
    this.loadSoon = debounce(() => this.load(), 300);
  }

  async load() {
    await Promise.all([this.loadOrders(), this.loadScheduled()]);
  }

  async loadOrders() {
    try {
      const all = listOf(await api("orders", { query: { limit: 50 } }), "orders");
      this.open = all.filter((o) => OPEN_STATES.has(o.state));
      this.history = all.filter((o) => !OPEN_STATES.has(o.state));
      this.renderOrders();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return;
      $("#history-body").replaceChildren(h("tr", null, h("td", { colspan: 8, class: "muted" }, e.message)));
    }
  }

  async loadScheduled() {
    try {
      this.scheduled = listOf(await api("scheduled", { query: { limit: 50 } }), "scheduled_orders");
      this.renderScheduled();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return;
      $("#scheduled-body").replaceChildren(h("tr", null, h("td", { colspan: 6, class: "muted" }, e.message)));
    }
  }

  onEvent(kind, data) {
    if (kind === "scheduled_order") {
      const so = data.scheduled_order || data;
      const st = so.state;
      if (st && st !== "pending" && st !== "firing") {
        const msg = `${t("source_scheduled")} #${so.id}: ${t(`state_${st}`)}${so.failure_reason ? ` — ${so.failure_reason}` : ""}`;
        toast(msg, st === "failed" ? "error" : "info");
      }
      this.loadScheduled();
      if (so.order_id) this.loadOrders();
      return;
    }
    const o = data.order || data;
    if (o.state === "rejected" && o.error_message) toast(o.error_message, "error");
    this.loadSoon();
  }

  _sideCell(side) {
    const bid = side === "bid";
    return h("td", { class: bid ? "up" : "down" }, t(bid ? "bid" : "ask"));
  }

  _cancel(kind, id) {
    return h(
      "button",
      {
        type: "button",
        class: "btn btn-sm",
        "data-testid": kind === "order" ? "order-cancel" : "scheduled-cancel",
        "aria-label": `${t("cancel")} #${id}`,
        onclick: async (ev) => {
          const btn = ev.currentTarget;
          btn.disabled = true;
          try {
            if (kind === "order") {
              await api("order_cancel", { method: "POST", params: { id }, body: {} });
              document.dispatchEvent(new CustomEvent(ACTION_DONE));
              toast(t("order_cancelled"));
              this.loadOrders();
            } else {
              await api("scheduled_cancel", { method: "POST", params: { id }, body: {} });
              document.dispatchEvent(new CustomEvent(ACTION_DONE));
              toast(t("scheduled_cancelled"));
              this.loadScheduled();
            }
          } catch (e) {
            toast(e.message, "error");
            btn.disabled = false;
          }
        },
      },
      t("cancel"),
    );
  }

  renderOrders() {
    const openRows = this.open.map((o) =>
      h(
        "tr",
        { "data-order-id": o.id },
        h("td", null, fmtTime(o.created_at)),
        h("td", null, o.market),
        this._sideCell(o.side),
        h("td", { class: "num" }, o.ord_type === "price" ? `${fmtKRW(o.price)} KRW` : fmtPrice(o.price)),
        h("td", { class: "num" }, fmtVol(o.volume)),
        h("td", { class: "num" }, fmtVol(o.executed_volume)),
        h("td", null, this._cancel("order", o.id)),
      ),
    );
    fillRows($("#open-orders-body"), openRows, t("no_open_orders"), 7);
    const histRows = this.history.map((o) => {
      const { price, priceTitle, volume, volumeTitle } = historyFigures(o);
      return h(
        "tr",
        { "data-order-id": o.id, "data-state": o.state, title: o.error_message || "" },
        h("td", null, fmtDateTime(o.closed_at ?? o.created_at)), // closed_at is null until the order ends
        h("td", null, o.market),
        this._sideCell(o.side),
        h("td", { class: "num", "data-col": "price", title: priceTitle }, price),
        h("td", { class: "num", "data-col": "volume", title: volumeTitle }, volume),
        h("td", { class: "num" }, fmtKRW(o.paid_fee)),
        h("td", null, t(`source_${o.source || "manual"}`)),
        h("td", { class: `state state-${o.state}` }, t(`state_${o.state}`), o.error_message ? h("span", { class: "fine muted" }, ` ${o.error_message}`) : null),
      );
    });
    fillRows($("#history-body"), histRows, t("no_orders"), 8);
  }

  renderScheduled() {
    const rows = this.scheduled.map((so) => {
      let cond;
      if (so.trigger_type === "time") cond = t("at_time", { t: fmtDateTime(so.trigger_at) });
      else if (so.trigger_type === "price_above") cond = t("when_above", { p: fmtPrice(so.trigger_price) });
      else cond = t("when_below", { p: fmtPrice(so.trigger_price) });
      if (so.expires_at) cond += ` · ${t("expires", { t: fmtDateTime(so.expires_at) })}`;
      const amount = so.side === "bid" ? `${fmtKRW(so.price)} KRW` : fmtVol(so.volume);
      const cancellable = so.state === "pending";
      return h(
        "tr",
        { "data-scheduled-id": so.id, "data-state": so.state },
        h("td", null, cond),
        h("td", null, so.market),
        this._sideCell(so.side),
        h("td", { class: "num" }, amount),
        h("td", { class: `state state-${so.state}` }, t(`state_${so.state}`), so.failure_reason ? h("span", { class: "fine muted" }, ` ${so.failure_reason}`) : null),
        h("td", null, cancellable ? this._cancel("scheduled", so.id) : ""),
      );
    });
    fillRows($("#scheduled-body"), rows, t("no_scheduled"), 6);
  }
}

// ---- auto-trading --------------------------------------------------------------------------------------------
export class AutoPanel {
  constructor({ getMarket, chart }) {
    this.getMarket = getMarket;
    this.chart = chart;
    this.session = null;
    this.running = false;
    this.decisions = [];
    this.slider = $("#threshold");
    this.out = $("#threshold-out");
    this.startBtn = $("#auto-start");
    this.stopBtn = $("#auto-stop");
    this.stateEl = $("#auto-state");
    this.log = $("#decision-log");
    this.orderInput = $("#auto-order-krw");
    this.orderInput.addEventListener("input", () => (this.orderInput.dataset.touched = "1"));
    this.sessionStart = new Date();
    const th = config.threshold || {};
    this.slider.min = th.min ?? 0;
    this.slider.max = th.max ?? 5;
    this.slider.step = th.step ?? 0.01;
    this.slider.value = th.default ?? 0.05;
    this._showThreshold();
    this.slider.addEventListener("input", () => this._showThreshold());
    $("#threshold-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.apply();
    });
    this.startBtn.addEventListener("click", () => this.start());
    this.stopBtn.addEventListener("click", () => this.stop());
  }

  /** Slider value in percent (0.05 = 0.05 %). */
  thresholdPct() {
    return Math.round(num(this.slider.value) * 100) / 100;
  }

  _showThreshold() {
    const v = this.thresholdPct();
    setText(this.out, `${v.toFixed(2)}%`);
    this.slider.setAttribute("aria-valuetext", `${v.toFixed(2)}%`);
  }

  _threshold() {
    return this.thresholdPct().toFixed(2); // percent, as the auto-trading API takes it
  }

  async load() {
    const market = this.getMarket();
    try {
      const data = await api("auto", { query: { market } });
      const sessions = listOf(data, "sessions").filter((x) => x.market === market);
      const current = sessions.find((x) => x.state === "running") || sessions[0] || null;
      this._applySession({ session: current });
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) toast(e.message, "error");
    }
    await this.loadDecisions();
    this.loadModel();
  }

  async loadDecisions() {
    if (!this.session) {
      this.decisions = [];
      this.renderLog();
      return;
    }
    try {
      const dec = await api("auto_decisions", { query: { session_id: this.session.id, limit: 50 } });
      this.decisions = listOf(dec, "decisions").slice(0, 50);
    } catch {
      /* keep what the socket delivered */
    }
    this.renderLog();
  }

  /** The model's state (active vN, training the first model, collecting data, no model passed and why):
   * one request that answers 200 in every state, polled while no model is active (so the page follows the
   * first model's training) and now and then after that (a nightly retrain may promote a new version). */
  async loadModel() {
    const market = this.getMarket();
    clearTimeout(this.modelTimer);
    let data = null;
    try {
      data = await api("model_state", { query: { market } });
    } catch {
      /* keep what is shown; try again below */
    }
    if (market !== this.getMarket()) return;
    if (data) this._showModel(data);
    const active = data && data.state === "active";
    this.modelTimer = setTimeout(() => this.loadModel(), active ? 60000 : 5000);
  }

  _showModel(data) {
    const el = $("#model-version");
    el.dataset.modelState = data.state || "";
    if (data.state !== "active" || !data.model) {
      this.modelSeen = false;
      setText(el, data.message || t("model_none"));
      el.title = data.reason || "";
      return;
    }
    const m = data.model;
    this.modelSeen = true;
    setText(el, `${m.name || ""} v${m.version ?? "?"}`.trim());
    el.title = m.verdict || data.message || "";
    if (data.prediction && !this.lastPredictionTs) this.onPrediction(data.prediction);
  }

  _applySession(data) {
    const s = data && "session" in data ? data.session : data;
    const prevId = this.session && this.session.id;
    this.session = s && s.id ? s : null;
    this.running = !!(this.session && this.session.state === "running");
    // A running session shows its threshold; a stopped one keeps the user's current (kept) choice.
    if (this.running && this.session.threshold_pct !== undefined && this.session.threshold_pct !== null) {
      const pct = num(this.session.threshold_pct);
      if (Number.isFinite(pct)) {
        this.slider.value = String(Math.min(num(this.slider.max), Math.max(num(this.slider.min), pct)));
        this._showThreshold();
      }
    }
    if (this.session && this.session.order_krw && !this.orderInput.dataset.touched) {
      this.orderInput.value = String(Math.round(num(this.session.order_krw)));
    }
    // A stop this page did not ask for (daily loss halt, kill switch) is announced with its reason; the
    // user's own Stop is confirmed once, by stop().
    if (this.session && this.session.stop_reason && this.session.state === "stopped" && prevId === this.session.id && this._wasRunning && !this._stopping) {
      toast(`${t("auto_stopped")} ${this.session.stop_reason}`, "info");
    }
    this._wasRunning = this.running;
    this._renderState();
  }

  _renderState() {
    setText(this.stateEl, this.running ? t("running") : t("stopped"));
    this.stateEl.className = `badge ${this.running ? "badge-on" : ""}`;
    this.startBtn.disabled = this.running;
    this.stopBtn.disabled = !this.running;
    if (!this.running) this.chart.setPrediction(null);
  }

  async _call(name, method, body, okMsg) {
    const buttons = [this.startBtn, this.stopBtn, $("#threshold-apply")];
    buttons.forEach((b) => (b.disabled = true));
    try {
      const data = await api(name, { method, body });
      // auto_change answers session: null when nothing runs; the stopped session shown stays.
      if (data && data.session) this._applySession(data);
      if (okMsg) toast(okMsg);
      return true;
    } catch (e) {
      toast(e.message, "error");
      return false;
    } finally {
      $("#threshold-apply").disabled = false;
      this._renderState();
    }
  }

  async start() {
    const orderKrw = decimalString(this.orderInput.value);
    if (!orderKrw) {
      toast(t("invalid_amount"), "error");
      this.orderInput.focus();
      return;
    }
    const body = { market: this.getMarket(), threshold_pct: this._threshold(), order_krw: orderKrw };
    if (await this._call("auto_start", "POST", body, t("auto_started"))) {
      this.decisions = [];
      this.renderLog();
    }
  }

  async stop() {
    const body = this.session ? { session_id: this.session.id } : { market: this.getMarket() };
    this._stopping = true;
    try {
      await this._call("auto_stop", "POST", body, t("auto_stopped"));
    } finally {
      this._stopping = false;
    }
  }

  async apply() {
    const v = `${this._threshold()}%`;
    // Kept on the server even while stopped (the next start and a reload use it).
    const body = this.running && this.session
      ? { session_id: this.session.id, threshold_pct: this._threshold() }
      : { market: this.getMarket(), threshold_pct: this._threshold() };
    await this._call("auto_change", "PUT", body, t("threshold_applied", { v }));
  }

  onMarket() {
    this.decisions = [];
    this.modelSeen = false;
    this.lastPredictionTs = 0;
    setText($("#model-version"), "–");
    setText($("#model-prediction"), "–");
    this.load();
  }

  onPrediction(p) {
    if (!p) return;
    if (p.market && p.market !== this.getMarket()) return;
    this.lastPredictionTs = num(p.ts) || Date.now();
    // The live prediction event and GET model_state's prediction share these fields (docs/architecture.md).
    const ret = num(p.predicted_return);
    const hz = num(p.horizon_s) || 0;
    setText($("#model-prediction"), t("predicted_return", { v: fmtPct(ret, 3), h: Math.round(hz) }));
    $("#model-prediction").className = dirClass(ret);
    if (p.model_version) setText($("#model-version"), String(p.model_version));
    if (this.running) {
      this.chart.setPrediction({ ts: num(p.ts), price: p.mid, horizon_s: hz, predicted_return: ret });
    }
  }

  onEvent(kind, data) {
    if (kind === "auto_decision") {
      const d = data.decision;
      if (!this.session || (d.session_id && d.session_id !== this.session.id)) return;
      if (this.decisions.some((x) => x.id === d.id)) return;
      this.decisions.unshift(d);
      this.decisions = this.decisions.slice(0, 50);
      this.renderLog();
      return;
    }
    if (data.session && data.session.market === this.getMarket()) {
      if (!this.session || this.session.id === data.session.id || data.session.state === "running") this._applySession(data);
    }
  }

  renderLog() {
    if (!this.decisions.length) {
      this.log.replaceChildren(h("li", { class: "muted empty" }, t("no_decisions")));
      return;
    }
    this.log.replaceChildren(
      ...this.decisions.map((d) => {
        const action = String(d.action || "hold").toLowerCase();
        const pr = num(d.predicted_return);
        const edge = num(d.threshold) + num(d.cost);
        const reasonKey = `reason_${d.reason}`;
        const reason = d.reason ? (t(reasonKey) !== reasonKey ? t(reasonKey) : d.reason) : "";
        const parts = [
          Number.isFinite(pr) ? `${t("prediction")} ${fmtPct(pr, 3)}` : null,
          Number.isFinite(edge) ? t("edge", { v: fmtPct(edge, 3).replace(/^\+/, "") }) : null,
        ].filter(Boolean);
        return h(
          "li",
          { class: `decision decision-${action}`, "data-action": action, title: d.detail || "" },
          h("time", { datetime: d.created_at || "" }, fmtTime(d.created_at)),
          " ",
          h("strong", { class: action === "buy" ? "up" : action === "sell" ? "down" : "" }, t(`action_${action}`)),
          " ",
          h("span", { class: "muted" }, parts.join(" · ")),
          reason ? h("span", { class: "reason" }, ` — ${reason}`) : null,
          d.order_state ? h("span", { class: `state state-${d.order_state}` }, ` (${t(`state_${d.order_state}`)})`) : null,
        );
      }),
    );
  }
}

// ---- order forms ---------------------------------------------------------------------------------------------
function parseAmount(raw) {
  // Accept the locale's grouping ("1,000,000" / "1.000.000" in some locales) and a dot or comma decimal.
  let s = String(raw || "").trim().replace(/\s|_/g, "");
  if (!s) return NaN;
  const lastComma = s.lastIndexOf(",");
  const lastDot = s.lastIndexOf(".");
  if (lastComma > lastDot && s.length - lastComma - 1 !== 3) s = s.replace(/\./g, "").replace(",", ".");
  else s = s.replace(/,/g, "");
  return /^\d*\.?\d+$/.test(s) || /^\d+\.?$/.test(s) ? Number(s) : NaN;
}

function decimalString(raw) {
  const n = parseAmount(raw);
  if (!Number.isFinite(n) || n <= 0) return null;
  // Keep the user's digits (no float rounding): normalise separators only.
  let s = String(raw).trim().replace(/\s|_/g, "");
  const lastComma = s.lastIndexOf(",");
  const lastDot = s.lastIndexOf(".");
  if (lastComma > lastDot && s.length - lastComma - 1 !== 3) s = s.replace(/\./g, "").replace(",", ".");
  else s = s.replace(/,/g, "");
  return s;
}

function localInputToIso(value) {
  if (!value) return null;
  const d = new Date(value); // datetime-local is the browser's local time
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

function toLocalInput(d) {
  const pad = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export class OrderForms {
  constructor({ getMarket, getPrice, assets, afterAction }) {
    this.getMarket = getMarket;
    this.getPrice = getPrice;
    this.assets = assets;
    this.afterAction = afterAction;
    this._tabs();
    this._wire("#form-buy", (f) => this._buy(f));
    this._wire("#form-sell", (f) => this._sell(f));
    this._wire("#form-limit", (f) => this._limit(f));
    this._wire("#form-scheduled", (f) => this._scheduled(f));
    $$("[data-fill]").forEach((b) =>
      b.addEventListener("click", () => {
        $(`#${b.dataset.fill}`).value = b.dataset.value;
        this.clearErrors(b.closest("form"));
      }),
    );
    $$("[data-fraction]").forEach((b) =>
      b.addEventListener("click", () => {
        this.clearErrors(b.closest("form"));
        const avail = this.assets.available(this.getMarket().split("-")[1]);
        const v = Math.floor(avail * num(b.dataset.fraction) * 1e8) / 1e8;
        $("#sell-volume").value = v > 0 ? v.toFixed(8) : "";
      }),
    );
    const trig = $("#sched-trigger");
    trig.addEventListener("change", () => {
      const time = trig.value === "time";
      $(".trigger-time").hidden = !time;
      $(".trigger-price").hidden = time;
    });
    $$('#form-scheduled input[name="side"]').forEach((r) =>
      r.addEventListener("change", () => setText($("#sched-amount-unit"), r.value === "bid" && r.checked ? "KRW" : this.getMarket().split("-")[1])),
    );
    const at = $("#sched-at");
    at.value = toLocalInput(new Date(Date.now() + 60000));
    const updTotal = () => {
      const p = parseAmount($("#limit-price").value);
      const v = parseAmount($("#limit-volume").value);
      setText($("#limit-total"), Number.isFinite(p * v) && p * v > 0 ? `= ${fmtKRW(p * v)} KRW` : "");
    };
    $("#limit-price").addEventListener("input", updTotal);
    $("#limit-volume").addEventListener("input", updTotal);
    // Another action succeeded elsewhere on the page (an order cancelled, ...): old refusals are history.
    document.addEventListener(ACTION_DONE, () => this.clearErrors());
  }

  /** Empty the error line of one order form, or of all of them: an error stays only while it is true. */
  clearErrors(form = null) {
    $$(".order-form").forEach((f) => {
      if (!form || f === form) {
        const err = $(".form-error", f);
        if (err) err.textContent = "";
      }
    });
  }

  _tabs() {
    const tabs = $$('[role="tab"]');
    const select = (tab, focus) => {
      for (const other of tabs) {
        const on = other === tab;
        other.setAttribute("aria-selected", String(on));
        other.tabIndex = on ? 0 : -1;
        $(`#${other.getAttribute("aria-controls")}`).hidden = !on;
      }
      this.clearErrors(); // an error belongs to the form it was shown on, not to the next visit
      if (focus) tab.focus();
    };
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => select(tab, false));
      tab.addEventListener("keydown", (e) => {
        let j = null;
        if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
        else if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
        else if (e.key === "Home") j = 0;
        else if (e.key === "End") j = tabs.length - 1;
        if (j !== null) {
          e.preventDefault();
          select(tabs[j], true);
        }
      });
    });
    this.selectTab = (id) => select($(`#${id}`), false);
  }

  _wire(sel, handler) {
    const form = $(sel);
    // Editing the form makes its last refusal (e.g. a price off the tick) out of date.
    form.addEventListener("input", () => this.clearErrors(form));
    form.addEventListener("change", () => this.clearErrors(form));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const err = $(".form-error", form);
      err.textContent = "";
      const btn = $('button[type="submit"]', form);
      btn.disabled = true;
      // One key per submitted form content: a double click or a retry of the same request is placed once.
      const sig = JSON.stringify(Array.from(new FormData(form).entries())) + this.getMarket();
      if (form._sig !== sig) {
        form._sig = sig;
        form._key = idempotencyKey();
      }
      try {
        const msg = await handler(form, form._key);
        form._sig = null;
        if (msg) toast(msg);
        form.reset();
        if (sel === "#form-scheduled") {
          $("#sched-at").value = toLocalInput(new Date(Date.now() + 60000));
          // reset() puts the select and radios back without their change events: show the fields they imply.
          $("#sched-trigger").dispatchEvent(new Event("change"));
          $('#form-scheduled input[name="side"]:checked').dispatchEvent(new Event("change"));
        }
        document.dispatchEvent(new CustomEvent(ACTION_DONE));
        this.afterAction();
      } catch (e2) {
        err.textContent = e2.message;
        // Refused by the server: nothing was placed, a corrected form gets a fresh key. A network error or
        // timeout keeps the key, so pressing the button again cannot place the order twice.
        if (e2 instanceof ApiError && e2.status >= 400) form._sig = null;
      } finally {
        btn.disabled = false;
      }
    });
  }

  _need(value, message) {
    if (value === null || value === undefined || value === "") throw new ApiError(message || t("invalid_amount"), 0, "client");
    return value;
  }

  async _buy(form) {
    const amount = this._need(decimalString($("#buy-amount").value));
    await api("buy", { method: "POST", body: { market: this.getMarket(), amount_krw: amount, client_order_id: form._key }, headers: { "Idempotency-Key": form._key } });
    return t("order_sent");
  }

  async _sell(form) {
    const volume = this._need(decimalString($("#sell-volume").value));
    await api("sell", { method: "POST", body: { market: this.getMarket(), volume, client_order_id: form._key }, headers: { "Idempotency-Key": form._key } });
    return t("order_sent");
  }

  async _limit(form) {
    const side = $('input[name="side"]:checked', form).value;
    const price = this._need(decimalString($("#limit-price").value));
    const volume = this._need(decimalString($("#limit-volume").value));
    await api("limit", { method: "POST", body: { market: this.getMarket(), side, price, volume, client_order_id: form._key }, headers: { "Idempotency-Key": form._key } });
    return t("order_sent");
  }

  async _scheduled(form) {
    const side = $('input[name="side"]:checked', form).value;
    const amount = this._need(decimalString($("#sched-amount").value));
    const trigger = $("#sched-trigger").value;
    const body = {
      market: this.getMarket(),
      side,
      ord_type: side === "bid" ? "price" : "market",
      price: side === "bid" ? amount : null,
      volume: side === "ask" ? amount : null,
      trigger_type: trigger,
      client_order_id: form._key,
    };
    if (trigger === "time") {
      const at = localInputToIso($("#sched-at").value);
      if (!at || new Date(at) <= new Date()) throw new ApiError(t("invalid_time"), 0, "client");
      body.trigger_at = at;
    } else {
      body.trigger_price = this._need(decimalString($("#sched-price").value));
    }
    const exp = localInputToIso($("#sched-expires").value);
    if (exp) body.expires_at = exp;
    await api("scheduled", { method: "POST", body, headers: { "Idempotency-Key": form._key } });
    return t("scheduled_created");
  }

  pickPrice(price) {
    $("#limit-price").value = String(price);
    this.clearErrors($("#form-limit"));
    this.selectTab("tab-limit");
    $("#limit-volume").focus();
  }

  onMarket() {
    this.clearErrors(); // a tick size or a balance refused on the last market says nothing about this one
    $$(".coin-sym").forEach((el) => setText(el, this.getMarket().split("-")[1]));
  }
}

// The trade dashboard: wires the live sockets (market + user) to the panels, and the forms to the REST API.
// Live data only arrives over WebSockets; REST is used for the first load, to re-sync after a reconnect
// (the channel layer delivers at most once) and for actions.

import { OrderBookView } from "./book.js";
import { PriceChart } from "./chart.js";
import { LiveSocket, wsUrl } from "./socket.js";
import { TradeTape } from "./tape.js";
import { AssetsPanel, AutoPanel, OrdersPanel, OrderForms } from "./panels.js";
import {
  $,
  $$,
  api,
  config,
  debounce,
  dirClass,
  fmtVolume,
  fmtKRW,
  fmtPct,
  fmtPrice,
  fmtDate,
  h,
  listOf,
  num,
  setText,
  t,
  toast,
} from "./util.js";

const params = new URLSearchParams(location.search);
// Benchmark switches (bench/bench_dashboard.py): "none" = no order-book painting, "ladder" = no depth chart.
const renderMode = params.get("bench_render") || "full";

const state = {
  market: config.market || "KRW-BTC",
  lastMarketData: 0,
  ticker: null,
  stale: false,
  snapshotStale: false,
  range: "live",
};
const stats = { pageStart: performance.now(), bookUpdates: 0, bookPaints: 0, firstBookPaint: 0, firstBookData: 0, frames: 0 };

// ---- connection status -----------------------------------------------------------------------------
const connEl = $("#conn");
const connText = $(".conn-text", connEl);
let countdownTimer = null;
function showConn(sockState, info = {}) {
  clearInterval(countdownTimer);
  if (connEl.dataset.session === "expired") {
    // Market data is public and may still flow, but this page's account view is dead until a new login.
    connEl.dataset.state = "refused";
    setText(connText, t("session_expired"));
    return;
  }
  connEl.dataset.state = sockState;
  if (sockState === "open") setText(connText, t("live"));
  else if (sockState === "connecting") setText(connText, t("connecting"));
  else if (sockState === "offline") setText(connText, t("offline"));
  else if (sockState === "refused") setText(connText, info.code === 4401 || info.code === 4403 ? t("session_expired") : t("error_unavailable"));
  else if (sockState === "reconnecting") {
    if (info.retryAt) {
      const tick = () => {
        const s = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
        setText(connText, s > 0 ? t("reconnecting", { s }) : t("reconnecting_now"));
      };
      tick();
      countdownTimer = setInterval(tick, 500);
    } else setText(connText, t("reconnecting_now"));
  }
}

// ---- price panel -----------------------------------------------------------------------------------
const priceEls = {
  now: $("#price-now"),
  change: $("#price-change"),
  high: $("#price-high"),
  low: $("#price-low"),
  prev: $("#price-prev"),
  vol: $("#price-vol"),
  market: $("#price-market"),
};
let lastAnnounced = 0;
function renderTicker(tk) {
  if (!tk || tk.market !== state.market) return;
  state.ticker = tk;
  const cls = dirClass(tk.change_price ?? (tk.change === "RISE" ? 1 : tk.change === "FALL" ? -1 : 0));
  const priceText = fmtPrice(tk.price);
  // aria-live: announce the price at most every 5 s, not on every tick.
  const now = Date.now();
  if (now - lastAnnounced > 5000 || priceEls.now.textContent === "–") {
    priceEls.now.setAttribute("aria-live", "polite");
    lastAnnounced = now;
  } else priceEls.now.setAttribute("aria-live", "off");
  setText(priceEls.now, priceText);
  priceEls.now.className = `price-now ${cls}`;
  const arrow = cls === "up" ? "▲" : cls === "down" ? "▼" : "";
  setText(priceEls.change, `${arrow} ${fmtPrice(Math.abs(num(tk.change_price)))} (${fmtPct(tk.change_rate)})`.trim());
  priceEls.change.className = `price-change ${cls}`;
  setText(priceEls.high, fmtPrice(tk.high));
  setText(priceEls.low, fmtPrice(tk.low));
  setText(priceEls.prev, fmtPrice(tk.prev_close));
  setText(priceEls.vol, `${fmtVolume(tk.volume_24h)} ${coin()}`);
  document.title = `${priceText} ${state.market} · OBservator`;
  assets.onPrice(state.market, num(tk.price));
}

function coin(market = state.market) {
  return market.split("-")[1] || market;
}

// ---- panels ------------------------------------------------------------------------------------------
const book =
  renderMode === "none"
    ? { update: (b) => { stats.bookUpdates++; if (!stats.firstBookData) stats.firstBookData = performance.now(); void b; }, clear() {} }
    : new OrderBookView({
        asksBody: $("#ladder-asks"),
        midBody: $("#ladder-mid"),
        bidsBody: $("#ladder-bids"),
        canvas: $("#depth"),
        spreadEl: $("#book-spread"),
        depth: renderMode !== "ladder",
        stats,
        onPick: (price) => forms.pickPrice(price),
      });
const tape = new TradeTape($("#tape-body"));
const chart = new PriceChart($("#chart"), $("#chart-note"));
const assets = new AssetsPanel({ coin });
const orders = new OrdersPanel();
const auto = new AutoPanel({ getMarket: () => state.market, chart });
const forms = new OrderForms({
  getMarket: () => state.market,
  getPrice: () => (state.ticker ? num(state.ticker.price) : NaN),
  assets,
  afterAction: () => refreshUser(),
});

// ---- market socket -----------------------------------------------------------------------------------
function onMarketMessage(msg) {
  if (!msg || typeof msg !== "object") return;
  if (msg.market && msg.market !== state.market) return; // a frame of the previous market still in flight
  const data = msg.data || {};
  switch (msg.type) {
    case "snapshot":
      state.snapshotStale = !!data.stale;
      if (data.orderbook) book.update(data.orderbook);
      else book.clear();
      if (data.ticker) renderTicker(data.ticker);
      tape.replace(data.trades || []);
      if (data.trades && data.trades.length) chart.seedLive(data.trades, { merge: true });
      if (data.prediction) auto.onPrediction(data.prediction);
      if (data.orderbook || data.ticker) markData(data.updated_at);
      updateStale();
      break;
    case "orderbook":
      if (!stats.firstBookData) stats.firstBookData = performance.now();
      book.update(data);
      markData();
      break;
    case "trade": {
      const trades = data.trades || [];
      tape.add(trades);
      for (const tr of trades) chart.addLive(tr.ts, tr.price);
      markData();
      break;
    }
    case "ticker":
      renderTicker(data);
      chart.addLive(data.ts || Date.now(), data.price);
      markData();
      break;
    case "prediction":
      auto.onPrediction(data);
      break;
    case "error":
      if (data.message) toast(data.message, "error");
      break;
    default:
      break;
  }
}

function markData(ts) {
  state.lastMarketData = Date.now();
  if (ts && num(ts) < Date.now() - config.stale_after_s * 1000) state.lastMarketData = num(ts);
  state.snapshotStale = false;
  updateStale();
}

const staleEl = $("#stale-notice");
function updateStale() {
  const age = state.lastMarketData ? (Date.now() - state.lastMarketData) / 1000 : Infinity;
  const open = marketSocket.state === "open";
  const stale = open && (state.snapshotStale || age > config.stale_after_s);
  document.body.classList.toggle("market-stale", stale);
  if (stale) {
    staleEl.hidden = false;
    const s = Number.isFinite(age) ? Math.round(age) : config.stale_after_s;
    setText(staleEl, t("stale", { s }));
  } else if (!staleEl.hidden) {
    staleEl.hidden = true;
  }
  state.stale = stale;
}
setInterval(updateStale, 1000);

const marketSocket = new LiveSocket(() => wsUrl(config.ws.market.replace("{code}", encodeURIComponent(state.market))), {
  onMessage: onMarketMessage,
  onState: (s, info) => {
    showConn(s, info);
    updateStale();
  },
  onOpen: (reconnected) => {
    // The server answers every (re)subscribe with a snapshot; account data may have moved meanwhile.
    if (reconnected) {
      refreshUser();
      loadCandles();
      loadLiveSeed();
    }
  },
});

// ---- user socket (orders, balances, auto-trading decisions) --------------------------------------------
const refreshUser = debounce(() => {
  assets.load();
  orders.load();
  auto.load();
}, 250);

// Frames: {"type": kind, "data": {...}} with the kinds and fields of trading/messages.py and
// autotrade/messages.py (docs/architecture.md).
function onUserMessage(msg) {
  if (!msg || typeof msg !== "object" || typeof msg.type !== "string") return;
  const kind = msg.type;
  const data = msg.data || {};
  if (kind === "pong" || kind === "error") return;
  if (kind === "hello") {
    // Sent on every (re)connect: what was pushed while away is lost, so re-read the account state.
    if (userSocket.connects > 1) refreshUser();
    return;
  }
  if (kind.startsWith("auto_")) {
    auto.onEvent(kind, data);
    if (kind === "auto_decision" && data.decision && !["hold", "skip"].includes(data.decision.action)) {
      assets.load();
      orders.load();
    }
    return;
  }
  if (kind === "order" || kind === "scheduled_order") {
    orders.onEvent(kind, data);
    assets.loadSoon();
    return;
  }
  if (kind === "mode") {
    assets.load();
    return;
  }
  refreshUser();
}

let sessionNoticeShown = false;
const userSocket = new LiveSocket(() => wsUrl(config.ws.user), {
  onMessage: onUserMessage,
  pingEvery: 25000,
  // 4401: the session is gone (deleted server-side, logged out elsewhere, expired); the server re-checks it
  // every few seconds on an open socket. Retrying cannot help, only logging in again: stop, say so once.
  stopOn: [4401],
  onState: (s, info) => {
    if (s === "refused" && info.code === 4401) {
      connEl.dataset.session = "expired";
      showConn("refused", info);
    }
    if (s === "refused" && info.code === 4401 && !sessionNoticeShown) {
      sessionNoticeShown = true;
      const notice = h("div", { class: "notice notice-warning", role: "alert", "data-testid": "session-notice" },
        t("session_expired"), " ", h("a", { href: `/login?next=${encodeURIComponent(location.pathname + location.search)}` }, t("log_in")));
      staleEl.after(notice);
    }
  },
  onOpen: (reconnected) => {
    if (reconnected) refreshUser();
  },
});

// ---- market picker -------------------------------------------------------------------------------------
const select = $("#market-select");
async function loadMarkets() {
  try {
    const markets = listOf(await api("markets")).filter((m) => String(m.market).startsWith("KRW-"));
    if (!markets.length) return;
    const ko = (config.language || "").startsWith("ko");
    const opts = markets.map((m) =>
      h("option", { value: m.market, selected: m.market === state.market }, `${ko ? m.korean_name : m.english_name} · ${m.market}`),
    );
    if (!markets.some((m) => m.market === state.market)) opts.unshift(h("option", { value: state.market, selected: true }, state.market));
    select.replaceChildren(...opts);
  } catch (e) {
    /* the picker keeps the current market; the error is not worth a toast */
  }
}

function switchMarket(market) {
  if (!market || market === state.market) return;
  state.market = market;
  state.ticker = null;
  state.lastMarketData = 0;
  state.snapshotStale = true;
  const url = new URL(location.href);
  url.searchParams.set("market", market);
  history.replaceState(null, "", url);
  setText(priceEls.market, market);
  for (const el of [priceEls.now, priceEls.change, priceEls.high, priceEls.low, priceEls.prev, priceEls.vol]) setText(el, "–");
  $$(".coin-sym").forEach((el) => setText(el, coin()));
  book.clear();
  tape.replace([]);
  chart.seedLive([]);
  chart.setPrediction(null);
  auto.onMarket(market);
  forms.onMarket(market);
  if (!marketSocket.send({ type: "subscribe", data: { market } })) marketSocket.reconnectNow();
  loadCandles();
  loadLiveSeed();
  loadExchanges();
  toast(t("market_changed", { m: market }));
}
select.addEventListener("change", () => switchMarket(select.value));
$("#market-form").addEventListener("submit", (e) => {
  e.preventDefault();
  switchMarket(select.value);
});

// ---- chart ranges and candles ----------------------------------------------------------------------------
const RANGE_INTERVAL = { "1d": "1d", "1w": "1w", "1m": "1M", "3m": "3M" };

/** The live line's history: the last minutes' 1-minute closes, then one point per second from the socket. */
async function loadLiveSeed() {
  const market = state.market;
  try {
    const data = await api("candles", { params: { code: market }, query: { interval: "1m" } });
    if (market !== state.market) return;
    const points = listOf(data, "candles").slice(-15).map((c) => ({ ts: num(c.time) * 1000, price: num(c.close) }));
    chart.seedLive(points, { merge: true });
  } catch {
    /* the live line still fills from the socket */
  }
}
let candleReq = 0;
async function loadCandles() {
  if (state.range === "live") return;
  const req = ++candleReq;
  try {
    const data = await api("candles", { params: { code: state.market }, query: { interval: RANGE_INTERVAL[state.range] } });
    if (req !== candleReq) return;
    chart.setCandles(listOf(data, "candles").map((c) => ({ time: num(c.time), open: num(c.open), high: num(c.high), low: num(c.low), close: num(c.close) })));
    setText($("#chart-note"), data.description || "");
  } catch (e) {
    if (req === candleReq) toast(e.message, "error");
  }
}
$$("#chart-ranges button").forEach((btn) =>
  btn.addEventListener("click", () => {
    state.range = btn.dataset.range;
    $$("#chart-ranges button").forEach((b) => b.setAttribute("aria-pressed", String(b === btn)));
    chart.setMode(state.range === "live" ? "live" : "candles");
    loadCandles();
  }),
);

// ---- other exchanges ------------------------------------------------------------------------------------
async function loadExchanges() {
  const body = $("#exchanges-body");
  try {
    const data = await api("exchanges");
    const rows = listOf(data, "exchanges").map((x) => {
      const premium = num(x.premium_pct);
      const staleMark = x.stale ? h("span", { class: "badge badge-stale", title: fmtDate(x.as_of) }, t("stale_short")) : null;
      return h(
        "tr",
        { class: x.stale ? "is-stale" : null, "data-exchange": x.exchange },
        h("th", { scope: "row" }, x.name || x.exchange, " ", staleMark),
        h("td", { class: "num" }, x.price_krw ? fmtKRW(x.price_krw) : "–"),
        h("td", { class: `num ${dirClass(premium)}` }, Number.isFinite(premium) ? fmtPct(premium / 100) : "–"),
      );
    });
    const upbit = data.upbit || {};
    rows.unshift(h("tr", { class: "upbit" }, h("th", { scope: "row" }, "Upbit ", h("span", { class: "muted" }, "BTC")), h("td", { class: "num" }, upbit.price ? fmtKRW(upbit.price) : "–"), h("td", { class: "num muted" }, "")));
    body.replaceChildren(...rows);
    const fx = data.fx || {};
    const fxNote = fx.usd_krw ? t("fx_note", { rate: fmtKRW(fx.usd_krw), source: fx.source }) : t("fx_source", { source: fx.source });
    setText($("#fx-source"), fx.source ? `${fxNote}${fx.stale ? ` (${t("stale_short")})` : ""}` : "");
  } catch (e) {
    body.replaceChildren(h("tr", null, h("td", { colspan: 3, class: "muted" }, e.message)));
  }
}

// ---- news -----------------------------------------------------------------------------------------------
async function loadNews() {
  const list = $("#news-list");
  try {
    const items = listOf(await api("news", { query: { limit: 12 } }));
    if (!items.length) {
      list.replaceChildren(h("li", { class: "muted" }, t("no_news")));
      return;
    }
    list.replaceChildren(
      ...items.map((n) =>
        h(
          "li",
          null,
          h("a", { href: n.link, target: "_blank", rel: "noopener noreferrer" }, n.title),
          h("span", { class: "news-meta muted" }, [n.source, fmtDate(n.published_at)].filter(Boolean).join(" · ")),
        ),
      ),
    );
  } catch (e) {
    list.replaceChildren(h("li", { class: "muted" }, e.message));
  }
}

// ---- start ------------------------------------------------------------------------------------------------
$$(".coin-sym").forEach((el) => setText(el, coin()));
marketSocket.connect();
userSocket.connect();
chart.init(config.vendor_chart).then(loadLiveSeed);
loadMarkets();
loadExchanges();
loadNews();
assets.load();
orders.load();
auto.load();
// Slow-moving, REST-only data (other exchanges' prices are cached server-side ~10 s; news every few
// minutes). Not the live feed: that is the WebSocket above.
setInterval(loadExchanges, 30000);
setInterval(loadNews, 300000);

// Exposed for the end-to-end tests and the benchmark (frame counting, socket drop).
window.__trade = { state, stats, marketSocket, userSocket, book, tape, chart, assets, orders, auto, forms, version: 1 };

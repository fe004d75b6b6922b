"""Synthetic order-book source: a seeded, reproducible stochastic limit-order-book model per market.

The model is queue-reactive with self-exciting (Hawkes) market orders, on Upbit's KRW tick grid:

* each side holds ``depth_ticks`` consecutive grid prices from the best quote outwards (gaps allowed: the
  published book is the first 30 *non-empty* prices, as on Upbit);
* limit orders arrive at tick distance ``i`` from the *opposite* best with rate ``limit_rate * w_i``
  (``w_i ~ exp(-level_decay * i)``) and exponential sizes (Cont-Stoikov-Talreja): with a one-tick spread that
  is distance ``i - 1`` from their own best; when a sweep opens a gap, the nearest distances lie inside it,
  so the gap refills at a rate that grows with its width. (Drawing the distance from the order's *own* best,
  as before issue 12, left nothing to close a gap but the spread-fill flow: at ``D < 1`` the KRW-BTC spread
  grew without bound, 12,000 ticks after 30 minutes.)
* cancellations hit a queue with rate proportional to its size (``cancel_rate`` per mean-sized queue);
* market buys/sells arrive with Hawkes intensity ``mu + sum alpha*exp(-beta*(t - t_k))`` (self- and
  cross-excitation), tilted by the best-level queue imbalance (a heavier bid queue attracts buyers), with
  heavy-tailed sizes; they walk the book level by level, one public trade per price level;
* when the best queue is emptied (by trades or cancels) the best price moves one non-empty level away; when
  the spread is wider than one tick, orders arrive inside it. So order-flow imbalance at the best
  (market orders + cancels on one side, arrivals on the other) is what moves the mid.

Volatility calibration. Left alone, this dynamics moves the mid by ~17 *ticks* per minute in every
market, which is 0.01 %/min for KRW-BTC (tick 1,000 at 150M KRW: a flat chart) and 0.5-5 %/min for coins
whose tick is a large fraction of the price. Real KRW markets move ~0.03-0.06 % per minute whatever their
tick, so each market gets a target ``target_vol`` (std of one-minute log mid returns, default 0.045 %) and
the model reaches it through its own order flow, with one knob, the depth scale ``D`` (resting liquidity
relative to the takers' market orders, which keep their KRW size):

* ``D < 1`` (small tick relative to the target, e.g. KRW-BTC, D ~ 0.2): queues *and* limit/cancel orders
  shrink by ``D``, so a market-order burst clears several ticks and the best is depleted more often;
* ``D > 1`` (large tick, e.g. KRW-ETH, KRW-XRP, 300-KRW coins): queues deepen by ``D`` while limit/cancel
  orders grow by ``sqrt(D)`` only (more orders per queue), so the best is depleted rarely and the mid steps
  a tick now and then. Takers take at most the best queue (selective liquidity taking: on a large-tick book
  market orders rarely walk past the best, Farmer et al. 2004), so the mid moves one level at a time. Until
  issue 12 §3 a heavy-tailed market order could sweep up to 10 deep levels: a single order of ~900 mean
  queues moved KRW-DOGE's mid 6.5 ticks, and such rare sweeps made its 6-hour volatility 0.9-2.4x the
  target, seed to seed.

Event rates are unchanged by ``D`` (throughput and trade counts stay the same). The needed ticks per minute,
``target_vol * price / tick``, are mapped to ``D`` by log-log interpolation of ``_VOL_CALIBRATION``: the
realised std of one-minute mid changes in ticks, measured with the default parameters. D <= 1: 3 seeds x
2-7 simulated hours each on KRW-BTC (re-checked after the issue-12 change within the noise of one hour).
D > 1: re-measured after selective taking by ``market.upbit_sim.calibration.calibration_point`` (KRW-XRP,
3-4 seeds pooled; ``python bench/bench_sim_stationarity.py --calibrate D:HOURS,...``). Long-run figures per
price class (spread, volatility over target, depth stability, 3 seeds): docs/simulator.md, from
``bench/bench_sim_stationarity.py``. ``SyntheticParams(depth_scale=...)`` sets ``D`` directly;
``activity`` scaling (many markets) scales volatility by ``sqrt(activity)``.

Signal strength (``signal_strength``, 0 = off: the dynamics above, stream unchanged). At 1, the demo's
default, the planted signal is **announced jumps**: every ~``signal_jump_every`` = 15 s (exponential gaps)
a wall of ``signal_jump_wall`` = 10 mean queues stands on 6 ticks from ``signal_jump_depth`` behind the best
on one side for ``signal_jump_lean`` = 0.4 s, and ``signal_jump_lead`` = 5 s after it the whole book
re-prices by ``strength * signal_jump_size`` (0.3 % of the price) that way. By the jump the wall is gone:
the newest book does not show it, the book's history of the last seconds does, so a model that reads a
window of books covering the lead (the LSTM) can predict the 5-s move and a model of the newest book
(ridge-OFI, GBT) cannot. Each jump is 3x Upbit's round-trip fee; KRW-BTC's one-minute volatility rises to
~0.5 % (the jumps dominate it; figures: docs/simulator.md). A second, older planted signal is off by
default: a latent drift ``x`` (unit Ornstein-Uhlenbeck, time scale ``signal_tau``) that tilts the takers
(``strength * signal_taker * x``) and limit orders two or more ticks behind the best (``strength *
signal_book * x``); ``signal_lag`` makes the takers act on the drift as it was that long ago. On it a
ridge on the newest book's imbalance reads the drift as well as any model, so no LSTM passed the gate
(docs/simulator.md keeps the measurements).

Randomness comes from ``numpy.random.Generator`` (PCG64) seeded per market from ``(seed, market)``: the
same seed and market give the same stream regardless of which other markets run.

Fast path for tests/benchmarks: :meth:`SyntheticMarket.generate` records the book after every event into
numpy arrays (well over 50k books/s); :class:`SyntheticSource` paces the model for the server.
"""

from __future__ import annotations

import bisect
import math
import zlib
from dataclasses import dataclass, replace

import numpy as np

from market.dayfiles import BookArrays, TradeArrays
from market.upbit.protocol import KRW_TICK_TABLE

from .source import BookSnapshot, MarketUpdate, SequenceIds, TradeTick

NANO = 10**8  # prices are held as integer multiples of 1e-8 KRW: exact tick arithmetic
_BANDS = [(int(lo * NANO), int(t * NANO)) for lo, t in KRW_TICK_TABLE]

# Plausible starting prices (KRW) for common markets; others start at 10,000 KRW.
DEFAULT_PRICES = {
    "KRW-BTC": 150_000_000.0,
    "KRW-ETH": 5_000_000.0,
    "KRW-XRP": 3_000.0,
    "KRW-SOL": 250_000.0,
    "KRW-ADA": 1_000.0,
    "KRW-DOGE": 300.0,
}


def _tick_up(p: int) -> int:
    """Tick to the next price above ``p`` (the band of ``p`` itself)."""
    for lo, t in _BANDS:
        if p >= lo:
            return t
    return _BANDS[-1][1]


def _tick_down(p: int) -> int:
    """Tick to the next price below ``p`` (the band just below ``p``)."""
    return _tick_up(p - 1)


def _snap(p: int) -> int:
    t = _tick_up(p)
    return max(t, p - p % t)


# Calibration (module docstring): depth scale D -> realised std of one-minute mid changes, in ticks, measured
# with the default parameters. D <= 1: KRW-BTC, 3 seeds x 2-7 simulated hours each. D > 1: re-measured after
# selective taking (issue 12 §3) by calibration.calibration_point, KRW-XRP, 3 seeds pooled, 1 h each up to
# D = 40, 2 h at 60, 4 h at 150 (at D = 250 the mid did not move in 12 h); D = 70-100 (where the sub-10 KRW
# coin and KRW-DOGE sit) 24 h x seeds 7-10 each (218 / 107 / 62 / 42 minutes moved); the old 70/90/100 rows
# rested on 48 / 22 / 4 moves, put KRW-DOGE at D = 85 (really ~0.87 x target there) and its soak at ~0.8x.
_VOL_CALIBRATION = (
    (0.1, 108.6), (0.15, 87.3), (0.2, 67.0), (0.3, 49.7), (0.5, 32.5), (0.7, 24.4), (1.0, 16.5),
    (1.5, 6.31), (3.0, 4.12), (5.0, 3.52), (10.0, 1.94), (20.0, 1.19), (40.0, 0.543), (60.0, 0.298),
    (70.0, 0.195), (80.0, 0.136), (90.0, 0.104), (100.0, 0.0854), (150.0, 0.0645),
)  # fmt: skip
_CAL_LOG_D = np.log([d for d, _ in _VOL_CALIBRATION])[::-1]
_CAL_LOG_TICKS = np.log([v for _, v in _VOL_CALIBRATION])[::-1]  # ascending, as np.interp needs


def depth_scale_for(*, target_vol: float, price: float, tick: float) -> float:
    """Depth scale D giving one-minute mid volatility ``target_vol`` (a fraction of the price) for a market
    whose tick is ``tick`` at ``price``: log-log interpolation of the calibration table (clamped to it)."""
    ticks_per_min = max(1e-9, float(target_vol) * price / tick)
    return float(np.exp(np.interp(np.log(ticks_per_min), _CAL_LOG_TICKS, _CAL_LOG_D)))


@dataclass(frozen=True)
class SyntheticParams:
    levels: int = 30  # published levels per side
    depth_ticks: int = 60  # ticks tracked per side (>= levels; empty ticks make gaps)
    start_price: float = 0.0  # 0 = DEFAULT_PRICES / 10,000
    level_krw: float = 20_000_000.0  # mean KRW notional of a queue near the best
    limit_rate: float = 80.0  # limit arrivals per second per side (all ticks)
    level_decay: float = 0.05
    cancel_rate: float = 2.5  # cancels per second of a mean-sized queue
    limit_size: float = 0.35  # mean limit/cancel size, fraction of the mean queue
    market_rate: float = 3.0  # Hawkes baseline per side, per second
    hawkes_alpha: float = 0.8  # self-excitation jump
    hawkes_cross: float = 0.2  # cross-excitation jump
    hawkes_beta: float = 2.5  # decay per second (branching ratio (alpha+cross)/beta < 1)
    imbalance_feedback: float = 0.6  # tilt of buy/sell intensity by best-queue imbalance
    market_size: float = 0.6  # mean market order size, fraction of the mean queue
    market_tail: float = 2.2  # Pareto shape of market order sizes (heavy tail: occasional sweeps)
    spread_fill_rate: float = 12.0  # per side, per second, while the spread is wider than one tick
    empty_tick_prob: float = 0.15  # a newly exposed deep tick starts empty with this probability
    target_vol: float = 0.00045  # target std of one-minute log mid returns (0.045 %/min; see module doc)
    depth_scale: float = 0.0  # queue depth multiplier; 0 = derived from target_vol, tick and price
    # Planted, predictable order flow (module doc, "Signal strength"): 0 = off, 1 = the demo's default.
    signal_strength: float = 0.0
    # Announced jumps (the demo's signal, on whenever ``signal_strength`` > 0 and ``signal_jump_every`` > 0):
    # every ~``signal_jump_every`` s (exponential gaps) a wall of ``signal_jump_wall`` x the mean queue
    # appears on 6 ticks from ``signal_jump_depth`` behind the best on one side (bids before a rise) and is
    # withdrawn after ``signal_jump_lean`` s; ``signal_jump_lead`` s after that announcement the whole book
    # re-prices by ``signal_strength * signal_jump_size`` of the price that way. By the jump the wall is
    # gone: the newest book does not show it, the book's recent history does.
    signal_jump_every: float = 15.0  # seconds; 0 = no jumps
    signal_jump_lead: float = 5.0  # seconds from the announcement to the jump
    signal_jump_lean: float = 0.4  # seconds the wall stands
    signal_jump_size: float = 0.003  # fraction of the price at strength 1
    signal_jump_depth: int = 3  # ticks behind the best where the wall starts
    signal_jump_wall: float = 10.0  # wall size per tick, in mean queues at that tick
    # The older drift signal (off by default): with ``x`` a unit Ornstein-Uhlenbeck process of time scale
    # ``signal_tau``, takers lean by ``signal_strength * signal_taker * x`` and limit orders behind the best
    # by ``... * signal_book * x``; ``signal_lag``: takers act on the drift as it was this long ago.
    signal_tau: float = 60.0  # seconds
    signal_taker: float = 0.0  # was 0.02 before the jumps became the demo's signal
    signal_book: float = 0.0  # was 0.9
    signal_lag: float = 0.0  # seconds

    def scaled(self, activity: float) -> SyntheticParams:
        """The same market on a time scale ``activity`` times faster (all rates and the Hawkes decay)."""
        k = float(activity)
        return replace(
            self,
            limit_rate=self.limit_rate * k,
            cancel_rate=self.cancel_rate * k,
            market_rate=self.market_rate * k,
            hawkes_alpha=self.hawkes_alpha * k,
            hawkes_cross=self.hawkes_cross * k,
            hawkes_beta=self.hawkes_beta * k,
            spread_fill_rate=self.spread_fill_rate * k,
            signal_tau=self.signal_tau / k,
            signal_lag=self.signal_lag / k,
            signal_jump_every=self.signal_jump_every / k,
            signal_jump_lead=self.signal_jump_lead / k,
            signal_jump_lean=self.signal_jump_lean / k,
        )


@dataclass(frozen=True, slots=True)
class _Consts:
    imbalance: float
    market_rate: float
    lam_lim: float
    cancel_per_unit: float
    lam_spread: float
    neg_beta: float
    limit_size: float
    market_scale: float
    neg_inv_tail: float
    spread_size: float


class SyntheticMarket:
    """One market's order book under the model. Time is model time in ms from ``start_ms``."""

    def __init__(self, code: str, *, seed: int = 1, start_ms: int = 0, params: SyntheticParams | None = None):
        p = params or SyntheticParams()
        if p.depth_ticks < p.levels:
            p = replace(p, depth_ticks=p.levels)
        self.code = code
        self.params = p
        self.start_ms = start_ms
        self.t = 0.0  # seconds of model time
        ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(code.encode())])
        self._rng = np.random.Generator(np.random.PCG64(ss))
        self._buf: list[float] = []
        self._bi = 0
        price = p.start_price or DEFAULT_PRICES.get(code, 10_000.0)
        mid = _snap(int(round(price * NANO)))
        self.best_bid = mid
        self.best_ask = mid + _tick_up(mid)
        self.qmean = p.level_krw / price
        self.depth_scale = p.depth_scale or depth_scale_for(
            target_vol=p.target_vol, price=mid / NANO, tick=_tick_up(mid) / NANO
        )
        # Below 1 the whole resting book shrinks against the takers' orders (sweeps clear more ticks); above
        # 1 queues deepen faster (D) than their orders grow (sqrt D): more, larger orders per queue.
        self._size_scale = self.depth_scale if self.depth_scale <= 1.0 else math.sqrt(self.depth_scale)
        # Large tick (D > 1): takers take at most the best queue (selective liquidity taking), so the mid
        # moves one level at a time; walking a deep book is left to the small-tick regime (module doc).
        self._walk = self.depth_scale <= 1.0
        self._k = _Consts(
            imbalance=p.imbalance_feedback,
            market_rate=p.market_rate,
            lam_lim=2.0 * p.limit_rate,
            cancel_per_unit=p.cancel_rate / (self.qmean * self.depth_scale),
            lam_spread=2.0 * p.spread_fill_rate,
            neg_beta=-p.hawkes_beta,
            limit_size=self.qmean * p.limit_size * self._size_scale,
            market_scale=self.qmean * p.market_size * (p.market_tail - 1.0),
            neg_inv_tail=-1.0 / p.market_tail,
            spread_size=self.qmean * p.limit_size * self._size_scale,
        )
        k = p.depth_ticks
        w = [math.exp(-p.level_decay * i) for i in range(k)]
        tot = sum(w)
        self._cum_w = list(np.cumsum(w) / tot)
        # Stationary mean queue at tick i (arrivals*size = cancels*size): q_i = D * qmean * a_i / cancel_rate.
        self._eq = [self.depth_scale * self.qmean * p.limit_rate * wi / tot / p.cancel_rate for wi in w]
        self.ask_q = [self._draw_level(i) for i in range(k)]
        self.bid_q = [self._draw_level(i) for i in range(k)]
        self.ask_q[0] = max(self.ask_q[0], self._eq[0])
        self.bid_q[0] = max(self.bid_q[0], self._eq[0])
        self._ask_px: list[int] = []
        self._bid_px: list[int] = []
        self._reladder()
        self.e_buy = 0.0
        self.e_sell = 0.0
        self._trades: list[tuple[float, int, float, int]] = []  # (t, price_nano, volume, +1 buy/-1 sell)
        # The latent drift has its own stream: switching it on leaves the main stream's draws in place.
        self._sig_rng = np.random.Generator(np.random.PCG64(ss.spawn(1)[0]))
        self._sig_x = 0.0
        self._sig_t = 0.0
        self._sig_hist: list[float] = []  # past drift values on the 0.25 s grid (signal_lag > 0)
        self.signal = 0.0  # the takers' current tilt: > 0 buyers lead
        self._sig_book = 0.0  # the resting limit orders' tilt: > 0 bids build up
        self._jump_next = math.inf  # model time of the next announcement (set after the burn-in)
        self._jump_at: float | None = None  # model time of the announced jump
        self._jump_side = 0  # +1 up, -1 down
        self._lean_until = -math.inf
        self._lean = 0  # the side of the standing wall: +1 bids, -1 asks, 0 none
        self._wall: list[tuple[int, float]] = []  # (tick behind the best, size added)
        self.jumps = 0
        self.events = 0
        self._next_t: float | None = None
        for _ in range(2000):  # burn-in towards the stationary regime (deterministic)
            self.step()
        self._trades.clear()
        assert self._next_t is not None
        self._next_t -= self.t
        self._sig_t = max(0.0, self._sig_t - self.t)
        self.t = 0.0
        if p.signal_strength and p.signal_jump_every > 0:
            self._jump_next = p.signal_jump_every * float(self._sig_rng.exponential())

    # ------------------------------------------------------------------------------------------ randomness

    def _u(self) -> float:
        if self._bi >= len(self._buf):
            self._buf = self._rng.random(8192).tolist()
            self._bi = 0
        x = self._buf[self._bi]
        self._bi += 1
        return x

    def _exp(self) -> float:
        return -math.log(1.0 - self._u())

    def _draw_level(self, i: int) -> float:
        if i > 0 and self._u() < self.params.empty_tick_prob:
            return 0.0
        return self._eq[min(i, len(self._eq) - 1)] * self._exp()

    # ------------------------------------------------------------------------------------------ price grid

    def _reladder(self) -> None:
        k = self.params.depth_ticks
        ba, bb = self.best_ask, self.best_bid
        t = _tick_up(ba)
        if _tick_up(ba + (k - 1) * t) == t:  # the whole ladder in one tick band: arithmetic
            a = list(range(ba, ba + k * t, t))
        else:
            a = [ba]
            p = ba
            for _ in range(k - 1):
                p += _tick_up(p)
                a.append(p)
        t = _tick_down(bb)
        if bb - k * t > 0 and _tick_down(bb - (k - 1) * t) == t:
            b = list(range(bb, bb - k * t, -t))
        else:
            b = [bb]
            p = bb
            for _ in range(k - 1):
                p = max(1, p - _tick_down(p))
                b.append(p)
        self._ask_px, self._bid_px = a, b
        self._wide = self.best_bid + _tick_up(self.best_bid) < self.best_ask
        # Empty ticks between the quotes (0 with a one-tick spread): ask ladder prices below the best bid's
        # next tick, counted on the grid (exact across a tick-band boundary too).
        gap = 0
        if self._wide:
            p = self.best_bid + _tick_up(self.best_bid)
            gap = (self.best_ask - p) // _tick_up(p)
            if _tick_up(self.best_ask - 1) != _tick_up(p):  # the spread crosses a band: walk it
                gap = 0
                while p < self.best_ask:
                    p += _tick_up(p)
                    gap += 1
        self._gap = gap

    def _improve(self, side_ask: bool, n: int, size: float) -> None:
        """A limit order ``n`` ticks inside the spread from its own best (``n`` <= the gap): a new best
        price; the ticks it jumps over are empty."""
        q = self.ask_q if side_ask else self.bid_q
        p = self.best_ask if side_ask else self.best_bid
        for _ in range(n):
            p = p - _tick_down(p) if side_ask else p + _tick_up(p)
        if (side_ask and p <= self.best_bid) or (not side_ask and p >= self.best_ask):
            return
        q[0:0] = [size] + [0.0] * (n - 1)
        del q[-n:]
        if side_ask:
            self.best_ask = p
        else:
            self.best_bid = p
        self._reladder()

    def _shift_out(self, q: list[float], side: int) -> None:
        """The best queue of a side is empty: move the best to the next non-empty tick."""
        n = 0
        while q and q[0] <= 1e-12:
            q.pop(0)
            n += 1
        if not q:
            q.append(self._eq[0])
        while len(q) < self.params.depth_ticks:
            q.append(self._draw_level(len(q)))
        if n:
            if side > 0:
                self.best_ask = self._ask_px[min(n, len(self._ask_px) - 1)]
            else:
                self.best_bid = self._bid_px[min(n, len(self._bid_px) - 1)]
            self._reladder()

    # ------------------------------------------------------------------------------------------ dynamics

    def step(self) -> None:
        """One event of the model (the hot loop: constants are precomputed in ``_k``)."""
        p = self.params
        k = self._k
        aq, bq = self.ask_q, self.bid_q
        qm = self.qmean
        a0, b0 = aq[0], bq[0]
        imb = (b0 - a0) / (a0 + b0) if a0 + b0 > 0 else 0.0
        g = k.imbalance
        lam_buy = (k.market_rate + self.e_buy) * (1.0 + g * imb)
        lam_sell = (k.market_rate + self.e_sell) * (1.0 - g * imb)
        sig = 0.0
        if p.signal_strength:
            sig = self._signal_at(self.t)
            lam_buy *= 1.0 + sig
            lam_sell *= 1.0 - sig
        lam_lim = k.lam_lim
        sa, sb = sum(aq), sum(bq)
        lam_ca = k.cancel_per_unit * sa
        lam_cb = k.cancel_per_unit * sb
        lam_sp = k.lam_spread if self._wide else 0.0
        total = lam_buy + lam_sell + lam_lim + lam_ca + lam_cb + lam_sp
        # Event times are drawn one event ahead so a paced run can stop before an event that lies in the
        # future (run_until) without changing the stream.
        nt = self._next_t if self._next_t is not None else self.t + self._exp() / total
        dt = nt - self.t
        self.t = nt
        self._next_t = nt + self._exp() / total
        decay = math.exp(k.neg_beta * dt)
        self.e_buy *= decay
        self.e_sell *= decay
        self.events += 1
        x = self._u() * total
        if x < lam_lim:
            # With a planted signal, limit orders behind the best lean the same way as the takers (bids
            # build up before buyers lift the asks): the depth imbalance shows the drift before the mid moves.
            # The distance of a limit order is drawn from the *opposite* best (Cont-Stoikov-Talreja): with a
            # one-tick spread that is the own queue i; with a wider one, the nearest ticks lie inside the
            # spread, so liquidity flows into a gap at a rate that grows with it: the spread stays stationary.
            d = bisect.bisect_left(self._cum_w, self._u())
            side_ask = x < lam_lim / 2
            if sig and d >= 2:  # resting interest behind the best leans with the drift; the best does not
                side_ask = x < lam_lim / 2 * (1.0 - self._sig_book)
            i = d - self._gap
            size = k.limit_size * self._exp()
            if i < 0:
                self._improve(side_ask, -i, size)
                return
            q = aq if side_ask else bq
            if i >= len(q):
                i = len(q) - 1
            q[i] += size
            return
        x -= lam_lim
        if x < lam_ca + lam_cb:
            side_ask = x < lam_ca
            q = aq if side_ask else bq
            target = self._u() * (sa if side_ask else sb)
            acc = 0.0
            i = 0
            for i, v in enumerate(q):  # noqa: B007 - the index is used after the loop
                acc += v
                if acc >= target:
                    break
            q[i] = max(0.0, q[i] - k.limit_size * self._exp())
            if q[i] < 1e-9:
                q[i] = 0.0
            if i == 0 and q[0] == 0.0:
                self._shift_out(q, 1 if side_ask else -1)
            return
        x -= lam_ca + lam_cb
        if x < lam_buy + lam_sell:
            buy = x < lam_buy
            size = k.market_scale * (self._u() ** k.neg_inv_tail - 1.0)
            size = max(size, qm * 0.001)
            self._market(buy, size)
            if buy:
                self.e_buy += p.hawkes_alpha
                self.e_sell += p.hawkes_cross
            else:
                self.e_sell += p.hawkes_alpha
                self.e_buy += p.hawkes_cross
            return
        # Inside the spread: a new price level, as deep (relative to the queues) as anywhere else, so a
        # large-tick book does not flicker between one- and two-tick spreads.
        size = k.spread_size * self._exp()
        if self._u() < 0.5:
            new = self.best_ask - _tick_down(self.best_ask)
            if new > self.best_bid:
                aq.insert(0, size)
                aq.pop()
                self.best_ask = new
        else:
            new = self.best_bid + _tick_up(self.best_bid)
            if new < self.best_ask:
                bq.insert(0, size)
                bq.pop()
                self.best_bid = new
        self._reladder()

    def _signal_at(self, t: float) -> float:
        """The planted tilt at model time ``t``: the OU state, advanced on a 0.25 s grid (exact steps)."""
        if t >= self._sig_t:
            p = self.params
            h = 0.25
            rho = math.exp(-h / p.signal_tau)
            c = math.sqrt(1.0 - rho * rho)
            n = int((t - self._sig_t) / h) + 1
            lag = int(round(p.signal_lag / h))
            hist = self._sig_hist
            for z in self._sig_rng.standard_normal(n).tolist():
                self._sig_x = self._sig_x * rho + c * z
                if lag:
                    hist.append(self._sig_x)
            self._sig_t += n * h
            x_taker = self._sig_x
            if lag:
                if len(hist) > lag + 1:
                    del hist[: len(hist) - lag - 1]
                x_taker = hist[0] if len(hist) > lag else 0.0
            self.signal = max(-0.9, min(0.9, p.signal_strength * p.signal_taker * x_taker))
            self._sig_book = max(-0.9, min(0.9, p.signal_strength * p.signal_book * self._sig_x))
            if p.signal_jump_every > 0:
                self._jumps_advance(t)
        return self.signal

    def _jumps_advance(self, t: float) -> None:
        """Announce, lean and jump (``SyntheticParams.signal_jump_*``) on the signal's 0.25 s grid."""
        p = self.params
        if self._jump_at is not None and t >= self._jump_at:
            self._jump(self._jump_side * p.signal_strength * p.signal_jump_size)
            self._jump_at = None
            self._jump_next = t + p.signal_jump_every * float(self._sig_rng.exponential())
        if self._jump_at is None and t >= self._jump_next:
            self._jump_side = 1 if self._sig_rng.random() < 0.5 else -1
            self._jump_at = t + p.signal_jump_lead
            self._lean_until = t + p.signal_jump_lean
            q = self.bid_q if self._jump_side > 0 else self.ask_q
            lo = min(p.signal_jump_depth, len(q) - 1)
            self._wall = [(i, p.signal_jump_wall * self._eq[i]) for i in range(lo, min(lo + 6, len(q)))]
            for i, size in self._wall:
                q[i] += size
            self._lean = self._jump_side
        if self._lean and t >= self._lean_until:  # the wall is withdrawn (what is left of it)
            q = self.bid_q if self._lean > 0 else self.ask_q
            for i, size in self._wall:
                q[i] = max(0.0, q[i] - size)
            self._wall = []
            self._lean = 0

    def _jump(self, frac: float) -> None:
        """The whole book re-prices by ``frac`` of the mid (whole ticks, the queues keep their shape)."""
        up = frac > 0
        n = max(1, int(round(abs(frac) * (self.best_ask + self.best_bid) / 2 / _tick_up(self.best_bid))))
        ba, bb = self.best_ask, self.best_bid
        for _ in range(n):
            if up:
                ba, bb = ba + _tick_up(ba), bb + _tick_up(bb)
            else:
                ba, bb = ba - _tick_down(ba), bb - _tick_down(bb)
        if bb <= 0 or ba <= bb:
            return
        self.best_ask, self.best_bid = ba, bb
        self.jumps += 1
        self._reladder()

    def _market(self, buy: bool, size: float) -> None:
        q = self.ask_q if buy else self.bid_q
        px = self._ask_px if buy else self._bid_px
        left = min(size, sum(q[:10]) * 0.95) if self._walk else min(size, q[0])
        sign = 1 if buy else -1
        for i in range(len(q)):
            if left <= 1e-12:
                break
            v = q[i]
            if v <= 0:
                continue
            take = v if v <= left else left
            q[i] = v - take
            if q[i] < 1e-9:
                q[i] = 0.0
            left -= take
            self._trades.append((self.t, px[i], take, sign))
        if q[0] <= 0.0:
            self._shift_out(q, 1 if buy else -1)

    def consume(self, book_side: str, price: float, volume: float) -> None:
        """A simulator user's order took liquidity: remove it from the model's queue (market impact)."""
        pn = int(round(price * NANO))
        q, px = (self.ask_q, self._ask_px) if book_side == "ask" else (self.bid_q, self._bid_px)
        try:
            i = px.index(pn)
        except ValueError:
            return
        q[i] = max(0.0, q[i] - volume)
        if q[i] < 1e-9:
            q[i] = 0.0
        if i == 0 and q[0] == 0.0:
            self._shift_out(q, 1 if book_side == "ask" else -1)

    # ------------------------------------------------------------------------------------------ output

    @property
    def now_ms(self) -> int:
        return self.start_ms + int(self.t * 1000)

    @property
    def mid(self) -> float:
        return (self.best_ask + self.best_bid) / 2 / NANO

    def book(self, levels: int | None = None) -> BookSnapshot:
        """The first ``levels`` non-empty prices per side (sizes rounded to 8 decimals), zero-padded."""
        n = levels or self.params.levels
        out = []
        for q, px in ((self.ask_q, self._ask_px), (self.bid_q, self._bid_px)):
            side: list[tuple[float, float]] = []
            for v, pn in zip(q, px, strict=False):
                if v > 5e-9:
                    side.append((pn / NANO, round(v, 8)))
                    if len(side) == n:
                        break
            while len(side) < n:
                side.append((0.0, 0.0))
            out.append(side)
        return BookSnapshot(self.now_ms, out[0], out[1])

    def take_trades(self) -> list[tuple[int, float, float, int]]:
        """Trades since the last call as (ts_ms, price, volume, +1 buyer/-1 seller initiated)."""
        out = [
            (self.start_ms + int(t * 1000), pn / NANO, round(v, 8), s)
            for t, pn, v, s in self._trades
            if v > 5e-9
        ]
        self._trades.clear()
        return out

    def run_until(self, until_ms: int, record: list[BookSnapshot] | None = None) -> bool:
        """Step until model time reaches ``until_ms``; True if any event happened. With ``record``, the
        book after every event is appended to it."""
        target = (until_ms - self.start_ms) / 1000.0
        moved = False
        while self._next_t is not None and self._next_t <= target:
            self.step()
            moved = True
            if record is not None:
                record.append(self.book())
        return moved

    def generate(self, n_books: int) -> tuple[BookArrays, TradeArrays]:
        """Run ``n_books`` events and record the book after each one (fast path; numpy arrays)."""
        k = self.params.depth_ticks
        L = self.params.levels
        tl: list[float] = []
        bal: list[int] = []
        bbl: list[int] = []
        aql: list[list[float]] = []
        bql: list[list[float]] = []
        step = self.step
        for _ in range(n_books):
            step()
            tl.append(self.t)
            bal.append(self.best_ask)
            bbl.append(self.best_bid)
            aql.append(self.ask_q.copy())
            bql.append(self.bid_q.copy())
        ts = self.start_ms + (np.asarray(tl) * 1000).astype(np.int64)
        ba = np.asarray(bal, dtype=np.int64)
        bb = np.asarray(bbl, dtype=np.int64)
        aq = np.asarray(aql, dtype=np.float64).reshape(n_books, k)
        bq = np.asarray(bql, dtype=np.float64).reshape(n_books, k)
        ask_px, ask_sz = _ladder_levels(ba, aq, +1, L)
        bid_px, bid_sz = _ladder_levels(bb, bq, -1, L)
        trades = self.take_trades()
        if trades:
            tt = np.array([t[0] for t in trades], dtype=np.int64)
            tp = np.array([t[1] for t in trades])
            tv = np.array([t[2] for t in trades])
            sd = np.array([t[3] for t in trades], dtype=np.int8)
        else:
            tt, tp, tv, sd = (
                np.empty(0, dtype=np.int64),
                np.empty(0),
                np.empty(0),
                np.empty(0, dtype=np.int8),
            )
        return BookArrays(ts, ask_px, ask_sz, bid_px, bid_sz), TradeArrays(tt, tp, tv, sd)


def _ladder_levels(
    best: np.ndarray, q: np.ndarray, direction: int, levels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised: tick ladders from the best prices, then the first ``levels`` non-empty ticks per row."""
    n, k = q.shape
    tick_of = np.vectorize(_tick_up if direction > 0 else _tick_down, otypes=[np.int64])
    uniq, inv = np.unique(best, return_inverse=True)
    ladders = np.empty((len(uniq), k), dtype=np.int64)
    steps = np.arange(k, dtype=np.int64)
    ticks = tick_of(uniq)
    same = tick_of(uniq + direction * ticks * (k - 1)) == ticks  # the whole ladder in one tick band
    ladders[same] = uniq[same, None] + direction * ticks[same, None] * steps[None, :]
    for j in np.flatnonzero(~same).tolist():  # the ladder crosses a tick band: walk it
        p = int(uniq[j])
        for s in range(k):
            ladders[j, s] = p
            p = p + _tick_up(p) if direction > 0 else max(1, p - _tick_down(p))
    px = ladders[inv.reshape(-1)]
    mask = q > 5e-9
    order = np.argsort(~mask, axis=1, kind="stable")[:, :levels]
    sel_px = np.take_along_axis(px, order, axis=1).astype(np.float64) / NANO
    sel_q = np.round(np.take_along_axis(q, order, axis=1), 8)
    keep = np.take_along_axis(mask, order, axis=1)
    sel_px[~keep] = 0.0
    sel_q[~keep] = 0.0
    return sel_px, sel_q


class SyntheticSource:
    """Paced synthetic source for the simulator: one :class:`SyntheticMarket` per market."""

    def __init__(
        self,
        markets: list[str],
        *,
        seed: int = 1,
        start_ms: int = 0,
        params: SyntheticParams | dict[str, SyntheticParams] | None = None,
        record_all: bool = False,
        activity: float | None = None,
        volatility: float | dict[str, float] | None = None,
        signal_strength: float = 0.0,
    ) -> None:
        """``activity`` scales every market's event rates (None: 1.0, or 20/len(markets) above 20
        markets, so a whole-exchange simulation stays within one core; volatility then scales by
        sqrt(activity)). ``volatility`` sets ``target_vol`` (one-minute mid std, a fraction of the price)
        for every market, or per market with a dict. ``signal_strength`` plants predictable order flow
        (module doc; 0 = off)."""
        self.markets = list(markets)
        self.record_all = record_all
        self._start = start_ms
        self.models: dict[str, SyntheticMarket] = {}
        if activity is None:
            activity = min(1.0, 20.0 / max(1, len(self.markets)))
        for m in self.markets:
            prm = (params.get(m) if isinstance(params, dict) else params) or SyntheticParams()
            vol = volatility.get(m) if isinstance(volatility, dict) else volatility
            if vol is not None:
                prm = replace(prm, target_vol=float(vol))
            if signal_strength:
                prm = replace(prm, signal_strength=float(signal_strength))
            if activity != 1.0:
                prm = prm.scaled(activity)
            self.models[m] = SyntheticMarket(m, seed=seed, start_ms=start_ms, params=prm)
        self._ids = SequenceIds()
        self._primed = False  # the first advance returns every market's book (the initial snapshot)

    def start_ms(self) -> int:
        return self._start

    def advance(self, until_ms: int) -> dict[str, MarketUpdate]:
        out: dict[str, MarketUpdate] = {}
        primed, self._primed = self._primed, True
        for m, model in self.models.items():
            books: list[BookSnapshot] | None = [] if self.record_all else None
            if not model.run_until(until_ms, books) and primed:
                continue
            book = model.book()
            if books is None or not primed and not books:
                books = [book]
            trades = []
            for ts, price, vol, sign in model.take_trades():
                trades.append(
                    TradeTick(
                        ts=ts,
                        price=price,
                        volume=vol,
                        ask_bid="BID" if sign > 0 else "ASK",
                        sequential_id=self._ids.next(m, ts),
                        best_ask_price=book.asks[0][0],
                        best_ask_size=book.asks[0][1],
                        best_bid_price=book.bids[0][0],
                        best_bid_size=book.bids[0][1],
                    )
                )
            out[m] = MarketUpdate(books=books, trades=trades)
        return out

    def consume(self, market: str, book_side: str, price: float, volume: float) -> None:
        model = self.models.get(market)
        if model is not None:
            model.consume(book_side, price, volume)

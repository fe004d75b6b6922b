"""Live prediction serving inside the ml worker process: rolling raw windows per market, the active models
kept loaded (reloaded when the active version changes), one batched forward pass per model per call,
predictions stored, published to ``market.<CODE>`` and handed to auto-trading by task name."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import transaction

from core import realtime
from market.dayfiles import BookArrays, TradeArrays
from mlmodel import conf

logger = logging.getLogger(__name__)

AUTOTRADE_TASK = "trading.tasks.autotrade_on_prediction"
_SIDE = {"BID": 1, "bid": 1, "buy": 1, "ASK": -1, "ask": -1, "sell": -1}


def _side_value(v: Any) -> int:
    if isinstance(v, str):
        return _SIDE.get(v, 0)
    return 1 if float(v) > 0 else -1


_BOOK_KEYS = ("ask_px", "ask_sz", "bid_px", "bid_sz")


class MarketWindow:
    """The newest raw book snapshots and trades of one market (a bounded, time-based window).

    Snapshots live in preallocated buffers (appending copies only the new rows; the kept rows are moved
    down only when the buffer end is reached); ``ts``/``ask_px``/... are views of the kept rows."""

    def __init__(self) -> None:
        self.levels = 0
        self._lo = self._hi = 0
        self._ts = np.zeros(0, dtype=np.int64)
        self._book: dict[str, np.ndarray] = {k: np.zeros((0, 0)) for k in _BOOK_KEYS}  # [levels, capacity]
        self.t_ts = np.zeros(0, dtype=np.int64)
        self.t_price = np.zeros(0)
        self.t_volume = np.zeros(0)
        self.t_side = np.zeros(0, dtype=np.int8)
        self.last_predicted_ts = -1
        # Incremental features: the newest (<= window) rows' normalised features for one loaded model, the
        # ts of those rows, and the earliest ts of trades appended since (they may change featurised rows).
        self.f_key: tuple[int, str] | None = None
        self.f_ts = np.zeros(0, dtype=np.int64)
        self.f_z = np.zeros((0, 0), dtype=np.float32)
        self.f_valid = np.zeros(0, dtype=bool)
        self.f_trades_from: int | None = None

    @property
    def ts(self) -> np.ndarray:
        return self._ts[self._lo : self._hi]

    @property
    def ask_px(self) -> np.ndarray:
        return self._book["ask_px"][:, self._lo : self._hi].T

    @property
    def ask_sz(self) -> np.ndarray:
        return self._book["ask_sz"][:, self._lo : self._hi].T

    @property
    def bid_px(self) -> np.ndarray:
        return self._book["bid_px"][:, self._lo : self._hi].T

    @property
    def bid_sz(self) -> np.ndarray:
        return self._book["bid_sz"][:, self._lo : self._hi].T

    def _matrix(self, rows: Any, n: int) -> np.ndarray:
        if rows is not None and len(rows) == n:
            try:
                m = np.asarray(rows, dtype=np.float64)
            except ValueError:  # ragged: rows with different level counts
                m = None
            if m is not None and m.ndim == 2:
                if m.shape[1] >= self.levels:
                    return m[:, : self.levels]
                out = np.full((n, self.levels), np.nan)
                out[:, : m.shape[1]] = m
                return out
        m = np.full((n, self.levels), np.nan)
        for i, r in enumerate(rows or []):
            k = min(self.levels, len(r))
            if k:
                m[i, :k] = np.asarray(r[:k], dtype=np.float64)
        return m

    def _matrices(self, data: Mapping[str, Any], n: int) -> list[np.ndarray]:
        """The four [n, levels] book matrices; one conversion for all when the batch is rectangular."""
        raw = [data.get(k) for k in _BOOK_KEYS]
        if all(r is not None and len(r) == n for r in raw):
            try:
                m = np.asarray(raw, dtype=np.float64)
            except ValueError:  # ragged
                m = None
            if m is not None and m.ndim == 3 and m.shape[2] >= self.levels:
                return list(m[:, :, : self.levels])
        return [self._matrix(r, n) for r in raw]

    def _reserve(self, n: int) -> None:
        """Room for ``n`` more rows at the buffer end (moving the kept rows down / growing when needed)."""
        if self._hi + n <= self._ts.shape[0]:
            return
        kept = self._hi - self._lo
        cap = max(self._ts.shape[0], 2 * (kept + n), 64)
        ts = np.zeros(cap, dtype=np.int64)
        ts[:kept] = self._ts[self._lo : self._hi]
        self._ts = ts
        for k in _BOOK_KEYS:
            m = np.full((self.levels, cap), np.nan)  # level-major: one level of all rows is contiguous
            if kept:
                m[:, :kept] = self._book[k][:, self._lo : self._hi]
            self._book[k] = m
        self._lo, self._hi = 0, kept

    def append(self, data: Mapping[str, Any], keep_ms: int) -> int:
        """Append one market's batch (contract format); returns the number of new snapshots."""
        ts = np.asarray(data.get("ts") or [], dtype=np.int64)
        n = int(ts.shape[0])
        if n:
            if self.levels == 0:
                self.levels = max((len(r) for r in (data.get("ask_px") or [[]])), default=0) or 1
            newer = ts > (self._ts[self._hi - 1] if self._hi > self._lo else -1)  # replays are dropped
            parts = {k: m[newer] for k, m in zip(_BOOK_KEYS, self._matrices(data, n), strict=True)}
            ts = ts[newer]
            n = int(ts.shape[0])
            if n:
                order = np.argsort(ts, kind="stable")
                self._reserve(n)
                self._ts[self._hi : self._hi + n] = ts[order]
                for k, v in parts.items():
                    self._book[k][:, self._hi : self._hi + n] = v[order].T
                self._hi += n
        tr = data.get("trades") or {}
        t_ts = np.asarray(tr.get("ts") or [], dtype=np.int64)
        if t_ts.size:
            t_min = int(t_ts.min())
            self.f_trades_from = t_min if self.f_trades_from is None else min(self.f_trades_from, t_min)
            in_order = bool(np.all(t_ts[1:] >= t_ts[:-1])) and (
                not self.t_ts.size or int(t_ts[0]) >= int(self.t_ts[-1])
            )
            self.t_ts = np.concatenate([self.t_ts, t_ts])
            self.t_price = np.concatenate([self.t_price, np.asarray(tr.get("price"), dtype=np.float64)])
            self.t_volume = np.concatenate([self.t_volume, np.asarray(tr.get("volume"), dtype=np.float64)])
            sides = np.asarray([_side_value(s) for s in tr.get("side") or []], dtype=np.int8)
            self.t_side = np.concatenate([self.t_side, sides])
            if not in_order:
                order = np.argsort(self.t_ts, kind="stable")
                self.t_ts, self.t_price = self.t_ts[order], self.t_price[order]
                self.t_volume, self.t_side = self.t_volume[order], self.t_side[order]
        if self._hi > self._lo:
            cutoff = int(self._ts[self._hi - 1]) - keep_ms
            self._lo += int(np.searchsorted(self.ts, cutoff, side="left"))
            tlo = int(np.searchsorted(self.t_ts, cutoff, side="left"))
            if tlo:
                self.t_ts, self.t_price = self.t_ts[tlo:], self.t_price[tlo:]
                self.t_volume, self.t_side = self.t_volume[tlo:], self.t_side[tlo:]
        return n

    def book(self, since_ms: int | None = None) -> BookArrays:
        lo = 0 if since_ms is None else int(np.searchsorted(self.ts, since_ms, side="left"))
        return BookArrays(
            ts=self.ts[lo:],
            ask_px=self.ask_px[lo:],
            ask_sz=self.ask_sz[lo:],
            bid_px=self.bid_px[lo:],
            bid_sz=self.bid_sz[lo:],
        )

    def trades(self, since_ms: int | None = None) -> TradeArrays | None:
        lo = 0 if since_ms is None else int(np.searchsorted(self.t_ts, since_ms, side="left"))
        if self.t_ts.size <= lo:
            return None
        return TradeArrays(
            ts=self.t_ts[lo:], price=self.t_price[lo:], volume=self.t_volume[lo:], side=self.t_side[lo:]
        )

    def tail_since(self, window: int, lookback_ms: int) -> int | None:
        """Earliest time the features of the newest ``window`` rows depend on (the feature look-back, which
        includes the segment gap, before the window's first row): computing on that tail only gives the same
        values as computing on the whole history."""
        if self.ts.size < window:
            return None
        return int(self.ts[-window]) - lookback_ms

    def rows_to_featurise(self, key: tuple[int, str], window: int) -> int:
        """How many of the newest rows need (re)computed features for the model ``key`` so that the newest
        ``window`` rows all have them: the new snapshots, plus those a late trade may change, or all of the
        window when the cache is for another model or does not reach back far enough."""
        n = int(self.ts.size)
        new = n - int(np.searchsorted(self.ts, int(self.f_ts[-1]), side="right")) if self.f_ts.size else n
        if self.f_trades_from is not None:
            new = max(new, n - int(np.searchsorted(self.ts, self.f_trades_from, side="left")))
        need = min(max(new, 0), window, n)
        if need >= window or self.f_key != key:
            return min(window, n)
        start = int(self.ts[n - need]) if need else None
        kept = self.f_ts.size if start is None else int(np.searchsorted(self.f_ts, start, side="left"))
        return need if kept >= window - need else min(window, n)

    def store_features(
        self, key: tuple[int, str], ts: np.ndarray, z: np.ndarray, valid: np.ndarray, window: int
    ) -> None:
        """Put the (re)computed newest rows into the per-market buffer (the newest ``window`` rows kept)."""
        if self.f_key != key or not self.f_ts.size or not ts.size:
            keep = 0
        else:
            keep = int(np.searchsorted(self.f_ts, int(ts[0]), side="left"))
        self.f_key = key
        self.f_ts = np.concatenate([self.f_ts[:keep], ts])[-window:]
        self.f_z = np.concatenate([self.f_z[:keep].reshape(-1, z.shape[1]), z])[-window:]
        self.f_valid = np.concatenate([self.f_valid[:keep], valid])[-window:]
        self.f_trades_from = None

    def model_input(self, window: int, max_gap_ms: int) -> np.ndarray | None:
        """The newest ``window`` normalised feature rows if all are valid and from one recording segment
        (no jump > ``max_gap_ms``), else None: the live twin of ``inference.latest_window``."""
        if self.f_ts.size < window or self.ts.size < window:
            return None
        if not np.array_equal(self.f_ts, self.ts[-window:]) or not self.f_valid.all():
            return None
        if np.any(np.diff(self.ts[-window:]) > max_gap_ms):
            return None
        return self.f_z


_STACK_STRIDE_MS = 10**10  # each market's tail is moved to its own ~115-day slot: no window spans two markets


def featurise_markets(windows: list[MarketWindow], predictor: Any, key: tuple[int, str]) -> None:
    """Compute the missing newest feature rows of many markets in one vectorised pass: each market's tail
    (the rows that need features plus the features' look-back) is shifted into its own time slot and all
    tails are stacked, so rolling windows never cross markets; only the needed rows' (wide) columns are
    computed. The normalised rows land in each market's buffer (``store_features``)."""
    from mlmodel.features import compute_features

    cfg = predictor.bundle.feature_config
    W = int(predictor.window)
    parts: list[tuple[MarketWindow, int, int, int]] = []  # window, offset in the stack, tail length, need
    ts_l: list[np.ndarray] = []
    tts_l: list[np.ndarray] = []
    tvol_l: list[np.ndarray] = []
    tside_l: list[np.ndarray] = []
    offset = 0
    for w in windows:
        need = w.rows_to_featurise(key, W)
        if need <= 0:
            w.f_trades_from = None  # the new trades are later than every row: only future rows see them
            continue
        since = int(w.ts[-need]) - cfg.lookback_ms
        lo = int(np.searchsorted(w.ts, since, side="left"))
        shift = len(parts) * _STACK_STRIDE_MS - since
        ts_l.append(w.ts[lo:] + shift)
        tlo = int(np.searchsorted(w.t_ts, since, side="left"))
        tts_l.append(w.t_ts[tlo:] + shift)
        tvol_l.append(w.t_volume[tlo:])
        tside_l.append(w.t_side[tlo:])
        n = int(w.ts.size) - lo
        parts.append((w, offset, n, need))
        offset += n
    if not parts:
        return
    # Features read level 1 of every row (rolling series) but all ``cfg.levels`` levels only of the rows
    # computed: only those are copied, not the whole books.
    L = max(1, min(cfg.levels, max(w.levels for w, *_ in parts)))
    first: dict[str, list[np.ndarray]] = {k: [] for k in _BOOK_KEYS}
    wide: dict[str, list[np.ndarray]] = {k: [] for k in _BOOK_KEYS}
    for w, _, n, need in parts:
        for name in _BOOK_KEYS:
            buf = w._book[name]
            first[name].append(buf[0, w._hi - n : w._hi])
            m = buf[:L, w._hi - need : w._hi].T
            if m.shape[1] < L:
                m = np.concatenate([m, np.full((need, L - m.shape[1]), np.nan)], axis=1)
            wide[name].append(m)
    mats = {k: np.concatenate(first[k])[:, None] for k in _BOOK_KEYS}
    ap, asz, bp, bsz = (np.concatenate(wide[k]) for k in _BOOK_KEYS)
    book = BookArrays(ts=np.concatenate(ts_l), **mats)
    t_ts = np.concatenate(tts_l)
    trades = (
        TradeArrays(
            ts=t_ts,
            price=np.zeros(t_ts.shape[0]),
            volume=np.concatenate(tvol_l),
            side=np.concatenate(tside_l),
        )
        if t_ts.size
        else None
    )
    rows = np.concatenate([np.arange(off + n - need, off + n) for _, off, n, need in parts])
    frame = compute_features(book, trades, config=cfg, rows=rows, rows_book=(ap, asz, bp, bsz))
    z = predictor.normalize(frame.X)
    at = 0
    for w, _, _, need in parts:
        w.store_features(key, w.ts[-need:], z[at : at + need], frame.valid[at : at + need], W)
        at += need


@dataclass
class LoadedModel:
    version_id: int
    label: str
    sha: str
    predictor: Any  # mlmodel.inference.Predictor


class Server:
    """Process-local serving state (one per ml worker process)."""

    def __init__(self) -> None:
        self.windows: dict[str, MarketWindow] = {}
        self.models: dict[int, LoadedModel] = {}
        self.lock = threading.Lock()
        self.last_prune = 0.0

    def _model_for(self, version: Any) -> LoadedModel | None:
        loaded = self.models.get(version.pk)
        if loaded is not None and loaded.sha == version.artifact_sha256:
            return loaded
        from mlmodel.inference import Predictor
        from mlmodel.training import pick_device

        try:
            with version.artifact.open("rb") as fh:
                data = fh.read()
            device = str(pick_device(str(conf.get("ML_DEVICE"))))
            predictor = Predictor.from_bytes(data, device=device)
        except Exception:  # noqa: BLE001 - a broken artifact must not stop serving the other markets
            logger.exception("cannot load model version %s", version.pk)
            return None
        loaded = LoadedModel(version.pk, version.label, version.artifact_sha256, predictor)
        self.models[version.pk] = loaded
        logger.info("model loaded", extra={"version": version.label, "device": device})
        return loaded

    def _predict_group(self, loaded: LoadedModel, markets: list[str]) -> dict[str, float]:
        """Features of the new snapshots of all ``markets`` in one pass, then one batched forward pass over
        their buffered windows (torch intra-op threads capped for the call on CPU: see ``Predictor``)."""
        p = loaded.predictor
        key = (loaded.version_id, loaded.sha)
        wins = [self.windows[m] for m in markets]
        featurise_markets(wins, p, key)
        max_gap = int(p.bundle.feature_config.max_gap_ms)
        names: list[str] = []
        inputs: list[np.ndarray] = []
        for m, w in zip(markets, wins, strict=True):
            z = w.model_input(p.window, max_gap)
            if z is not None:
                names.append(m)
                inputs.append(z)
        if not names:
            return {}
        threads = conf.get("ML_SERVING_THREADS")
        before = torch_threads() if threads and str(p.device) == "cpu" else None
        if before is not None and before != int(threads):
            set_torch_threads(int(threads))
        try:
            preds = p.predict_normalized(np.stack(inputs))
        finally:
            if before is not None and before != int(threads):
                set_torch_threads(before)
        return {m: float(v) for m, v in zip(names, preds, strict=True)}

    def ingest(self, batch: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        from mlmodel.selectors import model_active_map

        with self.lock:
            keep_ms = int(float(conf.get("ML_LIVE_KEEP_S")) * 1000)
            max_age = conf.get("ML_MAX_DATA_AGE_S")
            max_age_ms = None if max_age is None else int(float(max_age) * 1000)
            now_ms = int(time.time() * 1000)
            stale = 0
            fresh = []
            for market, data in batch.items():
                if not isinstance(data, Mapping) or not isinstance(market, str):
                    continue
                w = self.windows.setdefault(market, MarketWindow())
                try:
                    w.append(data, keep_ms)
                except (TypeError, ValueError) as exc:
                    logger.warning("bad batch for %s: %s", market, exc)
                    continue
                if not w.ts.size or int(w.ts[-1]) == w.last_predicted_ts:
                    continue
                if max_age_ms is not None and now_ms - int(w.ts[-1]) > max_age_ms:
                    # A backlog (the worker was busy): keep the history, but never publish a prediction
                    # about a book that is long gone - auto-trading would act on it.
                    w.last_predicted_ts = int(w.ts[-1])
                    stale += 1
                    continue
                fresh.append(market)
            if stale:
                logger.warning("skipped %d stale market batch(es) (older than %s s)", stale, max_age)
            if not fresh:
                return []
            active = model_active_map(markets=fresh)
            # Drop models no longer active for any market we serve (reload on promotion).
            active_ids = {v.pk for v in active.values()}
            for vid in [v for v in self.models if v not in active_ids]:
                if not any(m in active for m in self.windows):
                    self.models.pop(vid, None)
            groups: dict[int, list[str]] = {}
            loaded_by_id: dict[int, LoadedModel] = {}
            for market in fresh:
                version = active.get(market)
                if version is None:
                    continue
                loaded = self._model_for(version)
                if loaded is None or self.windows[market].ts.size < loaded.predictor.window:
                    continue
                loaded_by_id[loaded.version_id] = loaded
                groups.setdefault(loaded.version_id, []).append(market)
            preds_by_id: dict[int, dict[str, float]] = {}
            for vid, markets in groups.items():
                preds_by_id[vid] = self._predict_group(loaded_by_id[vid], markets)
            rows: list[dict[str, Any]] = []
            for vid, preds in preds_by_id.items():
                loaded = loaded_by_id[vid]
                for market, value in preds.items():
                    w = self.windows[market]
                    ts = int(w.ts[-1])
                    w.last_predicted_ts = ts
                    a1, b1 = float(w.ask_px[-1, 0]), float(w.bid_px[-1, 0])
                    rows.append(
                        {
                            "market": market,
                            "ts": ts,
                            "predicted_return": float(value),
                            "horizon_s": float(loaded.predictor.horizon_s),
                            "model_version": loaded.label,
                            "model_version_id": vid,
                            "mid": (a1 + b1) / 2.0,
                            "best_bid": b1,
                            "best_ask": a1,
                        }
                    )
            return rows


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


_server: Server | None = None


def get_server() -> Server:
    global _server
    if _server is None:
        _server = Server()
    return _server


def reset_server() -> None:
    """Forget the windows and loaded models (tests; a worker restart does the same)."""
    global _server
    _server = None


def market_data_ingest(*, batch: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ml worker's entry point for the collector's batches: predict, store, publish, hand over."""
    from celery_app import app
    from mlmodel.services import predictions_prune, predictions_store

    server = get_server()
    rows = server.ingest(batch)
    if rows:
        with transaction.atomic():
            predictions_store(rows=rows)
        public = [
            {k: r[k] for k in ("market", "ts", "predicted_return", "horizon_s", "model_version", "mid")}
            for r in rows
        ]
        realtime.publish_many(
            [(f"market.{p['market']}", {"type": "market.prediction", "data": p}) for p in public]
        )
        published_at = time.time()
        for r in rows:
            app.send_task(
                AUTOTRADE_TASK, kwargs={"prediction": {**r, "published_at": published_at}}, queue="default"
            )
    now = time.monotonic()
    if now - server.last_prune > 60:
        server.last_prune = now
        predictions_prune()
    return rows

"""Walk-forward evaluation: rolling train/validation/test splits, per-split metrics and backtests for the
LSTM and the baselines, the test period touched once per model, and the promotion rules."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from market.dayfiles import BookArrays
from mlmodel.backtest import BacktestConfig, decision_costs, run_backtest
from mlmodel.baselines import ReturnModel
from mlmodel.dataset import LabelledFrame, Normalizer, concat_labelled, make_windowset, window_ends
from mlmodel.features import FeatureConfig
from mlmodel.labels import DOWN, UP, three_class

PERSISTENCE = "persistence"


class TestPeriodReused(RuntimeError):
    """A test period was opened a second time for the same model: its result would no longer be honest."""

    __test__ = False  # not a pytest class


class TestPeriodGuard:
    """Hands out each (split, model) test period once; a second request raises."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.opened: list[tuple[int, str]] = []

    def open(self, split_index: int, model: str) -> None:
        key = (split_index, model)
        if key in self.opened:
            raise TestPeriodReused(f"test period of split {split_index} already used for {model!r}")
        self.opened.append(key)


@dataclass(frozen=True)
class Split:
    index: int
    train: tuple[int, int]  # [start, end) epoch ms
    val: tuple[int, int]
    test: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def walk_forward_splits(
    t_start: int,
    t_end: int,
    *,
    train_s: float,
    val_s: float,
    test_s: float,
    step_s: float | None = None,
    embargo_s: float = 0.0,
) -> list[Split]:
    """Rolling windows by wall time: train, (embargo), validation, (embargo), test; the next split starts
    ``step_s`` (default ``test_s``) later, so test periods never overlap."""
    tr, va, te = int(train_s * 1000), int(val_s * 1000), int(test_s * 1000)
    step = int((step_s if step_s is not None else test_s) * 1000)
    emb = int(embargo_s * 1000)
    if min(tr, va, te, step) <= 0:
        raise ValueError("period lengths must be positive")
    splits: list[Split] = []
    s = t_start
    while True:
        a, b = s, s + tr
        c, d = b + emb, b + emb + va
        e, f = d + emb, d + emb + te
        if f > t_end:
            break
        splits.append(Split(len(splits), (a, b), (c, d), (e, f)))
        s += step
    return splits


def walk_forward_splits_by_rows(
    ts: np.ndarray,
    *,
    n_splits: int = 3,
    train_ratio: float = 3.0,
    val_ratio: float = 1.0,
    test_ratio: float = 1.0,
) -> list[Split]:
    """Rolling splits sized by number of snapshots (robust to recording gaps): each split has train/val/test
    in the given ratio; consecutive test blocks are adjacent and disjoint and the last ends with the data."""
    ts = np.asarray(ts, dtype=np.int64)
    n = ts.shape[0]
    unit = n / (train_ratio / test_ratio + val_ratio / test_ratio + n_splits)
    if unit < 1:
        raise ValueError("not enough rows for the requested splits")
    tr, va = int(unit * train_ratio / test_ratio), int(unit * val_ratio / test_ratio)
    te = int(unit)

    def at(i: int) -> int:
        return int(ts[min(i, n - 1)]) + (1 if i >= n else 0)

    splits = []
    for k in range(n_splits):
        a = k * te
        b, c = a + tr, a + tr + va
        d = c + te if k < n_splits - 1 else n
        splits.append(Split(k, (at(a), at(b)), (at(b), at(c)), (at(c), at(d))))
    return splits


def confusion3(y_cls: np.ndarray, p_cls: np.ndarray) -> np.ndarray:
    """3 x 3 confusion matrix (rows = true DOWN/FLAT/UP, columns = predicted); invalid (-1) rows dropped."""
    y_cls = np.asarray(y_cls, dtype=np.int64)
    p_cls = np.asarray(p_cls, dtype=np.int64)
    ok = (y_cls >= 0) & (p_cls >= 0)
    return np.bincount(3 * y_cls[ok] + p_cls[ok], minlength=9).reshape(3, 3)


def macro_f1(cm: np.ndarray) -> float:
    """Macro F1 over the three classes (DOWN, FLAT, UP); a class never true nor predicted scores 0 (as
    scikit-learn's ``zero_division=0``); NaN for an empty matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.sum() == 0:
        return math.nan
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2 tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(3), where=denom > 0)
    return float(f1.mean())


def mcc(cm: np.ndarray) -> float:
    """Matthews correlation (Gorodkin's multi-class form) of a confusion matrix: 1 perfect, 0 no better than
    chance or a constant prediction, < 0 worse; NaN for an empty matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    s = cm.sum()
    if s == 0:
        return math.nan
    c = np.trace(cm)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    den = math.sqrt(max(s * s - float(p @ p), 0.0)) * math.sqrt(max(s * s - float(t @ t), 0.0))
    return float((c * s - float(t @ p)) / den) if den > 0 else 0.0


def label_overlap_rows(ts: np.ndarray, horizon_s: float) -> int:
    """How many consecutive rows share part of a label's horizon (horizon over the median row spacing)."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size < 2:
        return 1
    dt_ms = float(np.median(np.diff(ts)))
    return max(1, int(math.ceil(horizon_s * 1000.0 / dt_ms))) if dt_ms > 0 else 1


def bootstrap_block(n: int, overlap: int) -> int:
    """Block length of the block bootstrap: at least the label overlap, at least n^(1/3)."""
    return max(1, int(overlap), int(math.ceil(max(n, 1) ** (1.0 / 3.0))))


def block_bootstrap_ci(
    y_cls: list[np.ndarray] | np.ndarray,
    p_cls: list[np.ndarray] | np.ndarray,
    *,
    block: int,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.90,
) -> dict[str, list[float] | None]:
    """Percentile intervals of macro-F1 and MCC by a circular block bootstrap that respects time: blocks of
    ``block`` consecutive samples, drawn within each period (periods are not contiguous) and pooled.
    Neighbouring labels overlap, so resampling single samples would make the intervals too narrow."""
    ys = [np.asarray(a, np.int64) for a in (y_cls if isinstance(y_cls, list) else [y_cls])]
    ps = [np.asarray(a, np.int64) for a in (p_cls if isinstance(p_cls, list) else [p_cls])]
    pairs = [(y, p) for y, p in zip(ys, ps, strict=True) if y.size]
    if not pairs or n_boot < 1:
        return {"macro_f1": None, "mcc": None}
    rng = np.random.default_rng(seed)
    codes = [3 * np.clip(y, 0, 2) + np.clip(p, 0, 2) + 9 * ((y < 0) | (p < 0)) for y, p in pairs]
    # A resample is ceil(n / L) circular blocks of L samples (the last one cut so that n are drawn); its
    # confusion counts are differences of the period's cumulative one-hot counts at the blocks' ends, so a
    # resample costs O(n / L), not O(n) (the same draws and counts as indexing every sample: issue 16).
    plans = []
    for code in codes:
        n = code.size
        L = min(block, n)
        k = int(math.ceil(n / L))
        cum = np.zeros((n + 1, 9), dtype=np.int64)
        np.cumsum(code[:, None] == np.arange(9)[None, :], axis=0, out=cum[1:])
        lens = np.full(k, L, dtype=np.int64)
        lens[-1] = n - (k - 1) * L
        plans.append((n, k, cum, lens))
    f1s, mccs = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        cm = np.zeros(9, dtype=np.int64)
        for n, k, cum, lens in plans:
            starts = rng.integers(0, n, size=k)
            ends = starts + lens  # exclusive, may wrap past n once
            cm += (cum[np.minimum(ends, n)] - cum[starts] + cum[np.maximum(ends - n, 0)]).sum(axis=0)
        f1s[b], mccs[b] = macro_f1(cm.reshape(3, 3)), mcc(cm.reshape(3, 3))
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100

    def ci(v: np.ndarray) -> list[float] | None:
        v = v[np.isfinite(v)]
        return [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if v.size else None

    return {"macro_f1": ci(f1s), "mcc": ci(mccs)}


def prediction_metrics(
    y: np.ndarray,
    p: np.ndarray,
    *,
    move_threshold: float,
    dead_band: float | np.ndarray | None = None,
) -> dict[str, float]:
    """MSE, MAE, correlation; directional accuracy over the samples that moved beyond the round-trip fee
    (NaN when none moved: no moves is no evidence, not 0 %), the same for the model's confident calls; and
    3-class (down / flat / up) macro-F1 and MCC with ``dead_band`` (per sample: both fees + half the spread +
    the threshold; default the fee) as the flat band, with the number of tradeable moves beyond it."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = int(y.shape[0])
    band = np.broadcast_to(
        np.asarray(move_threshold if dead_band is None else dead_band, dtype=np.float64), y.shape
    )
    if n == 0:
        return {
            "n": 0.0,
            "mse": math.nan,
            "mae": math.nan,
            "corr": 0.0,
            "dir_acc": math.nan,
            "dir_hits": 0.0,
            "dir_acc_calls": math.nan,
            "calls": 0.0,
            "f1_moves": 0.0,
            "moves": 0.0,
            "macro_f1": math.nan,
            "mcc": math.nan,
            "tradeable": 0.0,
            "dead_band_mean": math.nan,
        }
    corr = 0.0
    if np.std(y) > 0 and np.std(p) > 0:
        corr = float(np.corrcoef(y, p)[0, 1])
    moves = np.abs(y) > move_threshold
    hits = int(np.sum(np.sign(p[moves]) == np.sign(y[moves])))
    dir_acc = hits / int(moves.sum()) if moves.any() else math.nan
    calls = np.abs(p) > move_threshold
    dir_calls = float(np.mean(np.sign(p[calls]) == np.sign(y[calls]))) if calls.any() else math.nan
    yc = three_class(y, dead_band=move_threshold)
    pc = three_class(p, dead_band=move_threshold)
    f1 = float(f1_score(yc, pc, labels=[DOWN, UP], average="macro", zero_division=0))
    cm = confusion3(three_class(y, dead_band=band), three_class(p, dead_band=band))
    return {
        "n": float(n),
        "mse": float(np.mean((p - y) ** 2)),
        "mae": float(np.mean(np.abs(p - y))),
        "corr": corr,
        "dir_acc": float(dir_acc),
        "dir_hits": float(hits),
        "dir_acc_calls": dir_calls,
        "calls": float(calls.sum()),
        "f1_moves": f1,
        "moves": float(moves.sum()),
        "macro_f1": macro_f1(cm),
        "mcc": mcc(cm),
        "tradeable": float(cm[[DOWN, UP]].sum()),
        "dead_band_mean": float(np.mean(band)),
    }


@dataclass(frozen=True)
class SplitContext:
    """What a model factory gets to build one model for one split."""

    split: Split
    normalizer: Normalizer
    feature_names: tuple[str, ...]
    feature_config: FeatureConfig
    horizon_s: float
    window: int


ModelFactory = Callable[[SplitContext], ReturnModel]
EventFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class EvalConfig:
    window: int = 50
    train_stride: int = 1
    eval_stride: int = 1
    move_threshold: float = 0.001  # round-trip fee (2 x 0.05 %)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    max_plot_points: int = 2000
    # At most this many validation and test windows per split (evenly spaced: every k-th, k = ceil(n / cap));
    # None = all. Bounds a market's evaluation however many days it has (ML_MAX_EVAL_WINDOWS).
    max_eval_windows: int | None = None
    # Intervals of macro-F1 / MCC: circular block bootstrap over time; block None = max(label overlap,
    # n^(1/3)) rows.
    bootstrap_samples: int = 1000
    bootstrap_block: int | None = None
    bootstrap_seed: int = 0


@dataclass
class SplitOutcome:
    """One model's result on one split; ``fitted`` is kept so the caller can save the last split's model."""

    val: dict[str, float]
    test: dict[str, float]
    backtest: dict[str, Any]
    fitted: ReturnModel
    test_pred: np.ndarray
    test_y: np.ndarray
    # Per test sample: the 3-class dead band (both fees + spread share + threshold) its labels used.
    test_band: np.ndarray | None = None


def dead_band(book: BookArrays, idx: np.ndarray, config: BacktestConfig) -> np.ndarray:
    """The flat band of the 3-class labels per decision: the trading rule's threshold plus its round-trip
    cost (both fees + ``spread_cost_factor`` x the relative spread at that snapshot)."""
    return config.threshold + decision_costs(book, np.asarray(idx, dtype=np.int64), config)


def _sub(book: BookArrays, lo: int, hi: int) -> BookArrays:
    return BookArrays(
        ts=book.ts[lo:hi],
        ask_px=book.ask_px[lo:hi],
        ask_sz=book.ask_sz[lo:hi],
        bid_px=book.bid_px[lo:hi],
        bid_sz=book.bid_sz[lo:hi],
    )


def thin(ends: np.ndarray, cap: int | None) -> np.ndarray:
    """At most ``cap`` of ``ends``, evenly spaced over the period (every k-th, k = ceil(n / cap)); all of
    them when they fit or ``cap`` is None."""
    if cap is None or len(ends) <= cap:
        return ends
    return ends[:: -(-len(ends) // cap)]


def split_fit_ends(
    combined: LabelledFrame,
    split: Split,
    *,
    window: int,
    train_stride: int,
    offset: int = 0,
    max_val: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A split's training and validation window ends in ``combined`` (its first ``offset`` rows are extra
    training periods older than the evaluated data, e.g. spike periods), the validation ends thinned to
    ``max_val``. One definition for the per-market walk-forward and the pooled model's training sets
    (``mlmodel.services.pooled``)."""
    tr_ends = window_ends(
        combined, window=window, t_start=split.train[0], t_end=split.train[1], stride=train_stride
    )
    if offset:
        extra_ends = window_ends(
            combined, window=window, t_end=int(combined.frame.ts[offset]), stride=train_stride
        )
        tr_ends = np.union1d(extra_ends[extra_ends < offset], tr_ends)
    va_ends = window_ends(combined, window=window, t_start=split.val[0], t_end=split.val[1])
    return tr_ends, thin(va_ends, max_val)


def split_normalised(
    combined: LabelledFrame, split: Split, *, offset: int = 0
) -> tuple[Normalizer, np.ndarray]:
    """The split's normalisation, fitted on its training rows only (and the extra rows before ``offset``),
    and every row of ``combined`` normalised with it."""
    f = combined.frame
    in_train = f.valid & (f.ts < split.train[1]) & ((f.ts >= split.train[0]) | (np.arange(len(f)) < offset))
    norm = Normalizer.fit(f.X, rows=in_train)
    return norm, norm.transform(f.X)


def walk_forward_evaluate(
    data: LabelledFrame,
    book: BookArrays,
    splits: list[Split],
    factories: Mapping[str, ModelFactory],
    *,
    config: EvalConfig | None = None,
    extra_train: LabelledFrame | None = None,
    guard: TestPeriodGuard | None = None,
    on_event: EventFn | None = None,
) -> tuple[dict[str, Any], dict[int, dict[str, SplitOutcome]]]:
    """Fit every model on each split's training period (plus ``extra_train``, e.g. spike periods that are
    older than ``data``), select on validation, then open the test period once per model for its metrics and
    backtest. ``book`` is the order book of ``data`` row for row (it fills the backtest's orders).

    Returns (report dict, outcomes per split and model)."""
    cfg = config or EvalConfig()
    if len(book) != len(data):
        raise ValueError("book and data must be row-aligned")
    if PERSISTENCE not in factories:
        raise ValueError("the persistence baseline must be evaluated too (it is the bar to beat)")
    guard = guard or TestPeriodGuard()
    offset = 0
    combined = data
    if extra_train is not None and len(extra_train):
        if int(extra_train.frame.ts[-1]) >= int(data.frame.ts[0]):
            raise ValueError("extra training periods must precede the evaluated data")
        combined = concat_labelled([extra_train, data])
        offset = len(extra_train)
    f = combined.frame
    W = cfg.window
    overlap = label_overlap_rows(data.frame.ts, combined.horizon_s)
    outcomes: dict[int, dict[str, SplitOutcome]] = {}
    split_reports = []
    for split in splits:
        tr_ends, va_ends = split_fit_ends(
            combined,
            split,
            window=W,
            train_stride=cfg.train_stride,
            offset=offset,
            max_val=cfg.max_eval_windows,
        )
        # Decisions are every usable window in the test period; metrics use those whose label is known.
        te_ends = window_ends(
            combined,
            window=W,
            t_start=split.test[0],
            t_end=split.test[1],
            stride=cfg.eval_stride,
            require_label=False,
        )
        all_decisions = len(te_ends)
        te_ends = thin(te_ends, cfg.max_eval_windows)
        horizon_ms = int(round(combined.horizon_s * 1000))
        te_lab = np.isfinite(combined.y[te_ends]) & (f.ts[te_ends] + horizon_ms < split.test[1])
        if len(tr_ends) == 0 or len(va_ends) == 0 or not te_lab.any():
            split_reports.append(
                {
                    "split": split.to_dict(),
                    "skipped": "not enough labelled windows",
                    "samples": {"train": len(tr_ends), "val": len(va_ends), "test": int(te_lab.sum())},
                }
            )
            continue
        norm, Xn = split_normalised(combined, split, offset=offset)
        ws_tr = make_windowset(combined, Xn, tr_ends, window=W)
        ws_va = make_windowset(combined, Xn, va_ends, window=W)
        ws_te = make_windowset(combined, Xn, te_ends, window=W)
        ctx = SplitContext(split, norm, f.names, f.config, combined.horizon_s, W)
        book_lo = int(np.searchsorted(book.ts, split.test[0], side="left"))
        book_hi = int(np.searchsorted(book.ts, split.test[1], side="left"))
        test_book = _sub(book, book_lo, book_hi)
        dec_idx = te_ends - offset - book_lo
        band_va = dead_band(book, va_ends - offset, cfg.backtest)
        band_te = dead_band(test_book, dec_idx[te_lab], cfg.backtest)
        per_model: dict[str, SplitOutcome] = {}
        for name, factory in factories.items():
            if on_event:
                on_event({"stage": "fit", "split": split.index, "model": name, "n_splits": len(splits)})
            model = factory(ctx)
            model.fit(ws_tr, ws_va)
            val_m = prediction_metrics(
                ws_va.y, model.predict(ws_va), move_threshold=cfg.move_threshold, dead_band=band_va
            )
            guard.open(split.index, name)  # from here on the model is fixed; the test period is used once
            p_te = model.predict(ws_te)
            y_te = ws_te.y[te_lab].astype(np.float64)
            test_m = prediction_metrics(
                y_te, p_te[te_lab], move_threshold=cfg.move_threshold, dead_band=band_te
            )
            bt = run_backtest(test_book, dec_idx, p_te, config=cfg.backtest)
            per_model[name] = SplitOutcome(
                val=val_m,
                test=test_m,
                backtest=bt.to_dict(max_points=cfg.max_plot_points),
                fitted=model,
                test_pred=p_te[te_lab],
                test_y=y_te,
                test_band=band_te,
            )
        outcomes[split.index] = per_model
        for o in per_model.values():
            o.test["ci"] = _class_ci([o], cfg, overlap)  # type: ignore[assignment]
        split_reports.append(
            {
                "split": split.to_dict(),
                "samples": {
                    "train": len(ws_tr),
                    "val": len(ws_va),
                    "test": int(te_lab.sum()),
                    "test_decisions": len(ws_te),
                    # Every k-th usable test window is a decision (k > 1 only past ML_MAX_EVAL_WINDOWS).
                    "test_decision_stride": -(-all_decisions // max(len(ws_te), 1)),
                },
                "sample_ts": {
                    "train": [int(ws_tr.ts.min()), int(ws_tr.ts.max())],
                    "val": [int(ws_va.ts.min()), int(ws_va.ts.max())],
                    "test": [int(ws_te.ts.min()), int(ws_te.ts.max())],
                },
                "models": {
                    n: {"val": o.val, "test": o.test, "backtest": o.backtest["metrics"]}
                    for n, o in per_model.items()
                },
            }
        )
    report = {
        "config": {
            "window": W,
            "move_threshold": cfg.move_threshold,
            "backtest": cfg.backtest.to_dict(),
            "horizon_s": combined.horizon_s,
            "train_stride": cfg.train_stride,
            "eval_stride": cfg.eval_stride,
            "max_eval_windows": cfg.max_eval_windows,
            "dead_band": "threshold + both fees + spread_cost_factor x relative spread, per sample",
            "label_overlap_rows": overlap,
            "bootstrap": {
                "samples": cfg.bootstrap_samples,
                "block_rows": cfg.bootstrap_block,  # None: max(label overlap, n^(1/3)) per period
                "seed": cfg.bootstrap_seed,
                "level": 0.90,
            },
        },
        "splits": split_reports,
        "summary": summarize(outcomes, config=cfg, overlap=overlap),
    }
    return report, outcomes


def _class_ci(rows: list[SplitOutcome], cfg: EvalConfig, overlap: int) -> dict[str, Any]:
    """Bootstrap intervals of the test macro-F1 and MCC over ``rows`` (one per test period)."""
    ys, ps = [], []
    for r in rows:
        band = r.test_band if r.test_band is not None else cfg.move_threshold
        ys.append(three_class(r.test_y, dead_band=band))
        ps.append(three_class(r.test_pred, dead_band=band))
    n = max((y.size for y in ys), default=0)
    block = cfg.bootstrap_block or bootstrap_block(n, overlap)
    out: dict[str, Any] = dict(
        block_bootstrap_ci(ys, ps, block=block, n_boot=cfg.bootstrap_samples, seed=cfg.bootstrap_seed)
    )
    out["block_rows"] = block
    return out


def _pooled(outcomes: dict[int, dict[str, SplitOutcome]], name: str, part: str) -> dict[str, float]:
    """Pooled over the periods: MSE/MAE/correlation weighted by samples; directional accuracy as hits over
    moves (periods without moves add nothing; NaN when no period moved); counts summed."""
    rows = [o[name] for o in outcomes.values() if name in o]
    if not rows:
        return {}
    parts = [getattr(r, part) for r in rows]
    n = np.array([m["n"] for m in parts])
    out: dict[str, float] = {}
    for key in ("mse", "mae", "corr", "f1_moves"):
        vals = np.array([m.get(key, math.nan) for m in parts], dtype=np.float64)
        out[key] = float(np.sum(vals * n) / max(n.sum(), 1))  # sample-weighted over splits
    for key in ("moves", "dir_hits", "calls", "tradeable"):
        out[key] = float(sum(m.get(key, 0.0) for m in parts))
    out["dir_acc"] = out["dir_hits"] / out["moves"] if out["moves"] else math.nan
    calls = [(m.get("dir_acc_calls", math.nan), m.get("calls", 0.0)) for m in parts]
    hit_calls = sum(a * c for a, c in calls if c)
    out["dir_acc_calls"] = hit_calls / out["calls"] if out["calls"] else math.nan
    out["n"] = float(n.sum())
    return out


def _pooled_classes(rows: list[SplitOutcome], cfg: EvalConfig) -> dict[str, float]:
    """Macro-F1 and MCC of the test periods' samples taken together (one confusion matrix)."""
    cm = np.zeros((3, 3), dtype=np.int64)
    for r in rows:
        band = r.test_band if r.test_band is not None else cfg.move_threshold
        cm += confusion3(three_class(r.test_y, dead_band=band), three_class(r.test_pred, dead_band=band))
    return {"macro_f1": macro_f1(cm), "mcc": mcc(cm)}


def summarize(
    outcomes: dict[int, dict[str, SplitOutcome]],
    *,
    config: EvalConfig | None = None,
    overlap: int = 1,
) -> dict[str, dict[str, Any]]:
    """Per model, pooled over splits: validation and test metrics (test macro-F1 and MCC on the pooled
    samples, with block-bootstrap intervals), summed backtest P&L, and whether it beat persistence on
    validation."""
    cfg = config or EvalConfig()
    names: list[str] = []
    for per in outcomes.values():
        names += [n for n in per if n not in names]
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        rows = [o[name] for o in outcomes.values() if name in o]
        bts = [r.backtest["metrics"] for r in rows]
        test = _pooled(outcomes, name, "test")
        test.update(_pooled_classes(rows, cfg))
        summary[name] = {
            "val": _pooled(outcomes, name, "val"),
            "test": {**test, "ci": _class_ci(rows, cfg, overlap)},
            "backtest": {
                "net_pnl": float(sum(b["net_pnl"] for b in bts)),
                "return": float(sum(b["return"] for b in bts)),
                "n_round_trips": float(sum(b["n_round_trips"] for b in bts)),
                "fees": float(sum(b["fees"] for b in bts)),
                "buy_hold_pnl": float(sum(b["buy_hold_pnl"] for b in bts)),
                "max_drawdown": float(max((b["max_drawdown"] for b in bts), default=0.0)),
                "sharpe_mean": float(np.mean([b["sharpe"] for b in bts])) if bts else 0.0,
            },
            "n_splits": len(bts),
        }
    base = summary.get(PERSISTENCE, {}).get("val", {}).get("mse")
    for s in summary.values():
        mse = s["val"].get("mse")
        s["beats_persistence_on_validation"] = bool(
            base is not None and mse is not None and math.isfinite(mse) and mse < base
        )
    return summary


def shuffled_labels(data: LabelledFrame, *, seed: int) -> LabelledFrame:
    """The null-label control: the same features and books with the defined labels permuted at random, so
    any skill a model shows on it is what the pipeline finds where there is nothing to find."""
    y = np.array(data.y, dtype=np.float64, copy=True)
    fin = np.flatnonzero(np.isfinite(y))
    y[fin] = y[np.random.default_rng(seed).permutation(fin)]
    return LabelledFrame(frame=data.frame, y=y, horizon_s=data.horizon_s)

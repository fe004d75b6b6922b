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
from mlmodel.backtest import BacktestConfig, run_backtest
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


def prediction_metrics(y: np.ndarray, p: np.ndarray, *, move_threshold: float) -> dict[str, float]:
    """MSE, MAE, correlation, directional accuracy on moves beyond the round-trip fee, the same for the
    model's confident calls, and macro F1 of the up/down classes with the fee as the dead band."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = int(y.shape[0])
    if n == 0:
        return {
            "n": 0.0,
            "mse": math.nan,
            "mae": math.nan,
            "corr": 0.0,
            "dir_acc": 0.0,
            "dir_acc_calls": 0.0,
            "calls": 0.0,
            "f1_moves": 0.0,
            "moves": 0.0,
        }
    corr = 0.0
    if np.std(y) > 0 and np.std(p) > 0:
        corr = float(np.corrcoef(y, p)[0, 1])
    moves = np.abs(y) > move_threshold
    dir_acc = float(np.mean(np.sign(p[moves]) == np.sign(y[moves]))) if moves.any() else 0.0
    calls = np.abs(p) > move_threshold
    dir_calls = float(np.mean(np.sign(p[calls]) == np.sign(y[calls]))) if calls.any() else 0.0
    yc = three_class(y, dead_band=move_threshold)
    pc = three_class(p, dead_band=move_threshold)
    f1 = float(f1_score(yc, pc, labels=[DOWN, UP], average="macro", zero_division=0))
    return {
        "n": float(n),
        "mse": float(np.mean((p - y) ** 2)),
        "mae": float(np.mean(np.abs(p - y))),
        "corr": corr,
        "dir_acc": dir_acc,
        "dir_acc_calls": dir_calls,
        "calls": float(calls.sum()),
        "f1_moves": f1,
        "moves": float(moves.sum()),
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


@dataclass
class SplitOutcome:
    """One model's result on one split; ``fitted`` is kept so the caller can save the last split's model."""

    val: dict[str, float]
    test: dict[str, float]
    backtest: dict[str, Any]
    fitted: ReturnModel
    test_pred: np.ndarray
    test_y: np.ndarray


def _sub(book: BookArrays, lo: int, hi: int) -> BookArrays:
    return BookArrays(
        ts=book.ts[lo:hi],
        ask_px=book.ask_px[lo:hi],
        ask_sz=book.ask_sz[lo:hi],
        bid_px=book.bid_px[lo:hi],
        bid_sz=book.bid_sz[lo:hi],
    )


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
    outcomes: dict[int, dict[str, SplitOutcome]] = {}
    split_reports = []
    for split in splits:
        tr_ends = window_ends(
            combined, window=W, t_start=split.train[0], t_end=split.train[1], stride=cfg.train_stride
        )
        if offset:
            extra_ends = window_ends(combined, window=W, t_end=int(data.frame.ts[0]), stride=cfg.train_stride)
            tr_ends = np.union1d(extra_ends[extra_ends < offset], tr_ends)
        va_ends = window_ends(combined, window=W, t_start=split.val[0], t_end=split.val[1])
        # Decisions are every usable window in the test period; metrics use those whose label is known.
        te_ends = window_ends(
            combined,
            window=W,
            t_start=split.test[0],
            t_end=split.test[1],
            stride=cfg.eval_stride,
            require_label=False,
        )
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
        in_train = (
            f.valid & (f.ts < split.train[1]) & ((f.ts >= split.train[0]) | (np.arange(len(f)) < offset))
        )
        norm = Normalizer.fit(f.X, rows=in_train)
        Xn = norm.transform(f.X)
        ws_tr = make_windowset(combined, Xn, tr_ends, window=W)
        ws_va = make_windowset(combined, Xn, va_ends, window=W)
        ws_te = make_windowset(combined, Xn, te_ends, window=W)
        ctx = SplitContext(split, norm, f.names, f.config, combined.horizon_s, W)
        book_lo = int(np.searchsorted(book.ts, split.test[0], side="left"))
        book_hi = int(np.searchsorted(book.ts, split.test[1], side="left"))
        test_book = _sub(book, book_lo, book_hi)
        dec_idx = te_ends - offset - book_lo
        per_model: dict[str, SplitOutcome] = {}
        for name, factory in factories.items():
            if on_event:
                on_event({"stage": "fit", "split": split.index, "model": name, "n_splits": len(splits)})
            model = factory(ctx)
            model.fit(ws_tr, ws_va)
            val_m = prediction_metrics(ws_va.y, model.predict(ws_va), move_threshold=cfg.move_threshold)
            guard.open(split.index, name)  # from here on the model is fixed; the test period is used once
            p_te = model.predict(ws_te)
            y_te = ws_te.y[te_lab].astype(np.float64)
            test_m = prediction_metrics(y_te, p_te[te_lab], move_threshold=cfg.move_threshold)
            bt = run_backtest(test_book, dec_idx, p_te, config=cfg.backtest)
            per_model[name] = SplitOutcome(
                val=val_m,
                test=test_m,
                backtest=bt.to_dict(max_points=cfg.max_plot_points),
                fitted=model,
                test_pred=p_te[te_lab],
                test_y=y_te,
            )
        outcomes[split.index] = per_model
        split_reports.append(
            {
                "split": split.to_dict(),
                "samples": {
                    "train": len(ws_tr),
                    "val": len(ws_va),
                    "test": int(te_lab.sum()),
                    "test_decisions": len(ws_te),
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
        },
        "splits": split_reports,
        "summary": summarize(outcomes),
    }
    return report, outcomes


def _pooled(outcomes: dict[int, dict[str, SplitOutcome]], name: str, part: str) -> dict[str, float]:
    rows = [o[name] for o in outcomes.values() if name in o]
    if not rows:
        return {}
    n = np.array([getattr(r, part)["n"] for r in rows])
    out: dict[str, float] = {}
    for key in ("mse", "mae", "corr", "dir_acc", "dir_acc_calls", "f1_moves"):
        vals = np.array([getattr(r, part)[key] for r in rows], dtype=np.float64)
        out[key] = float(np.sum(vals * n) / max(n.sum(), 1))  # sample-weighted over splits
    out["n"] = float(n.sum())
    return out


def summarize(outcomes: dict[int, dict[str, SplitOutcome]]) -> dict[str, dict[str, Any]]:
    """Per model, pooled over splits: validation and test metrics, summed backtest P&L, and whether it beat
    persistence on validation (the condition for promotion)."""
    names: list[str] = []
    for per in outcomes.values():
        names += [n for n in per if n not in names]
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        bts = [o[name].backtest["metrics"] for o in outcomes.values() if name in o]
        summary[name] = {
            "val": _pooled(outcomes, name, "val"),
            "test": _pooled(outcomes, name, "test"),
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


def promotable(report: Mapping[str, Any], *, model: str = "lstm") -> bool:
    """A model that does not beat persistence on validation is never promoted."""
    s = report.get("summary", {}).get(model)
    return bool(s and s.get("beats_persistence_on_validation") and s.get("n_splits", 0) > 0)


def beats(
    candidate_report: Mapping[str, Any],
    incumbent_report: Mapping[str, Any] | None,
    *,
    model: str = "lstm",
    incumbent_model: str | None = None,
) -> bool:
    """Promotion rule: the candidate must be promotable and, against the incumbent evaluated on the same
    walk-forward test, have strictly higher net P&L and at least the same directional accuracy."""
    if not promotable(candidate_report, model=model):
        return False
    if incumbent_report is None:
        return True
    cand = candidate_report["summary"][model]
    inc = incumbent_report.get("summary", {}).get(incumbent_model or model)
    if not inc or inc.get("n_splits", 0) == 0:
        return True
    return bool(
        cand["backtest"]["net_pnl"] > inc["backtest"]["net_pnl"]
        and cand["test"].get("dir_acc", 0.0) >= inc["test"].get("dir_acc", 0.0)
    )

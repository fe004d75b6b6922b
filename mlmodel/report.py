"""Evaluation reports: a JSON-safe dict (stored with the model) and plots as PNG/SVG bytes (Agg backend)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Korean labels need a CJK font: matplotlib falls back per glyph to the next family (fonts-noto-cjk).
plt.rcParams["font.family"] = ["DejaVu Sans", "Noto Sans CJK KR", "Noto Sans CJK JP", "NanumGothic"]
import numpy as np  # noqa: E402

from mlmodel.evaluation import PERSISTENCE, SplitOutcome  # noqa: E402


def json_safe(obj: Any) -> Any:
    """Numpy scalars/arrays to Python, NaN/inf to None, tuples to lists: storable as JSON."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def calibration_table(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> list[dict[str, float]]:
    """Mean realised return per quantile bin of the predicted return (a calibrated model lies on y = x)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.size == 0 or np.std(p) == 0:
        return [
            {
                "pred_mean": float(np.mean(p)) if p.size else 0.0,
                "real_mean": float(np.mean(y)) if y.size else 0.0,
                "n": float(y.size),
            }
        ]
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    out = []
    for b in range(len(edges) - 1):
        m = which == b
        if m.any():
            out.append(
                {"pred_mean": float(p[m].mean()), "real_mean": float(y[m].mean()), "n": float(m.sum())}
            )
    return out


def build_report(
    eval_report: Mapping[str, Any],
    outcomes: Mapping[int, Mapping[str, SplitOutcome]],
    *,
    model: str = "lstm",
    data: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored report: evaluation (per split + summary), calibration, a plain-words verdict."""
    summary = eval_report.get("summary", {})
    ys = [o[model].test_y for o in outcomes.values() if model in o]
    ps = [o[model].test_pred for o in outcomes.values() if model in o]
    y = np.concatenate(ys) if ys else np.zeros(0)
    p = np.concatenate(ps) if ps else np.zeros(0)
    s = summary.get(model, {})
    ok = bool(s.get("beats_persistence_on_validation")) and s.get("n_splits", 0) > 0
    base = summary.get(PERSISTENCE, {})
    dir_acc = s.get("test", {}).get("dir_acc", math.nan)
    # No move beyond the fee in the test periods: there is no accuracy to state (not 0, not "nan").
    dir_acc_text = "-" if dir_acc is None or not math.isfinite(float(dir_acc)) else f"{float(dir_acc):.3f}"
    verdict = (
        f"{model}: validation MSE {s.get('val', {}).get('mse', math.nan):.3e} vs persistence "
        f"{base.get('val', {}).get('mse', math.nan):.3e}; test directional accuracy on moves beyond the fee "
        f"{dir_acc_text}; "
        f"backtest net P&L {s.get('backtest', {}).get('net_pnl', 0.0):,.0f}"
        f" KRW (buy-and-hold {s.get('backtest', {}).get('buy_hold_pnl', 0.0):,.0f}). "
        + (
            "Beats persistence on validation (the promotion gate, on the test periods, decides)."
            if ok
            else "Does NOT beat persistence on validation."
        )
    )
    return json_safe(
        {
            "model": model,
            "verdict": verdict,
            "promotable": False,  # the promotion gate's verdict, set by services.pipeline_run
            "evaluation": eval_report,
            "calibration": calibration_table(y, p),
            "data": dict(data or {}),
            "training": dict(training or {}),
        }
    )


# Plot wording per language; render_plots draws each plot once per language (pages show the reader's own).
PLOT_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "binned_mean": "binned mean",
        "predicted": "predicted return (bps)",
        "realised": "realised return (bps)",
        "model": "model",
        "ideal": "ideal",
        "decile_predicted": "mean predicted return per decile (bps)",
        "decile_realised": "mean realised return (bps)",
        "minutes": "minutes",
        "equity": "equity (KRW)",
    },
    "ko": {
        "binned_mean": "구간 평균",
        "predicted": "예측 수익률 (bp)",
        "realised": "실현 수익률 (bp)",
        "model": "모델",
        "ideal": "이상적",
        "decile_predicted": "10분위별 평균 예측 수익률 (bp)",
        "decile_realised": "평균 실현 수익률 (bp)",
        "minutes": "분",
        "equity": "자산 (원)",
    },
}
PLOT_LANGUAGES = tuple(PLOT_LABELS)


def localized_plot_name(name: str, language: str) -> str:
    """Stored name of a plot in a language; English keeps the plain name (older versions have only that)."""
    return name if language == "en" else f"{name}-{language}"


def _fig_bytes(fig: Any, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_pred_vs_realised(
    y: np.ndarray, p: np.ndarray, *, fmt: str = "png", max_points: int = 5000, language: str = "en"
) -> bytes:
    words = PLOT_LABELS[language]
    y = np.asarray(y, dtype=np.float64) * 1e4
    p = np.asarray(p, dtype=np.float64) * 1e4
    step = max(1, y.size // max_points)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(p[::step], y[::step], s=3, alpha=0.3)
    cal = calibration_table(y, p)
    pred_means, real_means = [c["pred_mean"] for c in cal], [c["real_mean"] for c in cal]
    ax.plot(pred_means, real_means, "r-o", ms=3, label=words["binned_mean"])
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel(words["predicted"])
    ax.set_ylabel(words["realised"])
    ax.legend(loc="best")
    return _fig_bytes(fig, fmt)


def plot_calibration(y: np.ndarray, p: np.ndarray, *, fmt: str = "png", language: str = "en") -> bytes:
    words = PLOT_LABELS[language]
    cal = calibration_table(np.asarray(y) * 1e4, np.asarray(p) * 1e4)
    fig, ax = plt.subplots(figsize=(5, 4))
    xs = [c["pred_mean"] for c in cal]
    ax.plot(xs, [c["real_mean"] for c in cal], "o-", label=words["model"])
    lim = max([abs(v) for v in xs] + [1e-9])
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8, label=words["ideal"])
    ax.set_xlabel(words["decile_predicted"])
    ax.set_ylabel(words["decile_realised"])
    ax.legend(loc="best")
    return _fig_bytes(fig, fmt)


def plot_equity(
    curves: Mapping[str, tuple[list[int] | np.ndarray, list[float] | np.ndarray]],
    *,
    fmt: str = "png",
    language: str = "en",
) -> bytes:
    """Equity curves (KRW) by name, x = minutes since the first point."""
    words = PLOT_LABELS[language]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, (ts, eq) in curves.items():
        t = np.asarray(ts, dtype=np.float64)
        if t.size:
            ax.plot((t - t[0]) / 60000.0, np.asarray(eq, dtype=np.float64), lw=1, label=name)
    ax.set_xlabel(words["minutes"])
    ax.set_ylabel(words["equity"])
    ax.legend(loc="best", fontsize=8)
    return _fig_bytes(fig, fmt)


def render_plots(
    outcomes: Mapping[int, Mapping[str, SplitOutcome]], *, model: str = "lstm", fmt: str = "png"
) -> dict[str, bytes]:
    """``pred_vs_realised``, ``calibration`` (test periods pooled) and ``equity_split_<k>`` per split, once
    per language of PLOT_LABELS (``calibration-ko``, ...)."""
    ys = [o[model].test_y for o in outcomes.values() if model in o]
    ps = [o[model].test_pred for o in outcomes.values() if model in o]
    y = np.concatenate(ys) if ys else np.zeros(0)
    p = np.concatenate(ps) if ps else np.zeros(0)
    plots: dict[str, bytes] = {}
    for lang in PLOT_LANGUAGES:
        drawn = {
            "pred_vs_realised": plot_pred_vs_realised(y, p, fmt=fmt, language=lang),
            "calibration": plot_calibration(y, p, fmt=fmt, language=lang),
        }
        for k, per in outcomes.items():
            curves = {n: (o.backtest["equity_ts"], o.backtest["equity"]) for n, o in per.items()}
            drawn[f"equity_split_{k}"] = plot_equity(curves, fmt=fmt, language=lang)
        plots.update({localized_plot_name(base, lang): png for base, png in drawn.items()})
    return plots

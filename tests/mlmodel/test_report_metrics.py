"""Report metrics that answer "is there signal?": 3-class labels with the cost dead band, macro-F1 and MCC
against hand-computed confusion matrices, directional accuracy only over samples that moved (NaN, shown
"-", where none), tradeable moves, block-bootstrap intervals, the null-label control and the settings
header of ``ml_report``."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef

from mlmodel.backtest import BacktestConfig
from mlmodel.dataset import LabelledFrame
from mlmodel.evaluation import (
    EvalConfig,
    SplitOutcome,
    block_bootstrap_ci,
    bootstrap_block,
    confusion3,
    dead_band,
    label_overlap_rows,
    macro_f1,
    mcc,
    prediction_metrics,
    shuffled_labels,
    summarize,
)
from mlmodel.labels import DOWN, FLAT, UP, three_class
from tests.mlmodel.synth import book_from_rows

# rows = true DOWN/FLAT/UP, columns = predicted
CM = np.array([[2, 1, 0], [1, 3, 1], [0, 0, 2]])


def test_macro_f1_and_mcc_on_a_known_confusion_matrix() -> None:
    # F1 per class = 2 tp / (predicted + true): 4/6, 6/9, 4/5
    assert macro_f1(CM) == pytest.approx((4 / 6 + 6 / 9 + 4 / 5) / 3)
    # Gorodkin: (c s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)) with s=10, c=7, t=(3,5,2), p=(3,4,3)
    assert mcc(CM) == pytest.approx((7 * 10 - 35) / math.sqrt((100 - 34) * (100 - 38)))
    # the same as scikit-learn on the samples behind the matrix
    y = np.repeat([0, 0, 0, 1, 1, 1, 1, 1, 2, 2], 1)
    p = np.array([0, 0, 1, 0, 1, 1, 1, 2, 2, 2])
    assert (confusion3(y, p) == CM).all()
    assert macro_f1(CM) == pytest.approx(f1_score(y, p, average="macro"))
    assert mcc(CM) == pytest.approx(matthews_corrcoef(y, p))


def test_perfect_constant_and_empty_predictions() -> None:
    perfect = np.diag([4, 10, 6])
    assert macro_f1(perfect) == 1.0 and mcc(perfect) == 1.0
    always_flat = np.array([[0, 4, 0], [0, 10, 0], [0, 6, 0]])  # persistence: no call ever
    assert mcc(always_flat) == 0.0
    assert macro_f1(always_flat) == pytest.approx((0 + 2 * 10 / 30 + 0) / 3)
    inverted = np.array([[0, 0, 5], [0, 0, 0], [5, 0, 0]])
    assert mcc(inverted) == pytest.approx(-1.0)
    assert math.isnan(mcc(np.zeros((3, 3)))) and math.isnan(macro_f1(np.zeros((3, 3))))


def test_dead_band_is_threshold_plus_both_fees_plus_half_spread_per_snapshot() -> None:
    # spread 2 on mid 1001 at row 0, 10 on mid 1005 at row 1
    book = book_from_rows([0, 1000], [[(1002, 1)], [(1010, 1)]], [[(1000, 1)], [(1000, 1)]], levels=1)
    cfg = BacktestConfig(threshold=0.0005, fee_rate=0.0005, spread_cost_factor=0.5)
    band = dead_band(book, np.array([0, 1]), cfg)
    assert band == pytest.approx([0.0005 + 0.001 + 0.5 * 2 / 1001, 0.0005 + 0.001 + 0.5 * 10 / 1005])
    # the same return is up where the book is tight and flat where it is wide
    r = np.array([0.003, 0.003, -0.003, np.nan])
    classes = three_class(r, dead_band=np.array([band[0], band[1], band[0], band[0]]))
    assert classes.tolist() == [UP, FLAT, DOWN, -1]


def test_directional_accuracy_is_nan_without_moves_and_tradeable_moves_are_counted() -> None:
    y = np.array([0.0002, -0.0001, 0.0, 0.0003])  # nothing beyond the 0.1 % fee
    m = prediction_metrics(y, np.array([0.01, -0.01, 0.0, 0.0]), move_threshold=0.001)
    assert math.isnan(m["dir_acc"]) and m["moves"] == 0 and m["tradeable"] == 0
    y2 = np.array([0.003, -0.003, 0.0015, 0.0])
    p2 = np.array([0.004, 0.004, 0.0, -0.003])
    m2 = prediction_metrics(y2, p2, move_threshold=0.001, dead_band=0.002)
    assert m2["moves"] == 3 and m2["dir_acc"] == pytest.approx(1 / 3)  # sign(0) is no call: wrong
    assert m2["tradeable"] == 2  # |y| > 0.002: rows 0 and 1
    # classes: y = UP, DOWN, FLAT, FLAT; p = UP, UP, FLAT, DOWN
    cm = confusion3(three_class(y2, dead_band=0.002), three_class(p2, dead_band=0.002))
    assert m2["macro_f1"] == pytest.approx(macro_f1(cm)) and m2["mcc"] == pytest.approx(mcc(cm))


def _outcome(y: list[float], p: list[float], *, band: float = 0.002) -> SplitOutcome:
    ya, pa = np.array(y), np.array(p)
    m = prediction_metrics(ya, pa, move_threshold=0.001, dead_band=band)
    bt = {"net_pnl": 0.0, "return": 0.0, "n_round_trips": 0.0, "fees": 0.0, "buy_hold_pnl": 0.0}
    bt |= {"max_drawdown": 0.0, "sharpe": 0.0}
    return SplitOutcome(
        val=m,
        test=m,
        backtest={"metrics": bt},
        fitted=None,  # type: ignore[arg-type]
        test_pred=pa,
        test_y=ya,
        test_band=np.full(ya.shape, band),
    )


def test_pooled_directional_accuracy_counts_moves_not_samples() -> None:
    """The old report weighted each split's accuracy by its samples and counted a split with no move as 0:
    6 right of 6 moves reads 0.706. Pooled, it is 6 of 6; with no move anywhere it is NaN."""
    quiet = [0.0] * 50
    moved = [0.003, -0.003] * 3 + [0.0] * 14
    outcomes = {
        0: {"lstm": _outcome(quiet, quiet)},
        1: {"lstm": _outcome(moved, moved)},
        2: {"lstm": _outcome(quiet, quiet)},
    }
    s = summarize(outcomes, config=EvalConfig(bootstrap_samples=50))["lstm"]["test"]
    assert s["moves"] == 6 and s["dir_acc"] == 1.0
    assert s["tradeable"] == 6 and s["mcc"] == pytest.approx(1.0)
    none = summarize({0: {"lstm": _outcome(quiet, quiet)}}, config=EvalConfig(bootstrap_samples=50))
    assert math.isnan(none["lstm"]["test"]["dir_acc"])


def test_block_bootstrap_intervals() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    perfect = block_bootstrap_ci([y], [y], block=10, n_boot=200, seed=1)
    assert perfect["mcc"] == pytest.approx([1.0, 1.0]) and perfect["macro_f1"] == pytest.approx([1.0, 1.0])
    noise = block_bootstrap_ci(y, rng.integers(0, 3, 600), block=10, n_boot=300, seed=1)
    lo, hi = noise["mcc"]
    assert lo < 0 < hi  # chance: the interval covers 0
    again = block_bootstrap_ci(y, y[::-1].copy(), block=10, n_boot=100, seed=3)
    assert again == block_bootstrap_ci(y, y[::-1].copy(), block=10, n_boot=100, seed=3)
    # blocks at least as long as the label overlap, so overlapping labels are not counted as independent
    assert bootstrap_block(1000, 30) == 30 and bootstrap_block(1000, 1) == 10
    assert label_overlap_rows(np.arange(0, 20_000, 2000), 10.0) == 5


def test_shuffled_labels_keep_the_features_and_permute_only_defined_labels() -> None:
    frame = SimpleNamespace(ts=np.arange(6))
    y = np.array([0.1, np.nan, 0.2, 0.3, 0.4, np.nan])
    lf = LabelledFrame(frame=frame, y=y, horizon_s=10.0)  # type: ignore[arg-type]
    null = shuffled_labels(lf, seed=5)
    assert null.frame is frame and null.horizon_s == 10.0
    assert np.isnan(null.y[[1, 5]]).all() and sorted(null.y[[0, 2, 3, 4]]) == [0.1, 0.2, 0.3, 0.4]
    assert not np.array_equal(null.y, y, equal_nan=True)
    assert np.isnan(y[1]) and y[0] == 0.1  # the real labels are left alone


def _fake_params() -> Any:
    from mlmodel.services.params import TrainParams

    return TrainParams.from_dict({"market": "KRW-ADA", "epochs": 3, "feature_levels": 7})


def test_report_header_lists_every_setting_and_the_null_control(settings: Any) -> None:
    from mlmodel.management.commands import ml_report

    params = _fake_params()
    summary = summarize(
        {0: {"lstm": _outcome([0.003, -0.003, 0.0], [0.003, 0.003, 0.0])}},
        config=EvalConfig(bootstrap_samples=20),
    )
    eval_report = {
        "config": {
            "label_overlap_rows": 5,
            "backtest": BacktestConfig().to_dict(),
            "bootstrap": {"samples": 20, "block_rows": None, "seed": 0, "level": 0.9},
        },
        "summary": summary,
    }
    report = {"gate_config": {"alpha": 0.05, "min_round_trips": 20, "label_overlap_rows": 5}}
    null = SimpleNamespace(eval_report=eval_report, report={"gate": {"lstm": {"passed": False}}})
    header = "\n".join(ml_report.settings_section(params, eval_report, report, source="x", null=null))
    for words in (
        "horizon",
        "10 s (5 rows of label overlap)",
        "window",
        "≤ 3 epochs",
        "feature levels | 7",
        "3-class labels",
        "threshold 0.050% + both fees 0.10% + half-spread",
        "circular block bootstrap",
        "= 2 rows",  # max(label overlap, n^(1/3)) resolved to the block used
        "alpha 0.05",
        "≥ 20 round trips",
        "null-label control | the same pipeline on labels permuted at random",
    ):
        assert words in header, words
    section = "\n".join(ml_report.null_section(null))  # type: ignore[arg-type]
    assert "Null-label control" in section and "no model passed" in section
    assert "| lstm | 3 |" in section
    # no moves: directional accuracy is "-", never 0
    quiet = summarize({0: {"lstm": _outcome([0.0] * 5, [0.0] * 5)}}, config=EvalConfig(bootstrap_samples=20))
    row = ml_report.class_table(quiet, title="")[2]
    assert row.startswith("| lstm | 5 | 0 | – |")
    words = ml_report.signal_words(summary, null.eval_report["summary"])
    assert words.startswith("Is there signal?")


def test_model_page_comparison_shows_macro_f1_mcc_intervals_and_a_dash_without_moves() -> None:
    from django.template.loader import render_to_string

    rows = [
        {
            "name": "lstm",
            "val": {},
            "bt": {},
            "test": {"macro_f1": 0.41, "mcc": 0.12, "ci": {"macro_f1": [0.38, 0.44], "mcc": [0.05, 0.19]}},
        },
        {"name": "persistence", "val": {}, "bt": {}, "test": {"dir_acc": None, "mcc": 0.0, "moves": 0}},
    ]
    html = render_to_string(
        "mlmodel/_comparison.html", {"rows": rows, "config": {"horizon_s": 10}, "plots": []}
    )
    assert 'data-testid="row-mcc"' in html and "0.120" in html and "[0.050, 0.190]" in html
    assert "[0.380, 0.440]" in html and "class-metrics-note" in html
    dir_row = html.split("Dir. accuracy")[1].split("</tr>")[0]
    assert dir_row.count("–") == 2  # no moves (persistence) and no value (lstm): a dash, never 0 %


def test_new_report_and_admin_strings_are_in_korean() -> None:
    from django.template.loader import render_to_string
    from django.utils import translation

    with translation.override("ko"):
        html = render_to_string("mlmodel/_comparison.html", {"rows": [], "config": {}, "plots": []})
        assert "매크로 F1 (3개 클래스)" in html and "거래 가능한 변동" in html and "블록 부트스트랩" in html
        assert translation.gettext("Undelivered:") == "전달되지 않음:"
        msg = translation.gettext(
            "No ml worker picked this run up within %(timeout)s s; is the ml worker running? "
            "(python3 dev.py run starts it; with Redis, check that the worker and the web server use the "
            "same REDIS_URL.) Start it again once it is."
        ) % {"timeout": "90"}
        assert msg.startswith("90초 안에")


def test_report_verdict_shows_a_dash_when_no_test_sample_moved() -> None:
    from mlmodel.report import build_report

    summary = {
        "lstm": {"val": {"mse": 1e-6}, "test": {"dir_acc": float("nan")}, "backtest": {}},
        "persistence": {"val": {"mse": 2e-6}},
    }
    verdict = build_report({"summary": summary}, {}, model="lstm")["verdict"]
    assert "beyond the fee -;" in verdict and "nan" not in verdict
    summary["lstm"]["test"]["dir_acc"] = 0.5
    assert "beyond the fee 0.500;" in build_report({"summary": summary}, {}, model="lstm")["verdict"]


def _bootstrap_by_index(y_cls, p_cls, *, block, n_boot, seed):  # noqa: ANN001, ANN202
    """The bootstrap drawing every resampled index (before issue 16): the reference for the prefix sums."""
    import math

    from mlmodel.evaluation import macro_f1, mcc

    rng = np.random.default_rng(seed)
    codes = [
        3 * np.clip(y, 0, 2) + np.clip(p, 0, 2) + 9 * ((y < 0) | (p < 0))
        for y, p in zip(y_cls, p_cls, strict=True)
    ]
    f1s, mccs = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        cm = np.zeros(9, dtype=np.int64)
        for code in codes:
            n = code.size
            L = min(block, n)
            starts = rng.integers(0, n, size=int(math.ceil(n / L)))
            idx = ((starts[:, None] + np.arange(L)[None, :]) % n).ravel()[:n]
            cm += np.bincount(code[idx], minlength=18)[:9]
        f1s[b], mccs[b] = macro_f1(cm.reshape(3, 3)), mcc(cm.reshape(3, 3))
    ci = {}
    for name, v in (("macro_f1", f1s), ("mcc", mccs)):
        v = v[np.isfinite(v)]
        ci[name] = (
            [float(np.percentile(v, (1 - 0.9) / 2 * 100)), float(np.percentile(v, (1 + 0.9) / 2 * 100))]
            if v.size
            else None
        )
    return ci


@pytest.mark.parametrize("block", [1, 7, 50, 5000])
def test_block_bootstrap_by_prefix_sums_equals_drawing_every_index(block: int) -> None:
    rng = np.random.default_rng(block)
    sizes = (1200, 37, 901)  # test periods of different lengths, one shorter than the block
    ys = [rng.integers(-1, 3, n) for n in sizes]  # -1: unknown labels are left out of the counts
    ps = [np.where(rng.random(n) < 0.6, y, rng.integers(0, 3, n)) for n, y in zip(sizes, ys, strict=True)]
    fast = block_bootstrap_ci(ys, ps, block=block, n_boot=150, seed=4)
    assert fast == _bootstrap_by_index(ys, ps, block=block, n_boot=150, seed=4)

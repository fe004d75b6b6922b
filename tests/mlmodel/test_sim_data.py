"""The ML core on the project's own Upbit simulator markets (event-by-event books sampled at 5 Hz)."""

from __future__ import annotations

import numpy as np

from market.upbit_sim.synthetic import SyntheticMarket
from mlmodel.backtest import BacktestConfig, run_backtest
from mlmodel.dataset import label_frame, sample_book, window_ends
from mlmodel.features import FeatureConfig, compute_features
from mlmodel.report import plot_equity, plot_pred_vs_realised
from tests.mlmodel.synth import book_from_rows


def test_sample_book_takes_the_book_in_force_at_each_grid_time() -> None:
    book = book_from_rows(
        [0, 150, 420, 430], [[(101, 1)], [(102, 1)], [(103, 1)], [(104, 1)]], [[(100, 1)]] * 4, levels=1
    )
    s = sample_book(book, every_ms=200)
    assert s.ts.tolist() == [0, 200, 400]
    assert s.ask_px[:, 0].tolist() == [101, 102, 102]


def test_features_labels_and_backtest_run_on_simulator_books() -> None:
    market = SyntheticMarket("KRW-XRP", seed=3, start_ms=1_760_000_000_000)
    events, trades = market.generate(20_000)
    book = sample_book(events, every_ms=200)
    frame = compute_features(book, trades, config=FeatureConfig())  # Upbit's tick table; 30 published levels
    assert len(frame) > 100
    assert frame.valid.mean() > 0.99
    assert np.isfinite(frame.X[frame.valid]).all()
    lf = label_frame(frame, horizon_s=5.0)
    assert len(window_ends(lf, window=20)) > 0
    rng = np.random.default_rng(0)
    res = run_backtest(
        book, np.arange(len(book)), rng.normal(0, 0.01, len(book)), config=BacktestConfig(cooldown_ms=1000)
    )
    assert all(np.isfinite(v) for v in res.metrics.values())


def test_plots_render_as_svg_too() -> None:
    svg = plot_pred_vs_realised(np.array([0.001, -0.002, 0.0]), np.array([0.0005, -0.001, 0.0001]), fmt="svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    png = plot_equity({"lstm": ([0, 60_000, 120_000], [1e6, 1.001e6, 0.999e6])})
    assert png[:4] == b"\x89PNG"

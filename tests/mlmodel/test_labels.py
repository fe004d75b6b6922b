"""Labels: future mid log-return by time (as-of the horizon), NaN past the data or across gaps."""

from __future__ import annotations

import numpy as np
import pytest

from mlmodel.labels import DOWN, FLAT, INVALID_CLASS, UP, future_log_return, three_class


def test_return_uses_the_book_in_force_at_t_plus_h() -> None:
    ts = np.array([0, 500, 1700, 2600, 4100], dtype=np.int64)
    mid = np.array([100.0, 101.0, 102.0, 99.0, 100.0])
    y = future_log_return(ts, mid, horizon_s=2.0)
    # t=0 -> 2000: last snapshot at or before is 1700 (102); t=500 -> 2500: still 1700;
    # t=1700 -> 3700: 2600 (99); t=2600 -> 4600 is past the data (last 4100): NaN; same for 4100.
    np.testing.assert_allclose(y[:3], [np.log(102 / 100), np.log(102 / 101), np.log(99 / 102)])
    assert np.isnan(y[3]) and np.isnan(y[4])


def test_horizon_ending_exactly_on_the_last_snapshot_is_defined() -> None:
    ts = np.array([0, 1000, 2000], dtype=np.int64)
    y = future_log_return(ts, np.array([1.0, 2.0, 4.0]), horizon_s=2.0)
    np.testing.assert_allclose(y[0], np.log(4.0))
    assert np.isnan(y[1:]).all()


def test_no_label_across_a_gap() -> None:
    ts = np.array([0, 1000, 2000, 3000, 90_000, 91_000, 92_000], dtype=np.int64)
    seg = np.array([0, 0, 0, 0, 1, 1, 1])
    mid = np.arange(1.0, 8.0)
    y = future_log_return(ts, mid, horizon_s=2.0, segment=seg)
    np.testing.assert_allclose(y[[0, 1]], [np.log(3 / 1), np.log(4 / 2)])
    assert np.isnan(y[2]) and np.isnan(y[3])  # 4000 and 5000 fall into the gap
    np.testing.assert_allclose(y[4], np.log(7 / 5))
    assert np.isnan(y[5:]).all()


def test_missing_mid_gives_nan() -> None:
    ts = np.array([0, 1000, 2000], dtype=np.int64)
    y = future_log_return(ts, np.array([1.0, np.nan, 2.0]), horizon_s=1.0)
    assert np.isnan(y[0]) and np.isnan(y[1])


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError):
        future_log_return(np.array([0, 1]), np.array([1.0, 1.0]), horizon_s=0)


def test_three_class_dead_band() -> None:
    r = np.array([0.002, 0.0005, -0.0005, -0.002, np.nan, 0.001])
    assert three_class(r, dead_band=0.001).tolist() == [UP, FLAT, FLAT, DOWN, INVALID_CLASS, FLAT]

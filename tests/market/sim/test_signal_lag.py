"""The planted signal's lag (``SyntheticParams.signal_lag``): takers act on the drift as it was that long ago
while the resting book leans with the drift now, so the book leads the mid; 0 (the default) is unchanged."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from market.upbit_sim.synthetic import SyntheticMarket


def _tilts(lag: float, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = SyntheticMarket("KRW-BTC", seed=4, start_ms=0)
    prm = replace(m.params, signal_strength=1.0, signal_lag=lag, signal_taker=0.02, signal_book=0.2)
    m = SyntheticMarket("KRW-BTC", seed=4, start_ms=0, params=prm)
    taker, book = [], []
    for t in times:
        taker.append(m._signal_at(float(t)))  # noqa: SLF001
        book.append(m._sig_book)  # noqa: SLF001
    # Both tilts are the same drift scaled (0.02 and 0.2, far from the +-0.9 bounds): in units of the drift.
    return np.asarray(taker) / 0.02, np.asarray(book) / 0.2


def test_takers_follow_the_drift_lag_seconds_late_while_the_book_leans_with_it_now() -> None:
    times = np.arange(0.0, 120.0, 0.25) + 0.1
    taker0, book0 = _tilts(0.0, times)
    assert np.allclose(taker0, book0) and np.std(book0) > 0.1  # no lag: one drift
    taker5, book5 = _tilts(5.0, times)
    # 5 s = 20 steps of the 0.25 s grid: the takers' drift is the book's drift 5 s earlier.
    assert np.allclose(taker5[20:], book5[:-20])
    assert not np.allclose(taker5, book5)


def test_no_lag_is_the_default_and_gives_the_same_stream() -> None:
    m = SyntheticMarket("KRW-BTC", seed=2, start_ms=0)
    assert m.params.signal_lag == 0.0
    a, _ = SyntheticMarket("KRW-BTC", seed=2, params=replace(m.params, signal_strength=1.0)).generate(3000)
    b, _ = SyntheticMarket(
        "KRW-BTC", seed=2, params=replace(m.params, signal_strength=1.0, signal_lag=0.0)
    ).generate(3000)
    assert np.array_equal(a.ask_px, b.ask_px) and np.array_equal(a.bid_sz, b.bid_sz)

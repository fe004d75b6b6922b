"""The simulator's signal-strength setting: off by default, on in the demo, shown in the banner, and when on
(the demo's announced jumps) the book's last seconds predict the next 5 s by more than Upbit's round-trip cost
(docs/simulator.md)."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from django.test import Client

from core import launcher
from market.management.commands.upbit_sim import Command
from market.upbit_sim.calibration import signal_report
from market.upbit_sim.server import SimConfig, SimulatorThread
from market.upbit_sim.synthetic import SyntheticMarket, SyntheticParams


def test_off_by_default_leaves_the_stream_unchanged() -> None:
    a, _ = SyntheticMarket("KRW-BTC", seed=5).generate(3000)
    b, _ = SyntheticMarket("KRW-BTC", seed=5, params=SyntheticParams(signal_strength=0.0)).generate(3000)
    assert np.array_equal(a.ask_sz, b.ask_sz) and np.array_equal(a.bid_px, b.bid_px)


def test_demo_strength_makes_the_book_predict_returns_beyond_the_fees() -> None:
    """Out of sample, a ridge on order-book imbalance now and over the last 6 s finds 5-s moves larger than
    0.1 % plus the spread, and trading them nets a profit after costs; with the signal off it finds nothing
    to trade. The demo's one-minute volatility is the calibrated ~0.53 % (tests/soak/stack.py)."""
    on = signal_report(code="KRW-BTC", strength=1.0, hours=0.5, seed=2)
    assert on.horizon_s == 5.0 and on.r2 > 0.2, on
    assert on.tradable_share > 0.05 and on.net_per_trade > 0, on
    assert 0.0035 < on.minute_vol < 0.008, on
    off = signal_report(code="KRW-BTC", strength=0.0, hours=0.25, seed=2)
    assert off.r2 < 0.05 and off.tradable_share < 0.01, off


def test_the_demo_signal_is_announced_jumps() -> None:
    """Strength 1 means the jumps (every ~15 s, 5 s lead, 0.3 %), the drift signal off: on it ridge-OFI reads
    the newest book as well as any model (docs/simulator.md)."""
    p = SyntheticParams(signal_strength=1.0)
    assert (p.signal_jump_every, p.signal_jump_lead, p.signal_jump_lean, p.signal_jump_wall) == (
        15.0,
        5.0,
        0.4,
        10.0,
    )
    assert p.signal_jump_size == 0.003 and p.signal_book == 0.0 and p.signal_taker == 0.0
    m = SyntheticMarket("KRW-BTC", seed=4, params=p)
    m.run_until(600_000)
    assert 25 <= m.jumps <= 60, m.jumps  # ~40 in 10 minutes


def test_sim_state_reports_the_strength() -> None:
    cfg = SimConfig(markets=["KRW-BTC"], backfill=False, signal_strength=0.5)
    with SimulatorThread(cfg) as sim:
        state = requests.get(sim.rest_url + "/_sim/state", timeout=5).json()
        assert state["signal_strength"] == 0.5
        assert sim.call(lambda s: s.source.models["KRW-BTC"].params.signal_strength) == 0.5


def test_the_launcher_turns_it_on_for_the_simulated_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIM_SIGNAL_STRENGTH", raising=False)
    kw = {
        "host": "127.0.0.1",
        "port": 8000,
        "sim_port": 8765,
        "markets": ["KRW-BTC"],
        "available_commands": set(),
    }
    _, shared = launcher.build_specs(simulate=True, **kw)
    assert shared["SIM_SIGNAL_STRENGTH"] == "1"
    # Every model of the simulated stack predicts the jumps' 5 s with a window that covers the announcement.
    assert (shared["ML_HORIZON_S"], shared["ML_WINDOW"]) == ("5", "100")
    monkeypatch.setenv("ML_WINDOW", "120")
    assert launcher.build_specs(simulate=True, **kw)[1]["ML_WINDOW"] == "120"
    monkeypatch.setenv("SIM_SIGNAL_STRENGTH", "0")
    off = launcher.build_specs(simulate=True, **kw)[1]
    assert off["SIM_SIGNAL_STRENGTH"] == "0" and "ML_HORIZON_S" not in off
    real = launcher.build_specs(simulate=False, **kw)[1]
    assert "SIM_SIGNAL_STRENGTH" not in real and "ML_HORIZON_S" not in real


@pytest.mark.django_db
def test_the_banner_shows_the_strength(client: Client, settings) -> None:  # noqa: ANN001
    settings.MARKET_SIMULATED = True
    settings.SIM_SIGNAL_STRENGTH = 1.0
    assert 'data-testid="signal-strength"' in client.get("/home").content.decode()
    settings.SIM_SIGNAL_STRENGTH = 0.0
    html = client.get("/home").content.decode()
    assert 'data-testid="simulated-banner"' in html and 'data-testid="signal-strength"' not in html


def test_the_command_takes_the_strength_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_SIGNAL_STRENGTH", "1")
    assert Command().create_parser("manage.py", "upbit_sim").parse_args([]).signal_strength == 1.0
    monkeypatch.delenv("SIM_SIGNAL_STRENGTH")
    opts = Command().create_parser("manage.py", "upbit_sim").parse_args(["--signal-strength", "0.5"])
    assert opts.signal_strength == 0.5
    assert Command().create_parser("manage.py", "upbit_sim").parse_args([]).signal_strength == 0.0


def _deep_imbalance(m: SyntheticMarket) -> float:
    book = m.book(10)
    bids = sum(v for _, v in book.bids[3:])
    asks = sum(v for _, v in book.asks[3:])
    return (bids - asks) / (bids + asks)


def test_announced_jumps_show_a_wall_first_then_reprice_the_book() -> None:
    """signal_jump_*: a wall deep in one side of the book for signal_jump_lean s, then signal_jump_lead s
    after the announcement the whole book re-prices by strength x signal_jump_size that way; none with
    signal_jump_every 0."""
    prm = SyntheticParams(signal_strength=1.0, signal_jump_every=5.0, signal_jump_lead=4.0)
    m = SyntheticMarket("KRW-BTC", seed=3, params=prm)
    seen: list[tuple[int, float, float]] = []  # (side announced, change of deep imbalance, jump)
    t_ms, announced, imb_before = 0, None, 0.0
    while len(seen) < 6 and t_ms < 600_000:
        t_ms += 250
        before, jumps = m.mid, m.jumps
        if announced is None:
            imb_before = _deep_imbalance(m)
        m.run_until(t_ms)
        if announced is None and m._lean:  # noqa: SLF001 - the wall stands: the announcement
            announced = [m._lean, t_ms, _deep_imbalance(m) - imb_before]  # noqa: SLF001
        if m.jumps > jumps and announced is not None:
            side, t_announced, lean = announced
            assert 3_500 <= t_ms - t_announced <= 4_500  # the lead
            assert not m._lean  # noqa: SLF001 - withdrawn before the jump
            seen.append((side, lean, m.mid / before - 1.0))
            announced = None
    assert len(seen) == 6, seen
    for side, lean, jump in seen:
        assert side * lean > 0.05, seen  # the deep book leaned the way of the coming jump
        assert side * jump == pytest.approx(0.003, rel=0.15), seen  # and the book re-priced that way
    plain = SyntheticMarket(
        "KRW-BTC", seed=3, params=SyntheticParams(signal_strength=1.0, signal_jump_every=0.0)
    )
    plain.run_until(120_000)
    assert plain.jumps == 0

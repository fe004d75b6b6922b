"""The promotion gate: the one rule that decides whether a candidate may trade. On the walk-forward test
periods it must beat persistence and the best cheap baseline on out-of-sample loss with significance
(one-sided Diebold-Mariano test, Newey-West HAC variance), make a positive net P&L over enough round trips,
be no worse than the active model, and fit the live feed. Pure numpy: no Django."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

PERSISTENCE = "persistence"
CHEAP_BASELINES = ("linear_ofi", "gbt")
# Names in the reason sentence, as a reader knows them.
DISPLAY = {"persistence": "persistence", "linear_ofi": "ridge-OFI", "gbt": "GBT", "lstm": "the LSTM"}


class TestOutcome(Protocol):
    """What the gate reads of one model on one test period (``evaluation.SplitOutcome`` fits)."""

    test_y: np.ndarray
    test_pred: np.ndarray
    backtest: Mapping[str, Any]


@dataclass(frozen=True)
class GateConfig:
    alpha: float = 0.05  # one-sided significance level of the loss comparisons
    min_round_trips: int = 20  # backtest round trips over all test periods
    baselines: tuple[str, ...] = CHEAP_BASELINES


@dataclass(frozen=True)
class LiveFit:
    """What the live feed gives a model: price levels per side and raw history kept per market, and what the
    model needs: its levels, its window of rows and the features' look-back."""

    model_levels: int
    feed_levels: int
    window_rows: int
    row_interval_s: float  # median seconds between snapshots in the training data
    lookback_s: float
    keep_s: float

    @property
    def needed_s(self) -> float:
        return self.lookback_s + self.window_rows * self.row_interval_s

    def problems(self) -> list[str]:
        out = []
        if self.model_levels > self.feed_levels:
            out.append(
                f"it reads {self.model_levels} price levels but the collector sends {self.feed_levels}"
            )
        if self.needed_s > self.keep_s:
            out.append(
                f"its window needs {self.needed_s:.0f} s of history but the live worker keeps "
                f"{self.keep_s:.0f} s"
            )
        return out


@dataclass(frozen=True)
class LossComparison:
    against: str
    mean_loss_diff: float  # candidate minus other, mean squared error; < 0 = the candidate is better
    stat: float
    p_value: float  # one-sided: H1 = the candidate's loss is lower
    lag: int  # Newey-West truncation lag (rows)
    n: int

    @property
    def significant(self) -> bool:
        return bool(self.mean_loss_diff < 0 and math.isfinite(self.p_value))


@dataclass(frozen=True)
class GateResult:
    candidate: str
    passed: bool
    reason: str
    comparisons: tuple[LossComparison, ...] = ()
    net_pnl: float = 0.0
    round_trips: int = 0
    incumbent_net_pnl: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    alpha: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparisons"] = [asdict(c) for c in self.comparisons]
        return out


def newey_west_lag(n: int) -> int:
    """The usual automatic truncation lag, floor(4 (n/100)^(2/9))."""
    return int(math.floor(4 * (max(n, 1) / 100.0) ** (2.0 / 9.0)))


def _long_run_variance(d: np.ndarray, lag: int) -> float:
    """Bartlett-kernel (Newey-West) long-run variance of ``d``: never negative."""
    n = d.shape[0]
    x = d - d.mean()
    v = float(np.dot(x, x) / n)
    for k in range(1, min(lag, n - 1) + 1):
        v += 2.0 * (1.0 - k / (lag + 1.0)) * float(np.dot(x[k:], x[:-k]) / n)
    return max(v, 0.0)


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def diebold_mariano(
    loss_a: Sequence[np.ndarray], loss_b: Sequence[np.ndarray], *, lag: int | None = None, against: str = ""
) -> LossComparison:
    """One-sided Diebold-Mariano test that model a has lower expected loss than b, pooled over test periods
    (each period's HAC variance on its own: the periods are not contiguous). ``lag`` defaults to the
    Newey-West rule on the longest period; callers pass at least the label overlap (horizon in rows)."""
    diffs = [
        np.asarray(a, np.float64) - np.asarray(b, np.float64) for a, b in zip(loss_a, loss_b, strict=True)
    ]
    diffs = [d[np.isfinite(d)] for d in diffs]
    diffs = [d for d in diffs if d.size]
    n = int(sum(d.size for d in diffs))
    if n < 2:
        return LossComparison(against, math.nan, math.nan, 1.0, int(lag or 0), n)
    L = int(lag if lag is not None else newey_west_lag(max(d.size for d in diffs)))
    mean = float(sum(d.sum() for d in diffs) / n)
    # Var(sum d) = sum over periods of n_k * LRV_k; the statistic is mean / sqrt(Var(sum) / n^2).
    var_sum = float(sum(d.size * _long_run_variance(d, L) for d in diffs))
    if var_sum <= 0:
        # No variation in the loss difference: equal models are not better; a constant gain is.
        stat = -math.inf if mean < 0 else (math.inf if mean > 0 else 0.0)
        p = 0.0 if mean < 0 else 1.0
        return LossComparison(against, mean, stat, p, L, n)
    stat = mean / math.sqrt(var_sum / n**2)
    return LossComparison(against, mean, float(stat), _normal_sf(-stat), L, n)


def _sq_losses(rows: Sequence[TestOutcome]) -> list[np.ndarray]:
    return [(np.asarray(r.test_pred, np.float64) - np.asarray(r.test_y, np.float64)) ** 2 for r in rows]


def _bt(row: TestOutcome) -> Mapping[str, Any]:
    bt = row.backtest
    return bt.get("metrics", bt)  # SplitOutcome keeps {"metrics": ..., curves}; tests may pass the metrics


def _name(model: str) -> str:
    return DISPLAY.get(model, model)


def gate_decide(
    outcomes: Mapping[int, Mapping[str, TestOutcome]],
    *,
    candidate: str,
    config: GateConfig | None = None,
    incumbent: str | None = None,
    label_overlap_rows: int = 0,
    live: LiveFit | None = None,
) -> GateResult:
    """Whether ``candidate`` may trade, judged on the test periods every compared model was scored on, with
    one human sentence saying why not (e.g. "beats persistence but not ridge-OFI (p=0.31); 0 round trips").
    The bar: persistence and the best cheap baseline (by pooled test MSE) beaten with p < alpha; net P&L
    > 0 over at least ``min_round_trips`` round trips; no lower net P&L than ``incumbent`` (when given);
    the live feed fits (when given)."""
    cfg = config or GateConfig()
    splits = [k for k in sorted(outcomes) if candidate in outcomes[k]]
    if not splits:
        return GateResult(
            candidate, False, f"{_name(candidate)} was not scored on any test period", alpha=cfg.alpha
        )
    cand_rows = [outcomes[k][candidate] for k in splits]
    cand_loss = _sq_losses(cand_rows)
    n_rows = max(int(np.asarray(r.test_y).size) for r in cand_rows)
    lag = max(newey_west_lag(n_rows), int(label_overlap_rows))

    def compare(other: str) -> LossComparison | None:
        if not all(other in outcomes[k] for k in splits):
            return None
        return diebold_mariano(
            cand_loss, _sq_losses([outcomes[k][other] for k in splits]), lag=lag, against=other
        )

    comparisons: list[LossComparison] = []
    problems: list[str] = []
    checks: dict[str, bool] = {}
    persistence = compare(PERSISTENCE) if candidate != PERSISTENCE else None
    if persistence is None:
        problems.append("no persistence score on the same test periods")
        checks["beats_persistence"] = False
    else:
        comparisons.append(persistence)
        checks["beats_persistence"] = persistence.significant and persistence.p_value < cfg.alpha
    # The best cheap baseline by pooled test MSE; the candidate itself is not its own bar.
    cheap = [b for b in cfg.baselines if b != candidate and all(b in outcomes[k] for k in splits)]
    best = None
    if cheap:
        mse = {b: float(np.mean(np.concatenate(_sq_losses([outcomes[k][b] for k in splits])))) for b in cheap}
        best = min(cheap, key=lambda b: mse[b])
        cmp_best = compare(best)
        assert cmp_best is not None
        comparisons.append(cmp_best)
        checks["beats_best_baseline"] = cmp_best.significant and cmp_best.p_value < cfg.alpha
    else:
        checks["beats_best_baseline"] = True  # nothing cheaper was scored (said in the report's models)
    if persistence is not None:
        p_txt = f"p={persistence.p_value:.2g}"
        if not checks["beats_persistence"]:
            problems.append(f"does not beat persistence ({p_txt})")
        elif best is not None and not checks["beats_best_baseline"]:
            problems.append(f"beats persistence but not {_name(best)} (p={comparisons[-1].p_value:.2g})")
    if best is not None and not checks["beats_persistence"] and not checks["beats_best_baseline"]:
        problems[-1] += f" nor {_name(best)} (p={comparisons[-1].p_value:.2g})"

    net = float(sum(float(_bt(r).get("net_pnl", 0.0)) for r in cand_rows))
    trips = int(sum(float(_bt(r).get("n_round_trips", 0.0)) for r in cand_rows))
    checks["enough_round_trips"] = trips >= cfg.min_round_trips
    checks["positive_net_pnl"] = net > 0 and trips > 0
    if trips == 0:
        problems.append("0 round trips")
    elif not checks["enough_round_trips"]:
        problems.append(f"{trips} round trips (< {cfg.min_round_trips})")
    if trips and not checks["positive_net_pnl"]:
        problems.append(f"net P&L {net:,.0f} KRW after fees, spread and latency")

    inc_net: float | None = None
    if incumbent is not None and all(incumbent in outcomes[k] for k in splits):
        inc_net = float(sum(float(_bt(outcomes[k][incumbent]).get("net_pnl", 0.0)) for k in splits))
        checks["not_worse_than_active"] = net >= inc_net
        if not checks["not_worse_than_active"]:
            problems.append(f"net P&L {net:,.0f} below the active model's {inc_net:,.0f} KRW")
    if live is not None:
        live_problems = live.problems()
        checks["fits_live_feed"] = not live_problems
        problems += live_problems
    passed = all(checks.values()) and not problems
    if passed:
        parts = [f"beats persistence (p={persistence.p_value:.2g})"] if persistence else []
        if best is not None:
            parts.append(f"{_name(best)} (p={comparisons[-1].p_value:.2g})")
        reason = " and ".join(parts) + f"; net P&L {net:,.0f} KRW over {trips} round trips"
    else:
        reason = "; ".join(problems)
    return GateResult(
        candidate=candidate,
        passed=passed,
        reason=reason,
        comparisons=tuple(comparisons),
        net_pnl=net,
        round_trips=trips,
        incumbent_net_pnl=inc_net,
        checks=checks,
        alpha=cfg.alpha,
    )


def gate_all(
    outcomes: Mapping[int, Mapping[str, TestOutcome]],
    *,
    config: GateConfig | None = None,
    label_overlap_rows: int = 0,
    skip: Sequence[str] = (PERSISTENCE, "incumbent"),
) -> dict[str, GateResult]:
    """The gate for every scored model (the report's "which model would have passed")."""
    names: list[str] = []
    for per in outcomes.values():
        names += [n for n in per if n not in names and n not in skip]
    return {
        n: gate_decide(outcomes, candidate=n, config=config, label_overlap_rows=label_overlap_rows)
        for n in names
    }

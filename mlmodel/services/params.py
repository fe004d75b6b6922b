"""What a training run needs besides the data (:class:`TrainParams`, stored on the run and the version), and
the error a refused training raises."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from core.errors import ValidationFailed
from mlmodel import conf
from mlmodel.config import training_config

ProgressFn = Callable[[dict[str, Any]], None]


# The market of a pooled training run (its TrainingRun row; one at a time, like a market's own runs).
POOLED_MARKET = "*pooled*"


class TrainingFailed(ValidationFailed):
    code = "training_failed"


def _default(name: str) -> Callable[[], Any]:
    """A TrainParams default from the one training config (mlmodel/config.py)."""
    return lambda: getattr(training_config(), name)


@dataclass
class TrainParams:
    """Everything a training run needs besides the data; stored on the TrainingRun and the ModelVersion."""

    market: str = "KRW-BTC"
    data_dir: str = ""  # empty = settings.MARKET_DATA_DIR
    days: int = field(default_factory=lambda: int(conf.get("ML_TRAIN_DAYS")))
    end_day: str = ""  # ISO date; empty = newest day on disk
    horizon_s: float = field(default_factory=_default("horizon_s"))
    window: int = field(default_factory=_default("window"))
    hidden: int = field(default_factory=lambda: int(conf.get("ML_HIDDEN")))
    layers: int = field(default_factory=lambda: int(conf.get("ML_LAYERS")))
    dropout: float = field(default_factory=lambda: float(conf.get("ML_DROPOUT")))
    epochs: int = field(default_factory=_default("epochs"))
    patience: int = field(default_factory=_default("patience"))
    batch_size: int = field(default_factory=_default("batch_size"))
    lr: float = field(default_factory=_default("lr"))
    seed: int = field(default_factory=lambda: int(conf.get("ML_SEED")))
    max_samples_per_epoch: int = field(default_factory=lambda: int(conf.get("ML_MAX_SAMPLES_PER_EPOCH")))
    n_splits: int = field(default_factory=_default("n_splits"))
    train_stride: int = field(default_factory=lambda: int(conf.get("ML_TRAIN_STRIDE")))
    eval_stride: int = field(default_factory=lambda: int(conf.get("ML_EVAL_STRIDE")))
    # Bounds that keep a night's work independent of how many days a market has: validation and test
    # windows per split (mlmodel.evaluation.thin), and the rows of each market the pooled model trains on.
    max_eval_windows: int = field(default_factory=lambda: int(conf.get("ML_MAX_EVAL_WINDOWS")))
    pooled_rows_per_market: int = field(default_factory=lambda: int(conf.get("ML_POOLED_ROWS_PER_MARKET")))
    baselines: tuple[str, ...] = ("linear_ofi", "gbt")
    device: str = field(default_factory=lambda: str(conf.get("ML_DEVICE")))
    backtest_threshold: float = field(default_factory=_default("backtest_threshold"))
    backtest_order_krw: float = field(default_factory=_default("backtest_order_krw"))
    backtest_latency_ms: int = field(default_factory=_default("backtest_latency_ms"))
    feature_levels: int = field(default_factory=_default("feature_levels"))
    gate_alpha: float = field(default_factory=_default("gate_alpha"))
    gate_min_round_trips: int = field(default_factory=_default("gate_min_round_trips"))
    min_test_samples: int = field(default_factory=_default("min_test_samples"))
    spikes: bool = True
    promote_if_better: bool = False
    compare_incumbent: bool = True
    # A pooled run (``mlmodel.services.pooled``): the markets it trains on; ``market`` is POOLED_MARKET.
    markets: tuple[str, ...] = ()

    @property
    def pooled(self) -> bool:
        return bool(self.markets)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["baselines"] = list(self.baselines)
        out["markets"] = list(self.markets)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainParams:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        if "baselines" in known:
            known["baselines"] = tuple(known["baselines"])
        if "markets" in known:
            known["markets"] = tuple(known["markets"])
        params = cls(**known)
        params.validate()
        return params

    def validate(self) -> None:
        errors = []
        if not self.market or len(self.market) > 20:
            errors.append("market")
        for name in (
            "days",
            "window",
            "hidden",
            "layers",
            "epochs",
            "patience",
            "batch_size",
            "n_splits",
            "train_stride",
            "eval_stride",
            "max_samples_per_epoch",
            "max_eval_windows",
            "pooled_rows_per_market",
            "feature_levels",
            "gate_min_round_trips",
            "min_test_samples",
        ):
            if int(getattr(self, name)) < 1:
                errors.append(name)
        if not (0 < self.gate_alpha < 1):
            errors.append("gate_alpha")
        if not (self.horizon_s > 0 and math.isfinite(self.horizon_s)):
            errors.append("horizon_s")
        if not (0 <= self.dropout < 1):
            errors.append("dropout")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            errors.append("lr")
        unknown = set(self.baselines) - {"linear_ofi", "gbt"}
        if unknown:
            errors.append("baselines")
        if self.end_day:
            try:
                dt.date.fromisoformat(self.end_day)
            except ValueError:
                errors.append("end_day")
        if errors:
            raise ValidationFailed(
                _("Invalid training parameters: %(names)s.") % {"names": ", ".join(errors)},
                extra={"fields": errors},
            )

    @property
    def root(self) -> Path:
        return Path(self.data_dir) if self.data_dir else Path(settings.MARKET_DATA_DIR)

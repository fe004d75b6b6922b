"""The LSTM return model: windows of normalised order-book features -> predicted (scaled) future return."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LSTMConfig:
    n_features: int
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LSTMRegressor(nn.Module):
    """LSTM over the window, a linear head on the last hidden state."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm, self.drop, self.head = _lstm_parts(config.n_features, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.drop(out[:, -1, :])).squeeze(-1)


def _lstm_parts(
    input_size: int, config: LSTMConfig | PooledLSTMConfig
) -> tuple[nn.LSTM, nn.Dropout, nn.Linear]:
    """The LSTM, the dropout and the linear head on the last hidden state, as both regressors build them
    (attribute names are part of the stored state dicts and of the compiled kernel's weight reading)."""
    lstm = nn.LSTM(
        input_size=input_size,
        hidden_size=config.hidden,
        num_layers=config.layers,
        batch_first=True,
        dropout=config.dropout if config.layers > 1 else 0.0,
    )
    return lstm, nn.Dropout(config.dropout), nn.Linear(config.hidden, 1)


@dataclass(frozen=True)
class PooledLSTMConfig:
    """One LSTM for many markets: each market's learned embedding is fed with every time step."""

    n_features: int
    n_markets: int
    embed: int = 8
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PooledLSTMRegressor(nn.Module):
    """The LSTM of :class:`LSTMRegressor` over [features, market embedding] at every step. The embedding is
    constant along a window, so for a one-layer net it only adds a per-market term to the gates' bias
    (``mlmodel.lstm_kernel.LSTMWeights`` folds it in: one compiled forward pass serves every market)."""

    def __init__(self, config: PooledLSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.n_markets, config.embed)
        self.lstm, self.drop, self.head = _lstm_parts(config.n_features + config.embed, config)

    def forward(self, x: torch.Tensor, market: torch.Tensor) -> torch.Tensor:
        e = self.embedding(market)[:, None, :].expand(-1, x.shape[1], -1)
        out, _ = self.lstm(torch.cat([x, e.to(x.dtype)], dim=-1))
        return self.head(self.drop(out[:, -1, :])).squeeze(-1)

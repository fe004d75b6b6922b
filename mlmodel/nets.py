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
        self.lstm = nn.LSTM(
            input_size=config.n_features,
            hidden_size=config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.drop(out[:, -1, :])).squeeze(-1)

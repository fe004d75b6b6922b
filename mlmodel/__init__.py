"""Order-book ML: features, labels, datasets, the LSTM, baselines, walk-forward evaluation and the backtester.

The modules listed in ``PURE_MODULES`` import no Django and are testable on their own.
"""

PURE_MODULES = (
    "ticks",
    "features",
    "labels",
    "dataset",
    "nets",
    "training",
    "baselines",
    "evaluation",
    "backtest",
    "report",
    "inference",
)

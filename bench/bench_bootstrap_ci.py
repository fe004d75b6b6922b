"""The report's block-bootstrap intervals of macro-F1 / MCC (``evaluation.block_bootstrap_ci``, run for every
model and test period of every walk-forward run): prefix sums of the one-hot counts (now) against
drawing and counting every resampled index (before issue 16, kept in the tests as the reference), same draws,
same results (checked). 3 test periods, 1,000 resamples, the evaluation's block (max(label overlap, n^(1/3)))
with a 12-row overlap. Prints medians of 3 runs and the ratio.

    .venv/bin/python bench/bench_bootstrap_ci.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlmodel.evaluation import block_bootstrap_ci  # noqa: E402
from tests.mlmodel.test_report_metrics import _bootstrap_by_index  # noqa: E402


def main() -> None:
    rng = np.random.default_rng(0)
    for n in (10_000, 100_000, 400_000):
        ys = [rng.integers(0, 3, n) for _ in range(3)]
        ps = [rng.integers(0, 3, n) for _ in range(3)]
        block = max(12, round((3 * n) ** (1 / 3)))
        now, before = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            a = block_bootstrap_ci(ys, ps, block=block, n_boot=1000, seed=0)
            now.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = _bootstrap_by_index(ys, ps, block=block, n_boot=1000, seed=0)
            before.append(time.perf_counter() - t0)
            assert a == b
        print(
            f"3 periods x {n:,} samples, block {block}: prefix sums median {np.median(now):.2f} s, "
            f"every index {np.median(before):.2f} s, x{np.median(before) / np.median(now):.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

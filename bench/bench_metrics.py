"""What the metrics cost the collector's hot path: ``Collector.handle_records`` on 200 markets' trades and
tickers with the metrics call (``core.metrics.collector_records`` plus the once-a-second flush) and without
it (replaced by a no-op), in the same run; prints records/s for both and the ratio, and the cost per record.

    .venv/bin/python bench/bench_metrics.py [--records 200000] [--rounds 5]

Multiprocess mode (mmap files) is on, as under the launcher: ``PROMETHEUS_MULTIPROC_DIR`` is a temporary
folder set before prometheus-client is imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--markets", type=int, default=200)
    opts = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp) / "mp")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observator.settings.test")
    os.environ.setdefault("OBSERVATOR_VAR_DIR", str(Path(tmp) / "var"))
    import django

    django.setup()
    from core import metrics
    from market import collector as collector_mod
    from market.upbit.records import TickerRecord, TradeRecord

    metrics.metrics_dir_prepare(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    codes = [f"KRW-M{i:03d}" for i in range(opts.markets)]
    now = int(time.time() * 1000)
    batches: list[list] = []
    seq = dict.fromkeys(codes, 0)
    batch: list = []
    for i in range(opts.records):
        code = codes[i % len(codes)]
        if i % 3 == 2:
            required = [f.name for f in dataclasses.fields(TickerRecord) if f.default is dataclasses.MISSING]
            batch.append(TickerRecord(**{k: _dummy(k, code, now) for k in required}))
        else:
            seq[code] += 1
            batch.append(TradeRecord(code, now + i, now + i, 100.0, 1.0, 1, seq[code]))
        if len(batch) == 20:
            batches.append(batch)
            batch = []

    def run(with_metrics: bool) -> float:
        col = collector_mod.Collector(codes=codes, ws_url="ws://127.0.0.1:9/", data_dir=Path(tmp) / "data")
        original = collector_mod.metrics.collector_records
        if not with_metrics:
            collector_mod.metrics.collector_records = lambda records: None
        try:
            start = time.perf_counter()
            last = start
            for b in batches:
                col.handle_records(b)
                t = time.perf_counter()
                if t - last >= 1.0:  # the housekeeping's once-a-second flush
                    last = t
                    metrics.collector_observe(col, force=True)
            metrics.collector_observe(col, force=True)
            return time.perf_counter() - start
        finally:
            collector_mod.metrics.collector_records = original

    off = min(run(False) for _ in range(opts.rounds))
    on = min(run(True) for _ in range(opts.rounds))
    n = sum(len(b) for b in batches)
    print(f"records: {n} over {opts.markets} markets, best of {opts.rounds}")
    print(f"without metrics: {n / off:,.0f} records/s")
    print(f"with metrics:    {n / on:,.0f} records/s")
    print(f"ratio (with / without time): {on / off:.3f}; cost {(on - off) / n * 1e9:,.0f} ns a record")


def _dummy(name: str, code: str, now: int) -> object:
    if name == "code":
        return code
    if name in ("ts", "recv_ts"):
        return now
    if name == "change":
        return "EVEN"
    return 1.0


if __name__ == "__main__":
    main()

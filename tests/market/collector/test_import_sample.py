"""``manage.py import_sample``: the real KRW-ADA 2018 sample becomes closed, readable day files."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from market import dayfiles

SAMPLE = dayfiles.SAMPLE_CSV


@pytest.mark.skipif(not SAMPLE.is_file(), reason="the shared sample is not on this machine")
def test_import_sample_writes_closed_day_files(tmp_path: Path) -> None:
    out = StringIO()
    call_command("import_sample", "--csv", str(SAMPLE), "--data-dir", str(tmp_path), stdout=out)
    assert "7201 order-book snapshots" in out.getvalue()
    days = dayfiles.list_days(tmp_path, "orderbook", "KRW-ADA")
    assert days and all(d.year == 2018 and d.month == 2 for d in days)
    total = 0
    for day in days:
        directory = dayfiles.day_dir(tmp_path, "orderbook", "KRW-ADA", day)
        assert dayfiles.is_complete(directory)
        table = dayfiles.read_day(tmp_path, "orderbook", "KRW-ADA", day)
        arrays = dayfiles.book_arrays(table)
        assert arrays.levels == 7 and (arrays.ask_px[:, 0] >= arrays.bid_px[:, 0]).mean() > 0.99
        total += len(arrays)
    assert total == 7201
    trades = dayfiles.read_days(tmp_path, "trade", "KRW-ADA", days)
    assert trades.num_rows > 0 and set(trades.column("side").to_pylist()) <= {1, -1}
    # Re-running replaces, never duplicates.
    call_command("import_sample", "--csv", str(SAMPLE), "--data-dir", str(tmp_path), stdout=StringIO())
    assert sum(dayfiles.read_day(tmp_path, "orderbook", "KRW-ADA", d).num_rows for d in days) == 7201
    assert dt.date(2018, 2, 18) in days or dt.date(2018, 2, 19) in days


def test_import_sample_rejects_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="not found"):
        call_command("import_sample", "--csv", str(tmp_path / "nope.csv"), "--data-dir", str(tmp_path))

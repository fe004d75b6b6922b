"""``import_book``: anyone's snapshots (CSV / Parquet, wide layout or a column map) become day files that the
ML pipeline reads; invalid input is refused with the reasons and nothing written."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from market import dayfiles, importer
from market.importer import BookImportError, ImportOptions

T0 = 1_700_000_000_000  # 2023-11-15 07:13:20 KST
DAY = dayfiles.day_of(T0)
LEVELS = 3


def _book(n: int = 6, *, step_ms: int = 1000, mid: float = 1000.0) -> dict[str, list]:
    """A KRW book on the 1-KRW tick (prices 1000-5000): asks mid+1.., bids mid-1.."""
    cols: dict[str, list] = {"ts": [T0 + i * step_ms for i in range(n)]}
    for i in range(1, LEVELS + 1):
        cols[f"ask_price_{i}"] = [mid + i + (k % 2) for k in range(n)]
        cols[f"ask_size_{i}"] = [1.5 * i + k for k in range(n)]
        cols[f"bid_price_{i}"] = [mid - i + (k % 2) for k in range(n)]
        cols[f"bid_size_{i}"] = [2.0 * i + k for k in range(n)]
    return cols


def _write(path: Path, cols: dict[str, list]) -> Path:
    table = pa.table(cols)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pcsv.write_csv(table, path)
    return path


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _import(tmp_path: Path, book: Path, trades: Path | None = None, **opts: object) -> importer.ImportResult:
    options = ImportOptions(market=str(opts.pop("market", "KRW-TEST")), **opts)  # type: ignore[arg-type]
    return importer.book_import(book_path=book, trades_path=trades, root=tmp_path / "data", options=options)


def test_csv_round_trips_through_read_day(tmp_path: Path) -> None:
    cols = _book()
    book = _write(tmp_path / "book.csv", cols)
    trades = _write(
        tmp_path / "trades.csv",
        {
            "ts": [T0 + 1500, T0 + 2500],
            "price": [1002.0, 999.0],
            "volume": [0.5, 1.25],
            "side": ["buy", "ASK"],
        },
    )
    result = _import(tmp_path, book, trades, fee_rate=0.001)
    assert (result.snapshots, result.trades, result.levels, result.days) == (6, 2, LEVELS, [DAY])
    root = tmp_path / "data"
    got = dayfiles.read_day(root, "orderbook", "KRW-TEST", DAY)
    for name, values in cols.items():
        assert got.column(name).to_pylist() == values, name
    assert got.column("total_ask_size").to_pylist() == [
        sum(cols[f"ask_size_{i}"][k] for i in range(1, LEVELS + 1)) for k in range(6)
    ]
    meta = got.schema.metadata
    assert meta[b"levels"] == b"3" and meta[b"fee_rate"] == b"0.001" and meta[b"tick"] == b"upbit-krw"
    assert meta[b"segment_gap_ms"] == b"10000" and meta[b"source_file"] == b"book.csv"
    tr = dayfiles.read_day(root, "trade", "KRW-TEST", DAY)
    assert tr.column("side").to_pylist() == [1, -1]  # given sides are kept (Upbit ASK = seller-initiated)
    assert tr.column("price").to_pylist() == [1002.0, 999.0]
    assert dayfiles.is_complete(dayfiles.day_dir(root, "orderbook", "KRW-TEST", DAY))
    assert result.sides_given == 2


def test_parquet_with_a_column_map_and_typed_times(tmp_path: Path) -> None:
    cols = _book()
    theirs: dict[str, object] = {"time": pa.array(cols.pop("ts"), pa.timestamp("ms", tz="UTC"))}
    for i in range(1, LEVELS + 1):
        theirs[f"a{i}p"] = [p / 100 for p in cols[f"ask_price_{i}"]]  # quoted in hundreds of KRW
        theirs[f"a{i}q"] = cols[f"ask_size_{i}"]
        theirs[f"b{i}p"] = [p / 100 for p in cols[f"bid_price_{i}"]]
        theirs[f"b{i}q"] = cols[f"bid_size_{i}"]
    book = tmp_path / "book.parquet"
    pq.write_table(pa.table(theirs), book)
    mapping = importer.column_map_parse(
        "ts=time,ask_price_{i}=a{i}p,ask_size_{i}=a{i}q,bid_price_{i}=b{i}p,bid_size_{i}=b{i}q"
    )
    result = _import(tmp_path, book, columns=mapping, price_scale=100.0, levels=2)
    got = dayfiles.read_day(tmp_path / "data", "orderbook", "KRW-TEST", DAY)
    assert result.levels == 2 and dayfiles.table_levels(got) == 2 and "ask_price_3" not in got.column_names
    assert got.column("ts").to_pylist() == _book()["ts"]
    assert got.column("ask_price_1").to_pylist() == cols["ask_price_1"]  # scaled back onto the 1-KRW tick
    assert got.column("bid_size_2").to_pylist() == cols["bid_size_2"]


def test_column_map_forms(tmp_path: Path) -> None:
    as_json = tmp_path / "map.json"
    as_json.write_text(json.dumps({"ts": "time", "ask_price_1": "a1"}))
    assert importer.column_map_parse(str(as_json)) == {"ts": "time", "ask_price_1": "a1"}
    assert importer.column_map_parse("ts=time, ask_price_1=a1") == {"ts": "time", "ask_price_1": "a1"}
    with pytest.raises(BookImportError, match="not NAME=INPUT_NAME"):
        importer.column_map_parse("ts")
    book = _write(tmp_path / "book.csv", _book())
    with pytest.raises(BookImportError, match="does not have: when"):
        _import(tmp_path, book, columns={"ts": "when"})
    assert _files(tmp_path / "data") == []


def _crossed(c: dict) -> None:
    c["bid_price_1"][3] = c["ask_price_1"][3]


def _not_increasing(c: dict) -> None:
    c["ts"][4] = c["ts"][3]


def _missing_level(c: dict) -> None:
    del c["bid_size_2"]


def _nan(c: dict) -> None:
    c["ask_size_3"][2] = None


def _negative(c: dict) -> None:
    c["bid_size_1"][5] = -1.0


def _off_tick(c: dict) -> None:
    c["ask_price_2"][1] += 0.5


def _unordered(c: dict) -> None:
    c["ask_price_2"][0], c["ask_price_3"][0] = c["ask_price_3"][0], c["ask_price_2"][0]


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_crossed, "crossed or locked .* 1 row\\(s\\): 4"),
        (_not_increasing, "timestamps not increasing at 1 row\\(s\\): 5"),
        (_missing_level, "missing levels: bid_size_2"),
        (_nan, "ask prices/sizes missing or NaN in 1 row\\(s\\): 3"),
        (_negative, "negative bid sizes in 1 row\\(s\\): 6"),
        (_off_tick, "ask prices off the upbit-krw tick in 1 row\\(s\\): 2"),
        (_unordered, "ask levels not strictly rising"),
    ],
)
def test_invalid_books_are_refused_with_nothing_written(tmp_path: Path, spoil, message: str) -> None:
    cols = _book()
    spoil(cols)
    for suffix in (".csv", ".parquet"):
        book = _write(tmp_path / f"book{suffix}", cols)
        with pytest.raises(BookImportError, match=message):
            _import(tmp_path, book)
        assert _files(tmp_path / "data") == []


def test_every_problem_is_listed_and_the_command_writes_nothing(tmp_path: Path) -> None:
    cols = _book()
    _crossed(cols)
    _negative(cols)
    book = _write(tmp_path / "book.csv", cols)
    trades = _write(tmp_path / "trades.csv", {"ts": [T0], "price": [float("nan")], "volume": [1.0]})
    with pytest.raises(CommandError) as err:
        call_command(
            "import_book",
            str(book),
            "--market",
            "krw-test",
            "--data-dir",
            str(tmp_path / "data"),
            "--no-progress",
        )
    assert (
        "nothing written" in str(err.value) and "crossed" in str(err.value) and "negative" in str(err.value)
    )
    good = _write(tmp_path / "good.csv", _book())
    with pytest.raises(CommandError, match="trades: price missing, NaN or <= 0 in 1 row"):
        call_command(
            "import_book", str(good), "--trades", str(trades), "--market", "KRW-TEST",
            "--data-dir", str(tmp_path / "data"), "--no-progress",
        )  # fmt: skip
    assert _files(tmp_path / "data") == []


def test_off_tick_prices_can_be_rounded_and_a_fixed_tick_is_checked(tmp_path: Path) -> None:
    cols = _book()
    cols["ask_price_2"][1] += 0.2
    book = _write(tmp_path / "book.csv", cols)
    result = _import(tmp_path, book, off_tick="round")
    assert result.rounded_prices == 1
    got = dayfiles.read_day(tmp_path / "data", "orderbook", "KRW-TEST", DAY)
    assert got.column("ask_price_2").to_pylist() == _book()["ask_price_2"]
    with pytest.raises(BookImportError, match="off the 2 tick"):
        _import(tmp_path, _write(tmp_path / "b2.csv", _book()), tick="2", replace=True)


def test_side_inference_from_the_book_before_each_trade_else_the_tick_rule() -> None:
    book_ts = np.array([1000, 2000, 3000])
    ask = np.array([101.0, 102.0, 101.0])
    bid = np.array([99.0, 100.0, 99.0])
    trades = [
        (500, 100.0),  # before any book, first trade: nothing decides -> +1 (default)
        (1000, 99.0),  # same ms as a snapshot: that snapshot is not "before"; tick rule: down -> -1
        (1500, 101.0),  # at the ask of the 1000 book -> buy
        (1600, 99.0),  # at the bid -> sell
        (2000, 101.0),  # inside the 1000 book? no: at its ask -> buy (the 2000 book is not before it)
        (
            2500,
            101.0,
        ),  # inside the 2000 book (100 < 101 < 102): tick rule, unchanged price -> last move up: +1
        (2600, 100.5),  # inside? no: 100.5 > bid 100 and < ask 102 -> tick rule: down -> -1
        (3500, 100.0),  # inside the 3000 book (99 < 100 < 101): down from 100.5 -> -1
        (3600, 100.0),  # zero tick after a down move -> -1
    ]
    ts = np.array([t for t, _ in trades])
    price = np.array([p for _, p in trades])
    side, method = importer.sides_infer(price, ts, book_ts, ask, bid)
    assert side.tolist() == [1, -1, 1, -1, 1, 1, -1, -1, -1]
    assert method.tolist() == [3, 2, 1, 1, 1, 2, 2, 2, 2]


def test_missing_sides_are_inferred_and_given_ones_kept(tmp_path: Path) -> None:
    book = _write(tmp_path / "book.csv", _book())  # row 0: ask 1001, bid 999
    trades = _write(
        tmp_path / "trades.csv",
        {
            "ts": [T0 + 100, T0 + 200, T0 + 300, T0 + 400],
            "price": [1001.0, 999.0, 1000.0, 999.0],
            "volume": [1.0, 1.0, 1.0, 1.0],
            "side": ["", None, None, "buy"],
        },
    )
    result = _import(tmp_path, book, trades)
    tr = dayfiles.read_day(tmp_path / "data", "trade", "KRW-TEST", DAY)
    assert tr.column("side").to_pylist() == [1, -1, 1, 1]
    assert (result.sides_given, result.sides_quote, result.sides_tick) == (1, 2, 1)
    assert len(set(tr.column("sequential_id").to_pylist())) == 4


@pytest.mark.parametrize(("gap_s", "expected"), [(10.0, [(2, 3), (4, 5)]), (20.0, [(4, 5)]), (0.5, "all")])
def test_segment_gap_writes_gaps_and_the_ml_features_follow_it(
    tmp_path: Path, gap_s: float, expected
) -> None:
    from mlmodel.dataset import load_frame
    from mlmodel.features import FeatureConfig

    cols = _book(6)
    cols["ts"] = [T0 + s * 1000 for s in (0, 1, 2, 17, 18, 40)]
    book = _write(tmp_path / "book.csv", cols)
    result = _import(tmp_path, book, segment_gap_s=gap_s)
    gaps = dayfiles.read_day(tmp_path / "data", "gap", "KRW-TEST", DAY)
    pairs = list(zip(gaps.column("ts_start").to_pylist(), gaps.column("ts_end").to_pylist(), strict=True))
    if expected == "all":
        expected = [(i, i + 1) for i in range(5)]
    assert pairs == [(cols["ts"][a], cols["ts"][b]) for a, b in expected]
    assert result.gaps == len(expected) and set(gaps.column("reason").to_pylist()) <= {"import"}
    frame = load_frame(tmp_path / "data", "KRW-TEST", [DAY], config=FeatureConfig(levels=LEVELS))
    # A new segment exactly where the import put a gap: the 17 s pause is one only when the gap is < 15 s.
    assert frame.config.max_gap_ms == int(gap_s * 1000)
    assert int(np.sum(np.diff(frame.segment) != 0)) == len(expected)


def test_existing_days_are_refused_unless_replaced_and_replace_is_whole_day(tmp_path: Path) -> None:
    cols = _book()
    cols["ts"][5] = cols["ts"][4] + 60_000  # one gap row with the default 10 s
    book = _write(tmp_path / "book.csv", cols)
    _import(tmp_path, book)
    root = tmp_path / "data"
    before = {p: p.read_bytes() for p in _files(root)}
    with pytest.raises(FileExistsError, match="already exist"):
        _import(tmp_path, _write(tmp_path / "other.csv", _book(4)))
    assert {p: p.read_bytes() for p in _files(root)} == before
    _import(tmp_path, tmp_path / "other.csv", replace=True)
    assert dayfiles.read_day(root, "orderbook", "KRW-TEST", DAY).num_rows == 4
    assert not dayfiles.day_dir(root, "gap", "KRW-TEST", DAY).exists()  # the old import's gap is gone
    assert not [p for p in root.iterdir() if p.name.startswith(".import-")]


def test_days_split_at_kst_midnight(tmp_path: Path) -> None:
    midnight = int(dt.datetime(2023, 11, 16, tzinfo=dayfiles.KST).timestamp() * 1000)
    cols = _book(4)
    cols["ts"] = [midnight - 2000, midnight - 1000, midnight, midnight + 1000]
    result = _import(tmp_path, _write(tmp_path / "book.csv", cols))
    assert result.days == [dt.date(2023, 11, 15), dt.date(2023, 11, 16)]
    for day in result.days:
        assert dayfiles.read_day(tmp_path / "data", "orderbook", "KRW-TEST", day).num_rows == 2


def test_train_and_ml_report_read_what_it_wrote(tmp_path: Path) -> None:
    """``train`` and ``ml_report`` pick days with ``training_days_select`` and read them with
    ``market_data_load``."""
    from mlmodel.services.data import market_data_load, training_days_select
    from mlmodel.services.params import TrainParams

    cols = _book(40)
    cols["ts"] = [T0 + s * 15_000 for s in range(40)]  # one snapshot every 15 s
    trades = _write(tmp_path / "t.csv", {"ts": [T0 + 7_000], "price": [1001.0], "volume": [2.0]})
    _import(tmp_path, _write(tmp_path / "b.csv", cols), trades, segment_gap_s=20.0)
    params = TrainParams(
        market="KRW-TEST", data_dir=str(tmp_path / "data"), days=2, feature_levels=LEVELS, horizon_s=15.0
    )
    selection = training_days_select(params)
    assert selection.days == [DAY]
    data = market_data_load(root=params.root, market="KRW-TEST", days=selection.days, params=params)
    frame = data.labelled.frame
    assert len(frame) == 40 and frame.config.max_gap_ms == 20_000
    assert (
        int(frame.segment.max()) == 0
    )  # 15 s apart is one segment with a 20 s gap (split with today's 10 s)
    assert np.isfinite(data.labelled.y).sum() > 30

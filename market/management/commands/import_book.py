"""``manage.py import_book``: anyone's order-book snapshots (CSV/Parquet, optional trades) as day files."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from market import importer


class Command(BaseCommand):
    help = (
        "Validate order-book snapshots (CSV or Parquet, the day files' wide layout or a column map) and "
        "optional trades, then write them as closed day files; nothing is written unless all of it is valid."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("book", help="snapshots file: .csv, .csv.gz, .tsv or .parquet")
        parser.add_argument("--trades", default=None, help="trades file (ts, price, volume, optional side)")
        parser.add_argument("--market", required=True, help="market code of the day files, e.g. KRW-ADA")
        parser.add_argument(
            "--data-dir", default=None, help="day-file root (default: settings.MARKET_DATA_DIR)"
        )
        parser.add_argument(
            "--columns",
            default="",
            help="snapshot column map: ts=time,ask_price_{i}=ap{i},... or a JSON file/object "
            "(day-file name -> your name; {i} = level number)",
        )
        parser.add_argument("--trade-columns", default="", help="trades column map, same form")
        parser.add_argument(
            "--ts-unit",
            default="auto",
            choices=["auto", *importer.TS_UNITS],
            help="unit of numeric timestamps (auto: by magnitude); typed or ISO-8601 times need none",
        )
        parser.add_argument("--price-scale", type=float, default=1.0, help="multiply every price by this")
        parser.add_argument(
            "--tick",
            default="upbit-krw",
            help=f"tick table: {', '.join(importer.TICK_TABLES)} or one fixed tick such as 0.01",
        )
        parser.add_argument(
            "--off-tick",
            default="refuse",
            choices=["refuse", "round"],
            help="prices off the tick: refuse the import (default) or round to the nearest tick",
        )
        parser.add_argument(
            "--fee-rate",
            type=float,
            default=float(importer.FEE_RATE),
            help="fee per side, recorded in the files' metadata (default Upbit KRW 0.0005)",
        )
        parser.add_argument(
            "--segment-gap",
            type=float,
            default=10.0,
            help="seconds without a snapshot that start a new segment (default 10, the collector's)",
        )
        parser.add_argument("--levels", type=int, default=None, help="keep the best N levels")
        parser.add_argument(
            "--allow-short-books",
            action="store_true",
            help="accept empty deepest levels (NaN, or price and size 0); default: refuse any NaN",
        )
        parser.add_argument("--replace", action="store_true", help="overwrite days that already hold files")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        try:
            options = importer.ImportOptions(
                market=o["market"].strip().upper(),
                columns=importer.column_map_parse(o["columns"]),
                trade_columns=importer.column_map_parse(o["trade_columns"]),
                ts_unit=o["ts_unit"],
                price_scale=o["price_scale"],
                tick=o["tick"].strip(),
                off_tick=o["off_tick"],
                fee_rate=o["fee_rate"],
                segment_gap_s=o["segment_gap"],
                levels=o["levels"],
                allow_short_books=o["allow_short_books"],
                replace=o["replace"],
            )
        except importer.BookImportError as exc:
            raise CommandError(self._problems(exc)) from exc
        root = o["data_dir"] or str(settings.MARKET_DATA_DIR)
        bar = None if o["no_progress"] else tqdm(total=0, unit="row", unit_scale=True, file=self.stderr)

        def progress(stage: str, done: int, total: int) -> None:
            if bar is None:
                return
            bar.set_description(stage)
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        try:
            result = importer.book_import(
                book_path=o["book"], trades_path=o["trades"], root=root, options=options, progress=progress
            )
        except importer.BookImportError as exc:
            raise CommandError(self._problems(exc)) from exc
        except (FileExistsError, OSError) as exc:
            raise CommandError(f"nothing written: {exc}") from exc
        finally:
            if bar is not None:
                bar.close()
        days = ", ".join(d.isoformat() for d in result.days)
        self.stdout.write(
            f"imported {result.snapshots} snapshots ({result.levels} levels, ts unit {result.ts_unit}), "
            f"{result.trades} trades and {result.gaps} segment gap(s) for {options.market} into {root}: "
            f"{len(result.days)} day(s) ({days})"
        )
        if result.trades:
            self.stdout.write(
                f"trade sides: {result.sides_given} given, {result.sides_quote} from the book, "
                f"{result.sides_tick} by the tick rule, {result.sides_default} undecided (set to buy)"
            )
        if result.rounded_prices:
            self.stdout.write(f"{result.rounded_prices} price(s) rounded to the {options.tick} tick")

    @staticmethod
    def _problems(exc: importer.BookImportError) -> str:
        lines = "\n".join(f"  - {p}" for p in exc.problems)
        return f"nothing written; the input is not valid:\n{lines}"

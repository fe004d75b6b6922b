"""``manage.py train``: train a candidate model from day files with a progress bar; optionally promote it
when it beats the active model on the same walk-forward test."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from core.errors import ApplicationError
from mlmodel import conf
from mlmodel.models import TrainingRun, TrainingState, TrainingTrigger
from mlmodel.services.params import POOLED_MARKET, TrainParams
from mlmodel.services.runs import (
    training_run_execute,
    training_run_start,
    training_runs_execute,
    training_runs_stop,
)


def _time_limit_s(run_ids: list[int]) -> int:
    """The wall-clock limit of a training process: ML_TRAIN_TIME_LIMIT_S, or ML_POOLED_TRAIN_TIME_LIMIT_S when
    it runs a pooled model (every enabled market read twice and evaluated one by one: ~5.7 CPU h at 200
    markets x 5 days, bench/bench_retrain.py --night)."""
    limit = int(conf.get("ML_TRAIN_TIME_LIMIT_S"))
    if TrainingRun.objects.filter(pk__in=run_ids, market=POOLED_MARKET).exists():
        limit = max(limit, int(conf.get("ML_POOLED_TRAIN_TIME_LIMIT_S")))
    return limit


class Command(BaseCommand):
    help = "Train the LSTM (and baselines) on the last N days of day files and store a candidate version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--market", default="KRW-BTC")
        parser.add_argument("--days", type=int, default=None, help="last N days (default ML_TRAIN_DAYS)")
        parser.add_argument("--data-dir", default="", help="day-file root (default settings.MARKET_DATA_DIR)")
        parser.add_argument("--end-day", default="", help="YYYY-MM-DD: train on days up to this one")
        # Unset options take the one training config (mlmodel/config.py), as ml_report and retraining do.
        parser.add_argument("--epochs", type=int, default=None)
        parser.add_argument("--horizon", type=float, default=None, help="prediction horizon in seconds")
        parser.add_argument("--window", type=int, default=None, help="snapshots per LSTM input window")
        parser.add_argument("--hidden", type=int, default=None)
        parser.add_argument("--layers", type=int, default=None)
        parser.add_argument("--splits", type=int, default=None, help="walk-forward splits")
        parser.add_argument("--device", default=None, help="auto | cpu | cuda")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--no-gbt", action="store_true", help="skip the gradient-boosted tree baseline")
        parser.add_argument(
            "--promote-if-better",
            action="store_true",
            help="promote only when it passes the promotion gate (beats persistence and the best cheap "
            "baseline with significance, positive net P&L over enough round trips, no worse than the active "
            "model, fits the live feed)",
        )
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--run-id",
            type=int,
            action="append",
            default=[],
            help="execute these queued training runs (how the ml worker starts training in its own process)",
        )
        parser.add_argument(
            "--parent-pid",
            type=int,
            default=0,
            help="stop (SIGTERM to itself) when this process - the ml worker that started it - is gone",
        )

    def handle(self, *args: Any, **o: Any) -> None:
        if o["run_id"]:
            self._execute_queued(o["run_id"], parent_pid=o["parent_pid"])
            return
        params: dict[str, Any] = {
            "market": o["market"].strip().upper(),
            "data_dir": o["data_dir"],
            "end_day": o["end_day"],
            "promote_if_better": o["promote_if_better"],
        }
        for opt, key in (
            ("days", "days"),
            ("epochs", "epochs"),
            ("horizon", "horizon_s"),
            ("window", "window"),
            ("hidden", "hidden"),
            ("layers", "layers"),
            ("splits", "n_splits"),
            ("device", "device"),
            ("seed", "seed"),
        ):
            if o[opt] is not None:
                params[key] = o[opt]
        if o["no_gbt"]:
            params["baselines"] = ["linear_ofi"]
        try:
            run = training_run_start(
                market=params["market"], params=params, trigger=TrainingTrigger.COMMAND, deliver=False
            )
        except ApplicationError as exc:
            raise CommandError(str(exc.message)) from exc
        p = TrainParams.from_dict(run.params)
        bar = tqdm(
            total=p.epochs * p.n_splits,
            unit="epoch",
            disable=o["no_progress"],
            dynamic_ncols=True,
            file=self.stderr._out,
        )
        seen = {"done": 0}

        def on_progress(run: TrainingRun, d: dict[str, Any]) -> None:
            if "epoch" in d:
                done = (max(run.split, 1) - 1) * p.epochs + run.epoch
                bar.update(max(0, done - seen["done"]))
                seen["done"] = done
                bar.set_postfix(
                    split=f"{run.split}/{run.total_splits}",
                    train=f"{run.train_loss:.4f}",
                    val=f"{run.val_loss:.4f}",
                    eta=f"{run.eta_seconds or 0:.0f}s",
                )
            elif "stage" in d:
                bar.set_description(str(d["stage"])[:40])

        try:
            training_run_execute(run_id=run.pk, on_progress=on_progress)
        finally:
            bar.close()
        run.refresh_from_db()
        if run.state != TrainingState.SUCCEEDED:
            raise CommandError(f"training failed: {run.message}")
        v = run.result_version
        self.stdout.write(self.style.SUCCESS(f"stored {v} (id {v.pk if v else '?'})"))
        self.stdout.write(run.message)

    def _execute_queued(self, run_ids: list[int], *, parent_pid: int = 0) -> None:
        """Run queued runs under a wall-clock limit; SIGTERM (the stack stopping, or the parent worker gone)
        or the limit stop them all, each unfinished run failed with the reason."""

        class TrainingInterrupted(BaseException):  # not an Exception: no run goes on after it
            pass

        def stop(signum: int, frame: Any) -> None:
            reason = "time limit" if signum == signal.SIGALRM else "the stack was shut down"
            raise TrainingInterrupted(f"training stopped: {reason}")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGHUP, stop)
        signal.signal(signal.SIGALRM, stop)
        if parent_pid:
            _stop_with_parent(parent_pid)
        signal.alarm(_time_limit_s(run_ids))
        try:
            runs = training_runs_execute(run_ids=run_ids)
        except TrainingInterrupted as exc:
            signal.alarm(0)
            training_runs_stop(run_ids=run_ids, message=str(exc))
            self.stderr.write(str(exc))
            raise SystemExit(1) from None
        finally:
            signal.alarm(0)
        for run in runs:
            self.stdout.write(f"run {run.pk} {run.market}: {run.state} {run.message}")


def _stop_with_parent(parent_pid: int) -> None:
    """SIGTERM to this process when ``parent_pid`` (the ml worker) is gone: the kernel's parent-death signal
    on Linux, and a watch thread everywhere (it also covers a parent gone before this started)."""

    with contextlib.suppress(Exception):  # Linux only; the watch thread below is enough elsewhere
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()

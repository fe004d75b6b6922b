"""The training process started by the ml worker (``training_runs_spawn``) stops with it (issue 12: it
outlived Ctrl-C of the stack): killed parent -> SIGTERM to the training -> its run failed, saying why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from mlmodel.models import TrainingRun, TrainingState
from tests import live
from tests.mlmodel.platform.conftest import MARKET, small_params
from tests.mlmodel.platform.daydata import synthetic_days

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# A stand-in for the ml worker: it starts the training through the service, says the pid, then waits.
PARENT = (
    "import sys, time, django; django.setup(); from mlmodel.services.runs import training_runs_spawn; "
    "print(training_runs_spawn(run_ids=[int(sys.argv[1])]), flush=True); time.sleep(600)"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_training_process_stops_and_fails_its_run_when_its_parent_dies(_ml_env: dict[str, Path]) -> None:
    synthetic_days(_ml_env["data"])
    # Slow on purpose: many epochs of a bigger sample, so it is still training when the parent dies.
    params = small_params(
        data_dir=str(_ml_env["data"]), epochs=500, patience=500, max_samples_per_epoch=50000
    )
    run = TrainingRun.objects.create(
        market=MARKET, params=params, total_epochs=500, stage="queued", picked_up_at=timezone.now()
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(run.pk)],
        cwd=live.ROOT,
        env=live.child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    child = 0
    try:
        child = int(parent.stdout.readline())
        assert os.getpgid(child) == os.getpgid(
            parent.pid
        )  # the worker's group: the launcher's stop reaches it

        def running() -> bool:
            run.refresh_from_db()
            assert run.state != TrainingState.FAILED, run.message
            return run.state == TrainingState.RUNNING

        live.wait_until(running, timeout=180, interval=0.5, message="training running in its own process")
        parent.kill()  # SIGKILL: the worker cannot pass anything on
        parent.wait(10)
        live.wait_until(lambda: not _alive(child), timeout=60, interval=0.5, message="the training exited")
        run.refresh_from_db()
        assert run.state == TrainingState.FAILED
        assert run.message == "training stopped: the stack was shut down"
    finally:
        if parent.poll() is None:
            parent.kill()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_process_with_a_pooled_run_gets_the_pooled_time_limit(settings) -> None:  # noqa: ANN001
    """The nightly pooled run reads and evaluates every enabled market (~5.7 CPU h at 200 markets x 5 days):
    its process is stopped at ML_POOLED_TRAIN_TIME_LIMIT_S, a single market's at ML_TRAIN_TIME_LIMIT_S."""
    from mlmodel.management.commands.train import _time_limit_s
    from mlmodel.services.params import POOLED_MARKET

    settings.ML_TRAIN_TIME_LIMIT_S = 6 * 3600
    settings.ML_POOLED_TRAIN_TIME_LIMIT_S = 12 * 3600
    one = TrainingRun.objects.create(market="KRW-BTC", params={})
    pooled = TrainingRun.objects.create(market=POOLED_MARKET, params={})
    assert _time_limit_s([one.pk]) == 6 * 3600
    assert _time_limit_s([pooled.pk, one.pk]) == 12 * 3600

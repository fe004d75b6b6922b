"""Training pipeline, training-run progress and the nightly retrain's promotion rule on small day files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.files.storage import default_storage

from mlmodel import gate, tasks
from mlmodel.models import ModelStatus, ModelVersion, TrainingRun, TrainingState, TrainingTrigger
from mlmodel.services import runs
from mlmodel.services import train as train_service
from mlmodel.services.params import TrainingFailed, TrainParams
from mlmodel.services.registry import TRAINING_GROUP, model_promote
from mlmodel.services.runs import (
    nightly_retrain,
    nightly_retrain_prepare,
    training_run_execute,
    training_run_pickup,
    training_run_start,
    training_run_update,
    training_runs_fail_undelivered,
)
from mlmodel.services.train import TrainResult, model_train
from mlmodel.training import load_artifact
from tests.mlmodel.platform.conftest import MARKET, small_params
from tests.mlmodel.platform.daydata import synthetic_days

pytestmark = pytest.mark.django_db(transaction=False)


def drain(channel: str) -> list[dict]:
    layer = get_channel_layer()
    out = []

    async def _get() -> None:
        import asyncio

        while True:
            try:
                out.append(await asyncio.wait_for(layer.receive(channel), timeout=0.05))
            except TimeoutError:
                return

    async_to_sync(_get)()
    return out


def listen(group: str) -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def train(**overrides) -> TrainResult:
    return model_train(params=TrainParams.from_dict(small_params(**overrides)))


def test_model_train_stores_a_candidate_with_artifact_report_and_plots(_ml_env: dict[str, Path]):
    synthetic_days(_ml_env["data"])
    result = train()
    v = result.version
    assert v.status == ModelStatus.CANDIDATE and v.version == 1 and v.market == MARKET
    assert v.data_days == ["2024-01-01", "2024-01-02"]
    assert v.feature_version and len(v.feature_names) > 10
    assert v.hyperparameters["window"] == 16
    bundle = load_artifact(v.artifact.open("rb").read())
    assert bundle.window == 16 and list(bundle.feature_names) == v.feature_names
    summary = v.report["evaluation"]["summary"]
    assert {"persistence", "linear_ofi", "lstm"} <= set(summary)
    assert summary["lstm"]["beats_persistence_on_validation"] is True
    # Promotable only through the gate, whose reason is in the report and its verdict.
    gate = v.report["gate"]["lstm"]
    assert v.metrics["promotable"] is gate["passed"] is v.report["promotable"]
    assert gate["reason"] and gate["reason"] in v.report["verdict"]
    assert {c["against"] for c in gate["comparisons"]} == {"persistence", "linear_ofi"}
    assert {"pred_vs_realised", "calibration", "equity_split_0", "equity_split_1"} <= set(v.plots)
    assert all(default_storage.exists(p) for p in v.plots.values())
    # The backtest that decides promotion charges the spread the way auto-trading does (the setting).
    assert v.report["evaluation"]["config"]["backtest"]["spread_cost_factor"] == 0.5
    assert train().version.version == 2  # numbers go on per market


def test_the_walk_forward_backtest_follows_the_auto_trading_spread_cost(_ml_env: dict[str, Path], settings):
    synthetic_days(_ml_env["data"])
    settings.AUTOTRADE_SPREAD_COST_FACTOR = "1.0"  # a market round trip pays the full spread
    v = train(epochs=1).version
    assert v.report["evaluation"]["config"]["backtest"]["spread_cost_factor"] == 1.0


def test_train_model_task_writes_progress_rows_and_pushes_them(
    _ml_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
):
    synthetic_days(_ml_env["data"])
    app = tasks.train_model.app  # the project's app in every process (observator/__init__.py)
    assert app.main == "observator"
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    channel = listen(TRAINING_GROUP)
    seen_epochs: list[int] = []
    seen_progress: list[float] = []
    real_update = training_run_update

    def spy(*, run, **fields):  # noqa: ANN001, ANN003
        if "progress" in fields:
            seen_progress.append(fields["progress"])
        if "epoch" in fields:
            seen_epochs.append(fields["epoch"])
            assert TrainingRun.objects.get(pk=run.pk).state == TrainingState.RUNNING
        real_update(run=run, **fields)

    monkeypatch.setattr(runs, "training_run_update", spy)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run = training_run_start(market=MARKET, params=small_params(epochs=3, patience=5))
    finally:
        app.conf.task_always_eager = eager
    run.refresh_from_db()
    assert run.state == TrainingState.SUCCEEDED, run.message
    assert run.result_version is not None and run.celery_task_id
    assert run.epoch == 3 and run.total_epochs == 3 and run.split == 2 and run.total_splits == 2
    assert run.train_loss is not None and run.val_loss is not None and run.eta_seconds == 0.0
    assert seen_epochs == [0, 1, 2, 3, 0, 1, 2, 3]  # both walk-forward splits, each from epoch 0
    assert seen_progress == sorted(seen_progress) and seen_progress[-1] == 100.0 == run.progress
    pushed = [m["data"] for m in drain(channel) if m["type"] == "ml.training"]
    assert pushed[0]["state"] == "queued" and pushed[0]["picked_up_at"]  # the worker took it
    assert pushed[1]["state"] == "running" and pushed[-1]["state"] == "succeeded"
    assert any(p["epoch"] == 2 and p["val_loss"] is not None for p in pushed)


def test_train_model_task_records_a_failure_for_missing_data(_ml_env: dict[str, Path]):
    run = TrainingRun.objects.create(market=MARKET, params=small_params(), total_epochs=4)
    out = tasks.train_model.run(run_id=run.pk)
    run.refresh_from_db()
    assert out["state"] == "failed" and run.state == TrainingState.FAILED
    assert "No order-book day files" in run.message
    assert tasks.train_model.run(run_id=run.pk)["state"] == "failed"  # a second delivery changes nothing


@pytest.fixture
def own_models_only(settings):  # noqa: ANN001
    """The nightly job retrains only this market's own model (no pooled run)."""
    settings.ML_POOLED_MODEL = False
    settings.ML_PER_MARKET_MODELS = [MARKET]


def test_nightly_retrain_does_not_promote_a_worse_candidate(_ml_env: dict[str, Path], own_models_only):
    synthetic_days(_ml_env["data"])
    good = train().version
    model_promote(version=good)
    # lr=0: the candidate never learns - it cannot beat persistence nor the active model.
    runs = nightly_retrain(markets=[MARKET], params=small_params(lr=0.0))
    assert len(runs) == 1 and runs[0].state == TrainingState.SUCCEEDED
    decision = runs[0].decision
    assert decision["promote"] is False
    assert decision["gate"]["checks"]["beats_persistence"] is False
    assert decision["reason"] == decision["gate"]["reason"] and "persistence" in decision["reason"]
    cand = runs[0].result_version
    assert cand.status == ModelStatus.CANDIDATE
    assert cand.status_note == f"not promoted: {decision['reason']}"[:300]  # shown in the admin and /model
    assert ModelVersion.objects.get(status=ModelStatus.ACTIVE).pk == good.pk
    # The active model was scored on the same walk-forward test as the candidate.
    assert cand.report["evaluation"]["summary"]["incumbent"]["n_splits"] == 2


def test_nightly_retrain_promotes_a_better_candidate(
    _ml_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, own_models_only
):
    synthetic_days(_ml_env["data"], signal_strength=6.0)  # clear of the costs with the horizon exit
    # This small market's signal is linear in the OFI: ridge-OFI finds it as well as the LSTM, so the gate
    # would (rightly) refuse it. Without the cheap-baseline bar, the rest of the real gate decides here.
    monkeypatch.setattr(gate, "CHEAP_BASELINES", ())
    weak = train(lr=0.0).version
    model_promote(version=weak)
    runs = nightly_retrain(markets=[MARKET], params=small_params(gate_min_round_trips=5))
    decision = runs[0].decision
    assert decision["promote"] is True, decision
    assert decision["candidate_net_pnl"] > decision["incumbent_net_pnl"]
    assert decision["gate"]["checks"]["not_worse_than_active"] is True
    active = ModelVersion.objects.get(status=ModelStatus.ACTIVE)
    assert active.pk == runs[0].result_version_id
    weak.refresh_from_db()
    assert weak.status == ModelStatus.RETIRED


def test_nightly_retrain_skips_markets_without_day_files(_ml_env: dict[str, Path]):
    assert nightly_retrain(markets=["KRW-XRP"], params=small_params()) == []


def test_spike_periods_are_kept_and_added_to_later_trainings(_ml_env: dict[str, Path]):
    from mlmodel.models import SpikePeriod
    from tests.mlmodel.platform.daydata import START_MS, write_day_files
    from tests.mlmodel.synth import synthetic_market

    book, trades = synthetic_market(
        7000, seed=3, start_ms=START_MS, levels=5, price=100_000.0, tick=50.0, signal_strength=3.0
    )
    jump = 1500  # a 3 % crash on the first day (KST 2024-01-01), far beyond 4 sigma of one-minute returns
    for arr in (book.ask_px, book.bid_px):
        arr[jump:] = arr[jump:] * 0.97
    trades.price[trades.ts >= book.ts[jump]] *= 0.97
    write_day_files(_ml_env["data"], MARKET, book, trades)
    first = train(days=1, end_day="2024-01-01").version
    spikes = list(SpikePeriod.objects.all())
    assert len(spikes) == 1 and spikes[0].start_ms < int(book.ts[jump]) < spikes[0].end_ms
    assert any(_ml_env["spikes"].rglob("part-*.parquet"))  # its raw data is kept beyond local retention
    assert first.spike_periods == []  # the period is inside that training's own days
    later = train(days=1).version  # only 2024-01-02 is recent: the stored crash is added to training
    assert later.data_days == ["2024-01-02"]
    ((start, end),) = later.spike_periods
    recent_start = int(
        book.ts[np.searchsorted(book.ts, 1_704_121_200_000)]
    )  # first snapshot of 2024-01-02 KST
    assert start == spikes[0].start_ms and end == recent_start - 1  # cut where the recent data begins
    assert later.report["data"]["spike_rows"] > 0


def test_a_run_whose_worker_died_does_not_block_training_forever(_ml_env: dict[str, Path]):
    import datetime as dt

    stuck = TrainingRun.objects.create(market=MARKET, params=small_params(), state=TrainingState.RUNNING)
    with pytest.raises(Exception, match="already queued or running"):
        training_run_start(market=MARKET, params=small_params())
    TrainingRun.objects.filter(pk=stuck.pk).update(updated_at=stuck.updated_at - dt.timedelta(hours=3))
    run = training_run_start(market=MARKET, params=small_params())
    stuck.refresh_from_db()
    assert stuck.state == TrainingState.FAILED and run.state == TrainingState.QUEUED


def _old_bars(events: list[dict], total_splits: int, total_epochs: int) -> list[float]:
    """The admin page's former bar: computed in the browser from the split and epoch columns as they were
    written (each event overwrote only the columns it carried)."""
    row, out = {"split": 0, "epoch": 0}, []
    for d in events:
        row.update({k: d[k] for k in ("split", "epoch") if k in d})
        done = max(0, row["split"] - 1) * total_epochs + row["epoch"]
        out.append(min(99.0, 100.0 * done / (total_splits * total_epochs)))
    return out


def test_training_progress_never_goes_backwards_across_splits(
    _ml_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
):
    """Seen in the admin: 73 % -> 69 %. A split's "fitting" event came with the new split number while the
    epoch column still held the previous split's last (early-stopped) epoch; the next epoch row went back."""

    def fake_train(*, params, incumbent, progress):  # noqa: ANN001, ANN202
        progress({"stage": "loading day files"})
        for split, last_epoch in ((1, 30), (2, 6), (3, 30)):
            for model in ("persistence", "linear_ofi", "lstm"):
                progress({"stage": f"split {split}/3: fitting {model}", "split": split, "total_splits": 3})
            for epoch in range(1, last_epoch + 1):
                progress(
                    {"stage": "training lstm", "split": split, "total_splits": 3, "epoch": epoch,
                     "total_epochs": 30, "train_loss": 1.0, "val_loss": 1.0, "eta_seconds": 1.0}
                )  # fmt: skip
        raise TrainingFailed("stop here")

    monkeypatch.setattr(train_service, "model_train", fake_train)
    run = TrainingRun.objects.create(market=MARKET, params=small_params(epochs=30, n_splits=3))
    rows: list[dict] = []
    events: list[dict] = []

    def on_progress(r: TrainingRun, d: dict) -> None:
        rows.append({f: getattr(r, f) for f in ("split", "epoch", "progress")})
        events.append(d)

    training_run_execute(run_id=run.pk, on_progress=on_progress)
    old = _old_bars(events, 3, 30)
    assert any(b < a for a, b in zip(old, old[1:], strict=False))  # the old bar did go backwards here
    new = [r["progress"] for r in rows]
    assert new == sorted(new) and new[-1] == 99.0
    assert TrainingRun.objects.get(pk=run.pk).progress == 99.0
    # Each split starts at epoch 0 in the table, not at the previous split's last epoch.
    assert [r["epoch"] for r in rows if r["split"] == 3][0] == 0


def test_a_run_the_broker_refuses_says_so_and_train_now_works_again(
    _ml_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    def refuse(**_kw):  # noqa: ANN003, ANN202
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.train_model, "apply_async", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_start(market=MARKET, params=small_params())
    assert run.state == TrainingState.FAILED and run.stage == "undelivered"  # the caller's object too
    run.refresh_from_db()
    assert run.state == TrainingState.FAILED and run.stage == "undelivered"
    assert "could not be sent to the ml queue" in run.message and "Connection refused" in run.message
    sent = []
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda **kw: sent.append(kw))
    with django_capture_on_commit_callbacks(execute=True):
        again = training_run_start(market=MARKET, params=small_params())
    assert again.state == TrainingState.QUEUED and sent[0]["kwargs"] == {"run_id": again.pk}


def test_a_run_no_worker_picks_up_fails_after_the_pickup_timeout(
    _ml_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, settings, django_capture_on_commit_callbacks
):
    import datetime as dt

    settings.ML_TRAINING_PICKUP_TIMEOUT_S = 90
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda **kw: None)  # sent; nobody consumes
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_start(market=MARKET, params=small_params())
    assert training_runs_fail_undelivered() == 0  # within the timeout: still queued
    TrainingRun.objects.filter(pk=run.pk).update(created_at=run.created_at - dt.timedelta(seconds=91))
    # Pressing "Train now" again fails the stuck run first, then queues a new one.
    with django_capture_on_commit_callbacks(execute=True):
        again = training_run_start(market=MARKET, params=small_params())
    run.refresh_from_db()
    assert run.state == TrainingState.FAILED and run.stage == "undelivered" and run.finished_at
    assert "No ml worker picked this run up within 90 s; is the ml worker running?" in run.message
    assert again.state == TrainingState.QUEUED
    # The message arrives late (a worker started after all): the worker refuses to start the failed run.
    out = tasks.train_model.run(run_id=run.pk)
    assert out == {"run_id": run.pk, "state": "failed", "started": False}
    run.refresh_from_db()
    assert run.state == TrainingState.FAILED and run.picked_up_at is None and run.stage == "undelivered"


def test_a_picked_up_run_is_never_failed_as_undelivered(_ml_env: dict[str, Path], settings):
    import datetime as dt

    settings.ML_TRAINING_PICKUP_TIMEOUT_S = 1
    run = TrainingRun.objects.create(market=MARKET, params=small_params())
    assert training_run_pickup(run_id=run.pk) is not None
    TrainingRun.objects.filter(pk=run.pk).update(created_at=run.created_at - dt.timedelta(minutes=10))
    assert training_runs_fail_undelivered() == 0
    run.refresh_from_db()
    assert (
        run.state == TrainingState.QUEUED and run.picked_up_at and run.stage == "picked up by the ml worker"
    )


def test_beat_fails_undelivered_runs_from_the_default_queue(_ml_env: dict[str, Path], settings):
    """Nobody needs to open the admin: beat's check (on the default queue, since the ml worker may be the
    missing one) fails the run, so the dashboard's "training" state ends too."""
    import datetime as dt

    entry = settings.CELERY_BEAT_SCHEDULE["mlmodel-training-runs-check"]
    assert entry["task"] == tasks.training_runs_check.name and entry["options"]["queue"] == "default"
    assert entry["schedule"] <= 60
    settings.ML_TRAINING_PICKUP_TIMEOUT_S = 90
    run = TrainingRun.objects.create(market=MARKET, params=small_params())
    assert tasks.training_runs_check.run() == 0
    TrainingRun.objects.filter(pk=run.pk).update(created_at=run.created_at - dt.timedelta(seconds=95))
    assert tasks.training_runs_check.run() == 1
    run.refresh_from_db()
    assert run.state == TrainingState.FAILED and run.stage == "undelivered"


def test_nightly_retrain_skips_a_market_with_a_run_in_progress(_ml_env: dict[str, Path], own_models_only):
    """The market's own nightly run (ML_PER_MARKET_MODELS) is not queued while one is in progress."""
    synthetic_days(_ml_env["data"])
    busy = TrainingRun.objects.create(market=MARKET, params=small_params(), state=TrainingState.RUNNING)
    assert nightly_retrain_prepare(markets=[MARKET], params=small_params()) == []
    busy.delete()
    (run,) = nightly_retrain_prepare(markets=[MARKET], params=small_params())
    assert run.trigger == TrainingTrigger.NIGHTLY and run.picked_up_at is not None
    assert run.params["promote_if_better"] is True and run.state == TrainingState.QUEUED

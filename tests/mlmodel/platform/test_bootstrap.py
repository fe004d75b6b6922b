"""The automatic first model: measured from the collector's day files, queued once through the ordinary
training-run service when enough data is recorded, backed off after a refused candidate; and the state the
dashboard shows (collecting, training, no model passed and why, model vN active) with its API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from market import dayfiles
from mlmodel import bootstrap, gate, selectors, tasks
from mlmodel.models import ModelBootstrap, ModelStatus, TrainingRun, TrainingState, TrainingTrigger
from mlmodel.services.params import TrainParams
from tests.accounts.factories import UserFactory
from tests.mlmodel.platform.conftest import MARKET
from tests.mlmodel.platform.daydata import START_MS, write_day_files
from tests.mlmodel.synth import synthetic_market

pytestmark = pytest.mark.django_db

DT_MS = 200  # the synthetic series' snapshot period: 300 rows a minute


def record(root: Path, minutes: float, *, seed: int = 1, start_ms: int = START_MS) -> None:
    """``minutes`` of synthetic order-book data as the collector would have recorded it (5 book levels)."""
    n = int(minutes * 60_000 / DT_MS)
    book, trades = synthetic_market(
        n, seed=seed, start_ms=start_ms, levels=5, price=100_000.0, tick=50.0, signal_strength=3.0
    )
    write_day_files(root, MARKET, book, trades)


@pytest.fixture
def small_model(settings: Any) -> None:
    """The ML_* settings the bootstrap reads, small enough to train in seconds."""
    settings.ML_BOOTSTRAP = True
    settings.ML_BOOTSTRAP_MIN_MINUTES = 10
    settings.MARKET_CODES = [MARKET]
    settings.ML_WINDOW = 16
    settings.ML_HIDDEN = 8
    settings.ML_EPOCHS = 4
    settings.ML_PATIENCE = 3
    settings.ML_BATCH_SIZE = 128
    settings.ML_MAX_SAMPLES_PER_EPOCH = 4000
    settings.ML_DEVICE = "cpu"
    settings.ML_SEED = 0
    settings.ML_BACKTEST_THRESHOLD = 0.0


@pytest.fixture
def lenient_gate(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Minutes of the small synthetic market: its signal is linear in the OFI, so ridge-OFI finds it as well
    as the LSTM and the real gate (rightly) refuses; tests of what follows a pass drop that bar, and ask
    for fewer round trips and test samples. The gate itself: tests/mlmodel/test_gate.py."""
    monkeypatch.setattr(gate, "CHEAP_BASELINES", ())
    settings.ML_GATE_MIN_ROUND_TRIPS = 3
    settings.ML_MIN_TEST_SAMPLES = 50


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Messages to the ml queue (the worker is not running here)."""
    out: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda **kw: out.append(kw))
    return out


def check(capture: Any) -> list[bootstrap.BootstrapOutcome]:  # noqa: ANN401
    with capture(execute=True):
        return bootstrap.model_bootstrap_check(markets=[MARKET])


def test_recorded_data_is_measured_from_the_segments_and_downtime_does_not_count(_ml_env: dict[str, Path]):
    root = _ml_env["data"]
    assert bootstrap.recorded_data_measure(root=root, market=MARKET).seconds == 0
    record(root, 8, start_ms=START_MS + 300_000)  # 23:55-00:03 KST: two day directories
    first = bootstrap.recorded_data_measure(root=root, market=MARKET)
    assert first.rows == 2400 and first.levels == 5 and len(first.days) == 2
    assert 8 * 60 - 2 < first.seconds <= 8 * 60
    # The stack was stopped for an hour, then recorded 3 more minutes (a new segment): 11 minutes, not 71.
    book, trades = synthetic_market(
        900, seed=2, start_ms=START_MS + 3_900_000, levels=5, price=1e5, tick=50.0
    )
    other = root.parent / "other"
    (day,) = write_day_files(other, MARKET, book, trades)
    (dayfiles.day_dir(root, "orderbook", MARKET, day) / "part-00001.parquet").write_bytes(
        (dayfiles.day_dir(other, "orderbook", MARKET, day) / "part-00000.parquet").read_bytes()
    )
    later = bootstrap.recorded_data_measure(root=root, market=MARKET)
    assert later.rows == 3300
    assert 11 * 60 - 4 < later.seconds <= 11 * 60
    # The collector's open hour is a WAL: it counts too.
    wal = dayfiles.day_dir(root, "orderbook", MARKET, day) / "part-00002.arrows"
    extra = dayfiles.read_day(other, "orderbook", MARKET, day).slice(0, 100)
    shifted = extra.set_column(0, "ts", pa.array(extra.column("ts").to_numpy() + 600_000))
    with open(wal, "wb") as fh, pa.ipc.new_stream(fh, shifted.schema) as w:
        w.write_table(shifted)
    assert bootstrap.recorded_data_measure(root=root, market=MARKET).rows == 3400


def test_the_training_config_fits_the_recorded_data(settings: Any):
    settings.ML_WINDOW, settings.ML_HORIZON_S = 50, 10.0
    # Ten minutes at the simulator's ~20 snapshots a second: the usual model.
    p = bootstrap.model_bootstrap_params(recorded=bootstrap.Recorded(600.0, 12_000, (), 30))
    assert p["window"] == 50 and p["horizon_s"] == 10.0 and p["feature_levels"] == 10
    assert p["promote_if_better"] is True and p["n_splits"] == 3
    # Ten minutes at 1 snapshot a second: each test block (100 rows) gets a window of at most 1/20 of it.
    p = bootstrap.model_bootstrap_params(recorded=bootstrap.Recorded(600.0, 600, (), 5))
    assert p["window"] == bootstrap.MIN_WINDOW and p["feature_levels"] == 5
    # Three minutes: at least 60 horizons in the data.
    p = bootstrap.model_bootstrap_params(recorded=bootstrap.Recorded(180.0, 3600, (), 30))
    assert p["horizon_s"] == 3.0
    params = TrainParams.from_dict({**p, "market": MARKET})  # a valid training run
    assert params.window * 20 <= 3600 / 6


def test_waits_for_enough_data_then_queues_exactly_one_run_and_backs_off(
    _ml_env: dict[str, Path], small_model: None, sent: list, django_capture_on_commit_callbacks: Any
):
    root = _ml_env["data"]
    record(root, 4)
    (out,) = check(django_capture_on_commit_callbacks)
    assert out.state == "collecting" and not TrainingRun.objects.exists() and not sent
    state = selectors.model_state_get(market=MARKET)
    assert state["state"] == "collecting"
    assert (state["collected_minutes"], state["needed_minutes"]) == (3, 10)
    assert state["message"] == "Collecting market data: 3 of 10 minutes"

    record(root, 12)  # the collector went on
    (out,) = check(django_capture_on_commit_callbacks)
    assert out.state == "queued"
    run = TrainingRun.objects.get()
    assert run.trigger == TrainingTrigger.BOOTSTRAP and run.state == TrainingState.QUEUED
    assert run.params["promote_if_better"] is True and run.params["feature_levels"] == 5
    assert [m["kwargs"] for m in sent] == [{"run_id": run.pk}] and sent[0]["queue"] == "ml"
    state = selectors.model_state_get(market=MARKET)
    assert state["state"] == "training" and state["run_id"] == run.pk
    assert state["message"] == "Training the first model: waiting for the ml worker"
    TrainingRun.objects.filter(pk=run.pk).update(state=TrainingState.RUNNING, progress=37.4)
    assert selectors.model_state_get(market=MARKET)["message"] == "Training the first model: 37 %"

    # Beat comes again while it trains: nothing more is queued.
    (out,) = check(django_capture_on_commit_callbacks)
    assert out.state == "training" and TrainingRun.objects.count() == 1 and len(sent) == 1

    # The candidate is refused by the promotion rule: the next try waits for twice the data.
    TrainingRun.objects.filter(pk=run.pk).update(
        state=TrainingState.SUCCEEDED,
        decision={"promote": False, "reason": "does not beat persistence on validation"},
    )
    for _ in range(3):
        (out,) = check(django_capture_on_commit_callbacks)
        assert out.state == "collecting"
    assert TrainingRun.objects.count() == 1 and len(sent) == 1
    row = ModelBootstrap.objects.get(market=MARKET)
    assert row.attempts == 1 and row.last_run_id == run.pk
    assert row.next_at_s == pytest.approx(2 * row.collected_s)
    state = selectors.model_state_get(market=MARKET)
    assert state["state"] == "not_promoted" and "persistence" in state["reason"]
    assert state["message"].startswith("No model passed: its predictions were not better than assuming")
    assert state["message"].endswith("Next try at 24 minutes of data (11 recorded).")

    record(root, 25)
    (out,) = check(django_capture_on_commit_callbacks)
    assert out.state == "queued" and TrainingRun.objects.count() == 2 and len(sent) == 2
    assert ModelBootstrap.objects.get(market=MARKET).attempts == 2


def test_the_first_model_trains_passes_the_rule_and_is_active(
    _ml_env: dict[str, Path],
    small_model: None,
    lenient_gate: None,
    sent: list,
    django_capture_on_commit_callbacks: Any,
):
    record(_ml_env["data"], 23)
    (out,) = check(django_capture_on_commit_callbacks)
    assert out.state == "queued"
    # The ml worker's side: the ordinary task on the queued run.
    result = tasks.train_model.run(**sent[0]["kwargs"])
    run = TrainingRun.objects.get(pk=out.run_id)
    assert result["state"] == TrainingState.SUCCEEDED, run.message
    assert run.progress == 100.0 and "promote" in run.decision  # the usual promotion rule decided
    state = selectors.model_state_get(market=MARKET)
    if run.decision["promote"]:
        version = selectors.model_active(market=MARKET)
        assert version is not None and version.pk == run.result_version_id
        assert version.status == ModelStatus.ACTIVE
        assert state["state"] == "active" and state["model"]["version"] == version.version
        assert state["message"] == f"Model v{version.version} active"
    else:  # refused by the rule (never loosened here): nothing active, the page says why
        assert selectors.model_active(market=MARKET) is None
        assert state["state"] == "not_promoted" and state["reason"], state
    # Beat again at once: active -> never trained again; refused -> waits for twice the data.
    (out,) = check(django_capture_on_commit_callbacks)
    assert out.state in ("active", "collecting") and TrainingRun.objects.count() == 1


def test_a_failed_run_says_why_and_a_market_not_recorded_says_so(
    _ml_env: dict[str, Path], small_model: None, settings: Any
):
    run = TrainingRun.objects.create(
        market=MARKET,
        trigger=TrainingTrigger.BOOTSTRAP,
        state=TrainingState.FAILED,
        message="No ml worker\nx",
    )
    state = selectors.model_state_get(market=MARKET)
    assert (
        state["state"] == "not_promoted" and state["reason"] == "No ml worker" and state["run_id"] == run.pk
    )
    state = selectors.model_state_get(market="KRW-DOGE")
    assert state["state"] == "not_recorded" and state["collected_minutes"] is None
    settings.MARKET_CODES = [MARKET, "KRW-ETH"]
    settings.ML_BOOTSTRAP_MARKETS = [MARKET]  # recorded, but no automatic first model
    assert selectors.model_state_get(market="KRW-ETH")["state"] == "none"
    assert [o.market for o in bootstrap.model_bootstrap_check()] == [MARKET]
    settings.ML_BOOTSTRAP_MARKETS = []
    settings.ML_BOOTSTRAP = False
    state = selectors.model_state_get(market="KRW-ETH")
    assert state["state"] == "none" and state["message"] == "No active model yet"
    assert bootstrap.model_bootstrap_check(markets=[MARKET])[0].state == "disabled"


def test_state_api_answers_200_without_a_model_and_is_in_the_schema(
    _ml_env: dict[str, Path], small_model: None
):
    api = APIClient()
    url = reverse("ml-api:model-state")
    assert api.get(f"{url}?market={MARKET}").status_code in (401, 403)
    api.force_authenticate(UserFactory())
    r = api.get(f"{url}?market={MARKET}")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["state"] == "collecting" and body["model"] is None and body["prediction"] is None
    assert body["message"] == "Collecting market data: 0 of 10 minutes"
    assert api.get(f"{url}?market=bad!").status_code == 400
    ko = api.get(f"{url}?market={MARKET}", HTTP_ACCEPT_LANGUAGE="ko")
    assert ko.json()["message"] == "시장 데이터 수집 중: 10분 중 0분"
    schema = api.get("/api/schema/?format=json").json()
    assert "/api/ml/models/state/" in schema["paths"]
    assert "404" in schema["paths"]["/api/ml/models/active/"]["get"]["responses"]


def test_beat_runs_the_check_on_the_default_queue(settings: Any):
    from celery_app import app

    entry = settings.CELERY_BEAT_SCHEDULE["mlmodel-bootstrap-first-model"]
    assert entry["task"] == tasks.bootstrap_first_model.name
    assert app.amqp.router.route(dict(entry["options"]), entry["task"])["queue"].name == "default"


def test_model_page_says_which_state_the_market_is_in(
    _ml_env: dict[str, Path], small_model: None, client: Any
):
    client.force_login(UserFactory())
    TrainingRun.objects.create(
        market=MARKET, trigger=TrainingTrigger.BOOTSTRAP, state=TrainingState.RUNNING, progress=42
    )
    html = client.get(f"/model?market={MARKET}").content.decode()
    assert 'data-model-state="training"' in html and "Training the first model: 42 %" in html
    assert '<progress max="100" value="42"' in html


def test_no_run_is_queued_that_could_only_fail_for_too_few_test_samples(settings: Any):
    settings.ML_WINDOW, settings.ML_HORIZON_S, settings.ML_MIN_TEST_SAMPLES = 50, 10.0, 200
    half_minute = bootstrap.Recorded(30.0, 540, (), 30)  # 90 rows per test block
    assert not bootstrap._enough_test_samples(
        half_minute, bootstrap.model_bootstrap_params(recorded=half_minute)
    )
    ten = bootstrap.Recorded(600.0, 11_000, (), 30)  # ~1,800 rows per test block
    assert bootstrap._enough_test_samples(ten, bootstrap.model_bootstrap_params(recorded=ten))

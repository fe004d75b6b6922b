"""Report pages, plot images, the ML API and the admin (promote / roll back, train now with live progress)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from mlmodel.models import ModelStatus, Prediction, TrainingRun, TrainingState
from mlmodel.services.params import TrainParams
from mlmodel.services.registry import model_promote
from mlmodel.services.runs import training_run_update
from mlmodel.services.train import model_train
from tests.accounts.factories import UserFactory
from tests.mlmodel.platform.conftest import MARKET, small_params
from tests.mlmodel.platform.daydata import synthetic_days

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(_ml_env: dict[str, Path]):  # noqa: ANN201
    synthetic_days(_ml_env["data"])
    v1 = model_train(params=TrainParams.from_dict(small_params())).version
    v2 = model_train(params=TrainParams.from_dict(small_params(seed=1))).version
    model_promote(version=v1)
    return v1, v2


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_users_see_the_active_models_report_and_plots_but_not_candidates(client: Client, versions):
    active, candidate = versions
    client.force_login(UserFactory())
    page = client.get(f"/model?market={MARKET}")
    assert page.status_code == 200
    html = page.content.decode()
    assert active.label in html and "persistence" in html and "linear_ofi" in html
    assert f"/model/versions/{active.pk}/plots/calibration.png" in html
    img = client.get(f"/model/versions/{active.pk}/plots/calibration.png")
    assert img.status_code == 200 and img["Content-Type"] == "image/png"
    assert b"".join(img.streaming_content)[:4] == b"\x89PNG"
    assert client.get(f"/model/versions/{candidate.pk}/").status_code == 404
    assert client.get(f"/model/versions/{candidate.pk}/plots/calibration.png").status_code == 404
    assert client.get("/model?market=KRW-XRP").status_code == 200  # "no model yet", not an error
    client.logout()
    assert client.get("/model").status_code == 302  # log in first


def test_staff_see_any_versions_full_report(staff_client: Client, versions):
    _active, candidate = versions
    r = staff_client.get(f"/model/versions/{candidate.pk}/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "Per split" in html and "equity_split_1" in html and candidate.code_version in html


def test_api_active_model_and_latest_prediction(versions):
    active, _candidate = versions
    api = APIClient()
    assert api.get(f"/api/ml/models/active/?market={MARKET}").status_code in (401, 403)
    api.force_authenticate(UserFactory())
    body = api.get(f"/api/ml/models/active/?market={MARKET}").json()
    assert body["version"] == active.version and body["status"] == "active"
    assert body["metrics"]["val_mse"] < body["metrics"]["persistence_val_mse"]
    assert api.get("/api/ml/models/active/?market=KRW-XRP").json()["error"]["code"] == "no_model"
    assert api.get("/api/ml/models/active/?market=bad!").status_code == 400
    # The app's one market rule (market.upbit.protocol.is_krw_market): KRW markets only, as everywhere else.
    assert api.get("/api/ml/models/active/?market=BTC-ETH").json()["error"]["code"] == "invalid_market"
    assert api.get(f"/api/ml/predictions/latest/?market={MARKET}").status_code == 404
    now = dt.datetime.now(dt.UTC)
    Prediction.objects.create(
        market=MARKET,
        ts=now - dt.timedelta(seconds=3),
        horizon_s=10.0,
        predicted_return=0.001,
        mid=100.0,
        model_version=active,
    )
    Prediction.objects.create(
        market=MARKET, ts=now, horizon_s=10.0, predicted_return=-0.002, mid=101.0, model_version=active
    )
    p = api.get(f"/api/ml/predictions/latest/?market={MARKET}").json()
    assert p["predicted_return"] == -0.002 and p["predicted_return_pct"] == pytest.approx(-0.2)
    assert p["model_version"] == active.label and p["ts"] == int(now.timestamp() * 1000)


def test_admin_promote_and_roll_back_actions(staff_client: Client, versions):
    active, candidate = versions
    url = "/admin/mlmodel/modelversion/"
    assert staff_client.get(url).status_code == 200
    staff_client.post(url, {"action": "promote", "_selected_action": [candidate.pk]})
    candidate.refresh_from_db()
    active.refresh_from_db()
    assert candidate.status == ModelStatus.ACTIVE and active.status == ModelStatus.RETIRED
    staff_client.post(url, {"action": "roll_back", "_selected_action": [candidate.pk]})
    active.refresh_from_db()
    assert active.status == ModelStatus.ACTIVE
    assert staff_client.get(f"{url}{active.pk}/change/").status_code == 200


def test_admin_train_now_queues_on_the_ml_queue_and_shows_progress(
    staff_client: Client, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
):
    from mlmodel import tasks

    queued = []
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda **kw: queued.append(kw))
    assert b"Train now" in staff_client.get("/admin/mlmodel/trainingrun/").content
    form = staff_client.get("/admin/mlmodel/trainingrun/train-now/")
    assert form.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        r = staff_client.post(
            "/admin/mlmodel/trainingrun/train-now/",
            {
                "market": MARKET,
                "days": 2,
                "epochs": 3,
                "horizon_s": 10,
                "n_splits": 2,
                "promote_if_better": "on",
            },
        )
    run = TrainingRun.objects.get()
    assert r.status_code == 302 and r["Location"].endswith(f"/admin/mlmodel/trainingrun/{run.pk}/progress/")
    assert queued == [{"kwargs": {"run_id": run.pk}, "queue": "ml", "task_id": run.celery_task_id}]
    assert run.params["epochs"] == 3 and run.params["promote_if_better"] is True and run.total_epochs == 3
    page = staff_client.get(r["Location"])
    assert page.status_code == 200 and b"progress.json" in page.content
    training_run_update(
        run=run,
        state=TrainingState.RUNNING,
        epoch=2,
        train_loss=0.5,
        val_loss=0.7,
        eta_seconds=12.0,
        stage="split 1/2: training lstm",
    )
    data = staff_client.get(f"/admin/mlmodel/trainingrun/{run.pk}/progress.json").json()
    assert (
        data["state"] == "running"
        and data["epoch"] == 2
        and data["val_loss"] == 0.7
        and data["eta_seconds"] == 12
    )
    # A second "train now" while one is queued/running is refused with a clear message.
    again = staff_client.post(
        "/admin/mlmodel/trainingrun/train-now/",
        {"market": MARKET, "days": 2, "epochs": 3, "horizon_s": 10, "n_splits": 2},
    )
    assert again.status_code == 200 and b"already queued or running" in again.content
    client = Client()
    client.force_login(UserFactory())
    assert client.get(f"/admin/mlmodel/trainingrun/{run.pk}/progress.json").status_code == 302


def test_admin_shows_a_run_no_worker_picked_up_and_train_now_works_again(
    staff_client: Client, monkeypatch: pytest.MonkeyPatch, settings, django_capture_on_commit_callbacks
):
    from mlmodel import tasks

    settings.ML_TRAINING_PICKUP_TIMEOUT_S = 90
    queued = []
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda **kw: queued.append(kw))  # nobody consumes
    form = {"market": MARKET, "days": 2, "epochs": 3, "horizon_s": 10, "n_splits": 2}
    with django_capture_on_commit_callbacks(execute=True):
        r = staff_client.post("/admin/mlmodel/trainingrun/train-now/", form)
    run = TrainingRun.objects.get()
    assert r.status_code == 302 and len(queued) == 1
    progress_json = f"/admin/mlmodel/trainingrun/{run.pk}/progress.json"
    data = staff_client.get(progress_json).json()
    assert data["state"] == "queued" and not data["undelivered"] and data["progress"] == 0
    TrainingRun.objects.filter(pk=run.pk).update(created_at=run.created_at - dt.timedelta(seconds=91))
    data = staff_client.get(progress_json).json()  # reading the progress is enough to notice
    assert data["state"] == "failed" and data["finished"] and data["undelivered"]
    assert "No ml worker picked this run up within 90 s; is the ml worker running?" in data["message"]
    page = staff_client.get(f"/admin/mlmodel/trainingrun/{run.pk}/progress/").content.decode()
    assert "is the ml worker running?" in page and "never reached an ml worker" in page
    listing = staff_client.get("/admin/mlmodel/trainingrun/").content.decode()
    assert "Undelivered:" in listing and "No ml worker picked this run up within 90 s" in listing
    detail = staff_client.get(f"/admin/mlmodel/trainingrun/{run.pk}/change/").content.decode()
    assert "is the ml worker running?" in detail
    with django_capture_on_commit_callbacks(execute=True):
        again = staff_client.post("/admin/mlmodel/trainingrun/train-now/", form)
    assert again.status_code == 302 and TrainingRun.objects.filter(state=TrainingState.QUEUED).count() == 1
    assert len(queued) == 2


@pytest.mark.django_db(transaction=True)  # autocommit as in the web server: the message goes at once
def test_admin_train_now_when_the_broker_refuses_says_so(
    staff_client: Client, monkeypatch: pytest.MonkeyPatch
):
    from kombu.exceptions import OperationalError

    from mlmodel import tasks

    def refuse(**_kw):  # noqa: ANN003, ANN202
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.train_model, "apply_async", refuse)
    form = {"market": MARKET, "days": 2, "epochs": 3, "horizon_s": 10, "n_splits": 2}
    r = staff_client.post("/admin/mlmodel/trainingrun/train-now/", form, follow=True)
    run = TrainingRun.objects.get()
    assert run.state == TrainingState.FAILED and run.stage == "undelivered"
    page = r.content.decode()
    assert "could not be sent to the ml queue" in page and "Connection refused" in page
    assert "Training queued on the ml queue." not in page


def test_train_now_is_on_the_model_versions_page_too(
    staff_client: Client, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
):
    from mlmodel import tasks

    queued = []
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda **kw: queued.append(kw))
    page = staff_client.get("/admin/mlmodel/modelversion/")
    assert page.status_code == 200
    html = page.content.decode()
    link = "/admin/mlmodel/trainingrun/train-now/"
    assert f'href="{link}"' in html and 'data-testid="train-now"' in html and "Train now" in html
    assert staff_client.get(link).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        r = staff_client.post(
            link, {"market": MARKET, "days": 2, "epochs": 3, "horizon_s": 10, "n_splits": 2}
        )
    run = TrainingRun.objects.get()
    assert r.status_code == 302 and queued == [
        {"kwargs": {"run_id": run.pk}, "queue": "ml", "task_id": run.celery_task_id}
    ]
    # Staff who may only view model versions do not get a link to a form they cannot use.
    from django.contrib.auth.models import Permission

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    c = Client()
    c.force_login(viewer)
    html = c.get("/admin/mlmodel/modelversion/").content.decode()
    assert link not in html

"""Where the promotion gate's reason is shown: the run (admin), the refused version's status note and report
page, /model's verdict, and the dashboard's model state endpoint (issue 14)."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from mlmodel.models import ModelStatus, TrainingRun
from mlmodel.services.registry import model_promote
from mlmodel.services.runs import nightly_retrain
from tests.accounts.factories import UserFactory
from tests.mlmodel.platform.conftest import MARKET, small_params
from tests.mlmodel.platform.daydata import synthetic_days

pytestmark = pytest.mark.django_db


def test_a_refused_candidate_says_why_everywhere(_ml_env: dict[str, Path], client: Client, settings):  # noqa: ANN001
    settings.ML_POOLED_MODEL, settings.ML_PER_MARKET_MODELS = False, [MARKET]  # this market's own model
    synthetic_days(_ml_env["data"])
    # No model yet: a nightly run on this small OFI-linear market, where ridge-OFI does as well as the LSTM.
    (run,) = nightly_retrain(markets=[MARKET], params=small_params())
    reason = run.decision["reason"]
    assert run.decision["promote"] is False and "ridge-OFI" in reason, reason
    assert f"Promotion: no - {reason}." in run.message  # the admin's training-run view
    v = run.result_version
    assert v.status == ModelStatus.CANDIDATE and v.status_note == f"not promoted: {reason}"[:300]
    api = APIClient()
    api.force_authenticate(UserFactory())
    r = api.get(f"/api/ml/models/state/?market={MARKET}")
    state = r.json()
    assert r.status_code == 200, state
    assert state["state"] == "not_promoted" and state["reason"] == reason
    assert state["message"].startswith("No model passed: " + reason)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = html.unescape(client.get(f"/model/versions/{v.pk}/").content.decode())
    assert "Refused by the promotion gate: " + reason in page
    admin = html.unescape(client.get(f"/admin/mlmodel/trainingrun/{run.pk}/change/").content.decode())
    assert reason in admin
    # Promoted by hand anyway: /model shows the gate's verdict beside it.
    model_promote(version=v, note="by hand")
    model_page = html.unescape(client.get(f"/model?market={MARKET}").content.decode())
    assert "Refused by the promotion gate: " + reason in model_page
    assert TrainingRun.objects.count() == 1

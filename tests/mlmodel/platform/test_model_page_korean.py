"""/model in Korean: the verdict and the plots' labels follow the reader's language (they were English)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from mlmodel.services.params import TrainParams
from mlmodel.services.registry import model_promote
from mlmodel.services.train import model_train
from tests.accounts.factories import UserFactory
from tests.mlmodel.platform.conftest import MARKET, small_params
from tests.mlmodel.platform.daydata import synthetic_days

pytestmark = pytest.mark.django_db


@pytest.fixture
def active_version(_ml_env: dict[str, Path]):  # noqa: ANN201
    synthetic_days(_ml_env["data"])
    version = model_train(params=TrainParams.from_dict(small_params())).version
    model_promote(version=version)
    return version


def _png(client: Client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert "Accept-Language" in response["Vary"] and "Cookie" in response["Vary"]
    return b"".join(response.streaming_content)


def test_model_page_and_plots_in_korean(client: Client, active_version, artifacts_dir: Path):
    assert {"calibration", "calibration-ko", "equity_split_0-ko"} <= set(active_version.plots)
    client.force_login(UserFactory(preferred_language="ko"))
    html = client.get(f"/model?market={MARKET}", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert 'lang="ko"' in html
    assert "검증 오차(MSE)" in html and "테스트 기간" in html
    assert "validation MSE" not in html and "promotable" not in html
    assert "calibration-ko" not in html  # one image per plot; the image URL serves the reader's language
    plot = f"/model/versions/{active_version.pk}/plots/calibration.png"
    korean = _png(client, plot)
    (artifacts_dir / "model-calibration-ko.png").write_bytes(korean)
    client.post("/i18n/setlang/", {"language": "en", "next": "/model"})
    english = _png(client, plot)
    assert korean[:4] == english[:4] == b"\x89PNG" and korean != english

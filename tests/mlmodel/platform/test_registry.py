"""Registry: promote / roll back / retire keep exactly one active model per market."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from core.errors import Conflict
from mlmodel.models import ModelStatus, ModelVersion
from mlmodel.services.registry import model_promote, model_retire, model_rollback

pytestmark = pytest.mark.django_db


def make_version(market: str = "KRW-BTC", version: int = 1) -> ModelVersion:
    v = ModelVersion(
        market=market,
        version=version,
        name=f"lstm-{market}",
        horizon_s=10.0,
        feature_version="ob-features-1",
        hyperparameters={},
        feature_names=["a"],
    )
    v.artifact.save(f"m{version}.pt", ContentFile(b"x"), save=False)
    v.save()
    return v


def active_of(market: str) -> list[int]:
    return list(
        ModelVersion.objects.filter(market=market, status=ModelStatus.ACTIVE).values_list(
            "version", flat=True
        )
    )


def test_promote_keeps_exactly_one_active_and_retires_the_previous():
    v1, v2, v3 = (make_version(version=i) for i in (1, 2, 3))
    other = make_version(market="KRW-ETH", version=1)
    model_promote(version=other)
    model_promote(version=v1)
    assert active_of("KRW-BTC") == [1]
    model_promote(version=v2)
    assert active_of("KRW-BTC") == [2]
    v1.refresh_from_db()
    assert v1.status == ModelStatus.RETIRED and v1.retired_at is not None
    model_promote(version=v2)  # promoting the active one again changes nothing
    assert active_of("KRW-BTC") == [2]
    v3.refresh_from_db()
    assert v3.status == ModelStatus.CANDIDATE
    assert active_of("KRW-ETH") == [1]  # markets are independent


def test_rollback_reactivates_the_previously_active_version():
    v1, v2, v3 = (make_version(version=i) for i in (1, 2, 3))
    model_promote(version=v1)
    model_promote(version=v3)
    back = model_rollback(market="KRW-BTC")
    assert back.pk == v1.pk
    assert active_of("KRW-BTC") == [1]
    v3.refresh_from_db()
    assert v3.status == ModelStatus.RETIRED
    # v2 was never active: not a roll-back target. Rolling back again returns to v3 (active before v1).
    again = model_rollback(market="KRW-BTC")
    assert again.pk == v3.pk and active_of("KRW-BTC") == [3]
    v2.refresh_from_db()
    assert v2.status == ModelStatus.CANDIDATE


def test_rollback_without_history_and_retiring_the_active_model_are_refused():
    v1 = make_version(version=1)
    with pytest.raises(Conflict):
        model_rollback(market="KRW-BTC")
    model_promote(version=v1)
    with pytest.raises(Conflict):
        model_retire(version=v1)
    assert active_of("KRW-BTC") == [1]
    v2 = make_version(version=2)
    model_retire(version=v2)
    v2.refresh_from_db()
    assert v2.status == ModelStatus.RETIRED


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_never_leave_two_active_models():
    """Many promotions racing from several threads (own DB connections): the row lock serialises them."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    versions = [make_version(version=i) for i in range(1, 5)]

    def promote(v: ModelVersion) -> None:
        try:
            for _ in range(3):
                model_promote(version=v.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(promote, versions))
    assert len(active_of("KRW-BTC")) == 1

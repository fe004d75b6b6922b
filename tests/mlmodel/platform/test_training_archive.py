"""Training on the last N days when the collector keeps only 3 locally: days removed by retention are fetched
back from S3 (moto's standalone server over HTTP), checksum-verified, and the report says what is missing."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from market import archive, dayfiles, uploads
from market.models import DayUpload
from mlmodel.services.data import market_data_load, training_days_select
from mlmodel.services.params import TrainParams
from mlmodel.services.train import model_train
from tests.accounts.factories import UserFactory
from tests.mlmodel.platform.conftest import MARKET, small_params
from tests.mlmodel.platform.daydata import write_day_files
from tests.mlmodel.synth import synthetic_market

pytestmark = [pytest.mark.django_db, pytest.mark.live]

DAY1 = dt.date(2024, 3, 1)
DAYS = [DAY1 + dt.timedelta(days=i) for i in range(5)]
TODAY = DAYS[-1] + dt.timedelta(days=1)


def _noon_kst_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=dayfiles.KST).timestamp() * 1000)


def _record_days(root: Path, days: list[dt.date]) -> dict[dt.date, tuple[int, int]]:
    """One short synthetic session per day (noon KST), closed like the collector closes a day."""
    spans = {}
    for i, day in enumerate(days):
        book, trades = synthetic_market(
            900, seed=10 + i, start_ms=_noon_kst_ms(day), levels=5, price=100_000.0, tick=50.0,
            signal_strength=3.0,
        )  # fmt: skip
        write_day_files(root, MARKET, book, trades)
        for kind in ("orderbook", "trade"):
            dayfiles.mark_complete(dayfiles.day_dir(root, kind, MARKET, day))
        spans[day] = (int(book.ts[0]), int(book.ts[-1]))
    return spans


@pytest.fixture
def archived(s3: tuple[Any, str], settings: Any, tmp_path: Path) -> dict[str, Any]:  # noqa: F811
    """Five days recorded and uploaded (verified); retention then leaves only the last three locally."""
    root = Path(settings.MARKET_DATA_DIR)
    settings.ML_TRAINING_CACHE_DIR = tmp_path / "training-cache"
    spans = _record_days(root, DAYS)
    for day in DAYS:
        for kind in ("orderbook", "trade"):
            upload = uploads.day_file_upload(kind=kind, market=MARKET, day=day)
            assert upload.status == DayUpload.Status.VERIFIED
    deleted = uploads.day_files_apply_retention(today=TODAY, keep_days=3)
    assert sorted(deleted) == sorted(
        f"{k}/{MARKET}/{d.isoformat()}" for k in ("orderbook", "trade") for d in DAYS[:2]
    )
    assert dayfiles.list_days(root, "orderbook", MARKET) == DAYS[2:]
    client, bucket = s3
    return {
        "root": root,
        "cache": tmp_path / "training-cache",
        "spans": spans,
        "client": client,
        "bucket": bucket,
    }


def _params(**overrides: Any) -> TrainParams:
    return TrainParams.from_dict(small_params(**overrides))


def test_training_uses_all_five_days_fetching_the_two_retention_removed(archived: dict[str, Any]) -> None:
    root, cache = archived["root"], archived["cache"]
    selection = training_days_select(_params(days=5))
    assert selection.requested == DAYS and selection.days == DAYS
    assert selection.fetched == DAYS[:2] and selection.missing == {}
    # Fetched into the training cache, byte-identical to what was verified; the live directory is untouched.
    for day in DAYS[:2]:
        for kind in ("orderbook", "trade"):
            (part,) = dayfiles.segment_paths(dayfiles.day_dir(cache, kind, MARKET, day))
            upload = DayUpload.objects.get(kind=kind, market=MARKET, day=day)
            assert uploads.file_digests(part)[1] == upload.sha256
    assert dayfiles.list_days(root, "orderbook", MARKET) == DAYS[2:]
    data = market_data_load(root=root, market=MARKET, days=selection.days, params=_params(days=5))
    seen = {dayfiles.day_of(int(t)) for t in data.labelled.frame.ts}
    assert seen == set(DAYS)
    for day, (start, end) in archived["spans"].items():  # every day's whole session, not a fragment
        ts = data.labelled.frame.ts
        assert ts[np.searchsorted(ts, start)] == start and end in set(ts.tolist()), day
    # A second selection reuses the verified cache; retention still sees only its own three days.
    assert training_days_select(_params(days=5)).fetched == DAYS[:2]
    assert uploads.day_files_apply_retention(today=TODAY, keep_days=3) == []


def test_model_train_report_lists_requested_fetched_and_used_days(archived: dict[str, Any]) -> None:
    version = model_train(params=_params(days=5, spikes=False)).version
    assert version.data_days == [d.isoformat() for d in DAYS]
    data = version.report["data"]
    assert data["requested_days"] == [d.isoformat() for d in DAYS]
    assert data["fetched_days"] == [d.isoformat() for d in DAYS[:2]]
    assert data["missing_days"] == {}


def test_tampered_archive_is_refused_and_the_day_reported_missing(
    archived: dict[str, Any], caplog: pytest.LogCaptureFixture, client: Any
) -> None:
    s3_client, bucket = archived["client"], archived["bucket"]
    upload = DayUpload.objects.get(kind="orderbook", market=MARKET, day=DAYS[0])
    body = bytearray(s3_client.get_object(Bucket=bucket, Key=upload.key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # same size, different content
    s3_client.put_object(Bucket=bucket, Key=upload.key, Body=bytes(body))

    with pytest.raises(archive.DayArchiveChecksumError, match="does not match the SHA-256"):
        archive.day_files_ensure_local(
            kind="orderbook", market=MARKET, day=DAYS[0], cache_dir=archived["cache"]
        )
    assert not dayfiles.segment_paths(dayfiles.day_dir(archived["cache"], "orderbook", MARKET, DAYS[0]))

    with caplog.at_level(logging.WARNING, logger="mlmodel.services"):
        version = model_train(params=_params(days=5, spikes=False)).version
    assert version.data_days == [d.isoformat() for d in DAYS[1:]]
    missing = version.report["data"]["missing_days"]
    assert list(missing) == [DAYS[0].isoformat()] and "SHA-256" in missing[DAYS[0].isoformat()]
    assert version.report["data"]["fetched_days"] == [DAYS[1].isoformat()]
    assert DAYS[0].isoformat() in caplog.text and "missing" in caplog.text
    first_ts = int(version.data_start.timestamp() * 1000)
    assert dayfiles.day_of(first_ts) == DAYS[1]  # nothing of the refused day was used
    # The report page says so too.
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(f"/model/versions/{version.pk}/").content.decode()
    assert "Days missing" in page and DAYS[0].isoformat() in page and "SHA-256" in page


def test_a_day_never_uploaded_is_reported_missing(archived: dict[str, Any]) -> None:
    # The collector recorded nothing on DAYS[0] - 1 and DAYS[0] - 2: asking for 7 days gets the 5 that exist.
    DayUpload.objects.filter(day=DAYS[1]).delete()  # and DAYS[1] was never uploaded before retention lost it
    selection = training_days_select(_params(days=7))
    assert selection.days == [DAYS[0], *DAYS[2:]]
    assert sorted(selection.missing) == [
        DAYS[0] - dt.timedelta(days=2),
        DAYS[0] - dt.timedelta(days=1),
        DAYS[1],
    ]
    assert "no verified upload" in selection.missing[DAYS[1]]
    assert archive.day_files_ensure_local(
        kind="orderbook", market=MARKET, day=DAYS[1], cache_dir=archived["cache"]
    ) is None  # fmt: skip


def test_available_days_list_local_and_archived(archived: dict[str, Any]) -> None:
    days = archive.market_days_available(market=MARKET)
    assert [(a.day, a.local, a.archived) for a in days] == [
        (d, d in DAYS[2:], True) for d in DAYS
    ]  # fmt: skip


def test_the_cache_must_not_be_the_live_directory(archived: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="live directory"):
        archive.day_files_ensure_local(
            kind="orderbook", market=MARKET, day=DAYS[0], cache_dir=archived["root"]
        )

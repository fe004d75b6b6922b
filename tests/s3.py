"""Shared S3 fixtures: moto's standalone S3 server over HTTP, and django-storages' S3 backend pointed at it.

Import the fixtures into a test module (``from tests.s3 import s3, s3_endpoint  # noqa: F401``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import live

REGION = "ap-northeast-2"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = live.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    live.wait_for_port(port, timeout=20)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")  # fmt: skip


@pytest.fixture
def s3(s3_endpoint: str, settings: Any, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """django-storages' S3 backend as the default storage, pointed at moto; a fresh bucket per test."""
    bucket = f"obs-{uuid.uuid4().hex[:12]}"
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.AWS_S3_ENDPOINT_URL = s3_endpoint
    settings.AWS_S3_REGION_NAME = REGION
    settings.AWS_S3_ACCESS_KEY_ID = "testing"
    settings.AWS_S3_SECRET_ACCESS_KEY = "testing"
    settings.AWS_S3_ADDRESSING_STYLE = "path"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    settings.MARKET_DATA_DIR = tmp_path / "data"
    yield client, bucket

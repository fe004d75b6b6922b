"""Test settings with the embedded broker as it was before issue 12 (kombu's filesystem transport): the
baseline of bench/bench_broker.py, never used by the product."""

import os

from observator.settings.test import *  # noqa: F403

_fs = VAR_DIR / "celery" / "filesystem-broker"  # noqa: F405
CELERY_BROKER_URL = "filesystem://"
CELERY_BROKER_TRANSPORT = None
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "data_folder_in": str(_fs / "data"),
    "data_folder_out": str(_fs / "data"),
    "processed_folder": str(_fs / "processed"),
    "control_folder": str(_fs / "control"),
    "store_processed": False,
}
for _d in ("data", "processed", "control"):
    (_fs / _d).mkdir(parents=True, exist_ok=True)
# The bench also runs it polling as often as the SQLite broker does (kombu's default is once a second).
if os.environ.get("FILESYSTEM_BROKER_POLLING_INTERVAL"):
    CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = float(
        os.environ["FILESYSTEM_BROKER_POLLING_INTERVAL"]
    )

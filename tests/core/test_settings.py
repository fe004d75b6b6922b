"""Settings: every default is defined once (observator/settings), read without a second default at the call
site; the fee is parsed once into a Decimal; loading the settings creates no folder."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "core", "market", "mlmodel", "trading", "autotrade")


def _getattr_with_default(path: Path) -> list[str]:
    """``getattr(settings, "NAME", default)`` calls in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) == 3
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "settings"
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_call_site_keeps_a_second_default_of_a_setting() -> None:
    hits = [hit for app in APPS for path in (ROOT / app).rglob("*.py") for hit in _getattr_with_default(path)]
    assert hits == [], "define the setting in observator/settings and read settings.NAME: " + ", ".join(hits)


def test_every_ml_knob_is_a_setting_and_the_fee_a_decimal() -> None:
    from mlmodel import conf

    for name in ("ML_WINDOW", "ML_GATE_MIN_ROUND_TRIPS", "ML_MIN_TEST_SAMPLES", "ML_MAX_DATA_AGE_S"):
        assert conf.get(name) == getattr(settings, name)
    assert isinstance(settings.UPBIT_FEE_RATE, Decimal)
    # The live feed and the model serving read one number of levels (serving once assumed 30, base 15).
    assert settings.MARKET_PREDICTION_LEVELS == 15


def test_loading_the_settings_creates_no_folder_and_parses_the_fee_once(tmp_path: Path) -> None:
    var = tmp_path / "var-never-made"
    env = {
        **os.environ,
        "OBSERVATOR_VAR_DIR": str(var),
        "UPBIT_FEE_RATE": "0.00139",
        "DJANGO_SETTINGS_MODULE": "observator.settings.test",
    }
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(repr(settings.UPBIT_FEE_RATE), settings.EMAIL_BACKEND)"
    )
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["Decimal('0.00139')", "django.core.mail.backends.locmem.EmailBackend"]
    assert not var.exists()

"""Every translatable string in the code and templates is in the Korean catalogue, translated and current.

The per-page tests compare what a page shows; this one extracts the catalogue afresh (as `makemessages` does)
from a copy of the tree, so a string added anywhere — a banner, an admin column, a WebSocket error — cannot
ship in English only because no page test happened to render it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("accounts", "core", "market", "mlmodel", "trading", "autotrade", "observator", "templates")
CATALOGUE = Path("locale/ko/LC_MESSAGES/django.po")

pytestmark = pytest.mark.skipif(
    shutil.which("xgettext") is None or shutil.which("msgmerge") is None,
    reason="GNU gettext (xgettext, msgmerge) is not installed; .ci/run installs it",
)


def test_every_string_is_translated_in_the_korean_catalogue(tmp_path: Path) -> None:
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "migrations")
            )
    (tmp_path / CATALOGUE).parent.mkdir(parents=True)
    shutil.copy(ROOT / CATALOGUE, tmp_path / CATALOGUE)
    # makemessages needs settings for its options only; the copy has no manage.py of its own.
    proc = subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "ko", "--no-obsolete", "-v", "0"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "tests.core.makemessages_settings",
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    po = polib.pofile(str(tmp_path / CATALOGUE))
    missing = [e.msgid for e in po.untranslated_entries()]
    fuzzy = [e.msgid for e in po.fuzzy_entries()]
    assert not missing, f"untranslated in Korean: {missing}"
    assert not fuzzy, f"fuzzy (changed since translated) in Korean: {fuzzy}"
    # The shipped catalogue holds every extracted string (else: makemessages -l ko, translate, compile).
    shipped = {e.msgid for e in polib.pofile(str(ROOT / CATALOGUE)) if not e.obsolete}
    assert {e.msgid for e in po if not e.obsolete} <= shipped

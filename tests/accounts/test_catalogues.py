"""Translation catalogues: one translation per message across every catalogue, and compiled files current.

Two catalogues once translated 8 shared messages differently (which one a page showed depended on the
order of LOCALE_PATHS and INSTALLED_APPS). A message may appear in several catalogues only with one
translation; a .mo must hold exactly what its .po says (someone forgot compilemessages otherwise).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.utils import translation

ROOT = Path(settings.BASE_DIR)
SKIP_DIRS = {".venv", "node_modules", "var", ".git"}


def project_catalogues(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in root.rglob("*.po") if not SKIP_DIRS.intersection(p.relative_to(root).parts))


def translations(po: Path) -> dict[tuple[str | None, str], str]:
    out = {}
    for e in polib.pofile(str(po)).translated_entries():
        out[(e.msgctxt, e.msgid)] = e.msgstr or "|".join(v for _k, v in sorted(e.msgstr_plural.items()))
    return out


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def conflicts(catalogues: list[Path]) -> list[str]:
    """Messages translated differently in two catalogues of the same language."""
    seen: dict[tuple[str, str | None, str], dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for po in catalogues:
        language = po.parent.parent.name
        for (ctx, msgid), msgstr in translations(po).items():
            seen[(language, ctx, msgid)][msgstr].append(po)
    return [
        f"{lang} {msgid!r}"
        + (f" (context {ctx!r})" if ctx else "")
        + ": "
        + "; ".join(f"{s!r} in {', '.join(_name(p) for p in paths)}" for s, paths in by_str.items())
        for (lang, ctx, msgid), by_str in seen.items()
        if len(by_str) > 1
    ]


def test_a_message_has_one_translation_across_catalogues():
    catalogues = project_catalogues()
    assert catalogues, "no catalogue found"
    assert not conflicts(catalogues), "\n".join(conflicts(catalogues))


def test_the_check_catches_two_translations_of_one_message(tmp_path: Path):
    for app, msgstr in (("a", "자동 매매"), ("b", "자동매매")):
        po_dir = tmp_path / app / "locale" / "ko" / "LC_MESSAGES"
        po_dir.mkdir(parents=True)
        po = polib.POFile()
        po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
        po.append(polib.POEntry(msgid="Auto-trading", msgstr=msgstr))
        po.append(polib.POEntry(msgid="Buy", msgstr="매수"))
        po.save(str(po_dir / "django.po"))
    found = conflicts(sorted(tmp_path.rglob("*.po")))
    assert len(found) == 1 and "Auto-trading" in found[0]


@pytest.mark.parametrize("po", project_catalogues(), ids=_name)
def test_compiled_catalogue_matches_its_source(po: Path):
    mo = po.with_suffix(".mo")
    assert mo.exists(), f"{mo} is missing: run manage.py compilemessages"
    compiled = {(e.msgctxt, e.msgid): e.msgstr for e in polib.mofile(str(mo)) if e.msgid and e.msgstr}
    source = {
        (e.msgctxt, e.msgid): e.msgstr
        for e in polib.pofile(str(po)).translated_entries()
        if not e.msgid_plural
    }
    stale = {k: v for k, v in source.items() if k in compiled and compiled[k] != v or k not in compiled}
    assert not stale, f"{mo} is older than {po}: run manage.py compilemessages ({len(stale)} differ)"


@pytest.mark.parametrize(
    ("context", "message", "korean"),
    [
        (None, "Auto-trading", "자동매매"),
        (None, "PAPER", "모의투자"),
        (None, "Live", "실시간"),  # the chart range and the connection state
        ("trading mode", "Live", "실거래"),
    ],
)
def test_the_site_shows_the_one_translation(context: str | None, message: str, korean: str):
    with translation.override("ko"):
        shown = translation.pgettext(context, message) if context else translation.gettext(message)
    assert shown == korean

"""The layer contracts of .importlinter hold (issue 15), and the checker is not vacuous: the same graph
breaks a contract that says the opposite. ``python3 dev.py lint`` runs them in CI as well; here they fail
the suite too, with the offending import chain in the output."""

from __future__ import annotations

import os
from pathlib import Path

from importlinter import cli as importlinter_cli

ROOT = Path(__file__).resolve().parents[2]


def _lint(config: Path) -> int:
    cwd = os.getcwd()
    os.chdir(ROOT)  # grimp finds the apps from the repository root
    try:
        return importlinter_cli.lint_imports(config_filename=str(config), no_cache=True, no_logo=True)
    finally:
        os.chdir(cwd)


def test_the_project_contracts_are_kept() -> None:
    assert _lint(ROOT / ".importlinter") == importlinter_cli.EXIT_STATUS_SUCCESS


def test_a_contract_against_the_real_layering_is_broken(tmp_path: Path) -> None:
    config = tmp_path / "inverted.ini"
    config.write_text(
        "[importlinter]\nroot_packages =\n    autotrade\n    trading\n\n"
        "[importlinter:contract:inverted]\nname = inverted\ntype = layers\n"
        "layers =\n    trading\n    autotrade\n"
    )
    assert _lint(config) == importlinter_cli.EXIT_STATUS_ERROR

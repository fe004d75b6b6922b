#!/usr/bin/env python3
"""OBservator developer entry point. Needs only Python 3.11+; everything else it installs itself.

    python3 dev.py run      # set up (venv, packages, migrations, first admin) and run the whole stack
    python3 dev.py test     # set up the test tools and run the whole test suite
    python3 dev.py lint | bench | setup | demo

Environment: see .env.example (DATABASE_URL, REDIS_URL, ...). Without any, it runs embedded:
SQLite, in-memory channel layer, local files, a SQLite (WAL) Celery broker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
VAR = ROOT / "var"


def sh(*args: str | Path, check: bool = True, env: dict[str, str] | None = None) -> int:
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if check and result.returncode != 0:
        sys.exit(result.returncode)
    return result.returncode


def uses_mysql() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("mysql", "mariadb"))


def apt_install(packages: list[str]) -> None:
    """Install Debian packages when running as root on Debian (CI, fresh dev machines); else just say so."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"! please install these system packages: {' '.join(packages)}", flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if sh("apt-get", "install", "-y", "-q", "--no-install-recommends", *packages, check=False, env=env) != 0:
        sh("apt-get", "update", "-q", env=env)
        sh("apt-get", "install", "-y", "-q", "--no-install-recommends", *packages, env=env)


def requirement_files(dev: bool) -> list[Path]:
    files = [ROOT / "requirements.txt"]
    if dev:
        files.append(ROOT / "requirements-dev.txt")
    if uses_mysql():
        files.append(ROOT / "requirements-mysql.txt")
    return files


def ensure_venv(dev: bool = False) -> None:
    if not PY.exists():
        sh(sys.executable, "-m", "venv", VENV)
        sh(PY, "-m", "pip", "install", "-q", "--upgrade", "pip")
    files = requirement_files(dev)
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    stamp = VENV / f".installed-{'dev' if dev else 'run'}{'-mysql' if uses_mysql() else ''}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    if uses_mysql() and not shutil.which("mariadb_config") and not shutil.which("mysql_config"):
        apt_install(["libmariadb-dev", "pkg-config"])
    args: list[str | Path] = [PY, "-m", "pip", "install", "-q"]
    for f in files:
        args += ["-r", f]
    sh(*args)
    stamp.write_text(digest)


def ensure_frontend() -> None:
    """Front-end libraries from the npm registry (chart library); the pages degrade without them."""
    if not (ROOT / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        print("! npm not found: the price chart falls back to the built-in renderer", flush=True)
        return
    lock = ROOT / "package-lock.json"
    stamp = ROOT / "node_modules" / ".installed"
    digest = hashlib.sha256(
        (ROOT / "package.json").read_bytes() + (lock.read_bytes() if lock.exists() else b"")
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    cmd = "ci" if lock.exists() else "install"
    if sh(npm, cmd, "--no-audit", "--no-fund", "--silent", check=False) == 0:
        stamp.write_text(digest)


def manage(*args: str, check: bool = True) -> int:
    return sh(PY, "manage.py", *args, check=check)


def ensure_admin() -> None:
    """Create the first admin if none exists: from DJANGO_SUPERUSER_* env, else ask (no fixed password)."""
    code = (
        "from django.contrib.auth import get_user_model as g;"
        "import sys; sys.exit(0 if g().objects.filter(is_superuser=True).exists() else 3)"
    )
    if sh(PY, "manage.py", "shell", "--no-imports", "-c", code, check=False) == 0:
        return
    if os.environ.get("DJANGO_SUPERUSER_USERNAME") and os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
        os.environ.setdefault(
            "DJANGO_SUPERUSER_EMAIL", f"{os.environ['DJANGO_SUPERUSER_USERNAME']}@localhost"
        )
        manage("createsuperuser", "--noinput")
    elif sys.stdin.isatty():
        print("No admin user yet: create the first one.", flush=True)
        manage("createsuperuser", check=False)
    else:
        print("! no admin user: set DJANGO_SUPERUSER_USERNAME/PASSWORD or run interactively", flush=True)


def setup(dev: bool = False) -> None:
    VAR.mkdir(exist_ok=True)
    ensure_venv(dev=dev)
    ensure_frontend()
    manage("migrate", "--noinput", "-v", "0")


def cmd_run(argv: list[str]) -> int:
    setup()
    ensure_admin()
    os.execv(str(PY), [str(PY), "manage.py", "runstack", *argv])
    return 0


def cmd_demo(argv: list[str]) -> int:
    return cmd_run(["--demo", *argv])


def cmd_test(argv: list[str]) -> int:
    ensure_venv(dev=True)
    ensure_frontend()
    if not Path("/usr/bin/chromium").exists():
        apt_install(["chromium", "fonts-noto-cjk"])
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "observator.settings.test"}
    sh(PY, "manage.py", "makemigrations", "--check", "--dry-run", env=env)
    return sh(PY, "-m", "pytest", *argv, check=False, env=env)


def cmd_lint(argv: list[str]) -> int:
    """Style (ruff), the layer contracts (import-linter, .importlinter) and the type checks (mypy, the
    [tool.mypy] section of pyproject.toml). Every check runs; the exit status is the first failure's."""
    ensure_venv(dev=True)
    checks: list[list[str | Path]] = [
        [PY, "-m", "ruff", "check", "."],
        [PY, "-m", "ruff", "format", "--check", "."],
        [VENV / "bin" / "lint-imports", "--no-cache"],
        [PY, "-m", "mypy"],
    ]
    rc = 0
    for args in checks:
        result = sh(*args, check=False)
        rc = rc or result
    return rc


def cmd_bench(argv: list[str]) -> int:
    ensure_venv(dev=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "observator.settings.test"}
    names = argv or sorted(p.stem for p in (ROOT / "bench").glob("bench_*.py"))
    rc = 0
    for name in names:
        rc |= sh(PY, ROOT / "bench" / f"{name.removesuffix('.py')}.py", check=False, env=env)
    return rc


def cmd_setup(argv: list[str]) -> int:
    setup(dev="--dev" in argv)
    return 0


COMMANDS = {
    "run": cmd_run,
    "demo": cmd_demo,
    "test": cmd_test,
    "lint": cmd_lint,
    "bench": cmd_bench,
    "setup": cmd_setup,
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        return 2
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

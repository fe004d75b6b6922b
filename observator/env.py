"""Environment reading for settings: one django-environ instance, and local secrets generated on first run.

SECRET_KEY and FIELD_ENCRYPTION_KEYS come from the environment; when absent in a local/test run they are
generated once into ``var/local-secrets.env`` (untracked, mode 0600) so a fresh machine needs nothing.
Production settings refuse to start without them.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("OBSERVATOR_VAR_DIR", BASE_DIR / "var"))

env = environ.Env()
_dotenv = BASE_DIR / ".env"
if _dotenv.exists():
    environ.Env.read_env(str(_dotenv), overwrite=False)

LOCAL_SECRETS = VAR_DIR / "local-secrets.env"


def _generate_local_secrets() -> None:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    content = f"SECRET_KEY={secrets.token_urlsafe(50)}\nFIELD_ENCRYPTION_KEYS={fernet_key}\n"
    tmp = LOCAL_SECRETS.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    try:
        os.link(tmp, LOCAL_SECRETS)  # atomic create-if-absent: two processes starting at once agree
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def load_local_secrets() -> None:
    """Fill SECRET_KEY / FIELD_ENCRYPTION_KEYS from the local secrets file, creating it if needed."""
    if os.environ.get("SECRET_KEY") and os.environ.get("FIELD_ENCRYPTION_KEYS"):
        return
    if not LOCAL_SECRETS.exists():
        _generate_local_secrets()
    environ.Env.read_env(str(LOCAL_SECRETS), overwrite=False)

"""Test settings: fast hashing, in-process e-mail; database and Redis still come from the environment."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-" + "x" * 20)
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "aGVsbG8taGVsbG8taGVsbG8taGVsbG8taGVsbG8taGk=")

from observator.settings.base import *  # noqa: E402,F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
AXES_FAILURE_LIMIT = 5
MARKET_DATA_DIR = env.path("MARKET_DATA_DIR", default=VAR_DIR / "test-data")  # noqa: F405
# One test database per test run (several runs may share a machine); live subprocesses get its name.
_run = os.environ.setdefault("OBSERVATOR_TEST_RUN", str(os.getpid()))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not :memory:, so live subprocesses (Celery worker, ASGI server) see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{_run}.sqlite3")}  # noqa: F405
else:
    DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_{DATABASES['default']['NAME']}_{_run}"  # noqa: F405
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"user": "10000/min", "anon": "10000/min", "orders": "10000/min"},
}

"""Redis and Celery: the cache, the channel layer and the Celery broker (Redis, or embedded without it), the
queues and time limits, and the one beat schedule, assembled from each app's periodic tasks."""

from __future__ import annotations

from functools import partial

from observator.env import VAR_DIR, env
from observator.settings.core import TIME_ZONE
from observator.settings.market import market_beat_schedule
from observator.settings.ml import ml_beat_schedule
from observator.settings.trading import trading_beat_schedule

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
        "shared": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
else:
    # "default" is per process (hot paths: tickers, balances). "shared" holds the few marks every process
    # must agree on (a source reported down, a user's keys version, the news version): a folder of files,
    # since the web server, the workers' pool processes and the collector are separate processes here.
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "shared": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        },
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A broker that needs no server: one SQLite file in WAL mode (core/broker.py says why not kombu's
    # filesystem transport; bench/bench_broker.py measures both). The file and folder are made on first use.
    from core.broker import sqlite_connect  # the kombu transport module: only loaded without Redis

    CELERY_BROKER_URL = f"sqlite:///{VAR_DIR / 'celery' / 'broker.sqlite'}"
    CELERY_BROKER_TRANSPORT = "core.broker:Transport"
    _results_db = VAR_DIR / "celery" / "results.sqlite"
    CELERY_RESULT_BACKEND = f"db+sqlite:///{_results_db}"
    # Results in WAL mode with a busy timeout too: the workers' children write them while others read.
    CELERY_DATABASE_ENGINE_OPTIONS = {"creator": partial(sqlite_connect, _results_db, autocommit=False)}

# Where processes other than the web server send realtime pushes when the channel layer is in-memory
# (embedded mode): the web process relays them into its own layer. See core/realtime.py.
REALTIME_RELAY_URL = env("REALTIME_RELAY_URL", default="http://127.0.0.1:8000/internal/realtime/")

CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"mlmodel.tasks.*": {"queue": "ml"}}
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3900)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through LOGGING (settings/core.py: JSON, UTC, secrets redacted), not Celery's own root handler
# and format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {**market_beat_schedule, **ml_beat_schedule, **trading_beat_schedule}

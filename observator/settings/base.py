"""Base settings shared by every environment; everything deployment-specific is read from the environment."""

from __future__ import annotations

from decimal import Decimal
from ipaddress import ip_network

from celery.schedules import crontab

from observator.env import BASE_DIR, VAR_DIR, env

SECRET_KEY = env("SECRET_KEY")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Reverse proxies whose X-Forwarded-For (and -Proto) is believed: IP addresses or CIDR networks. Empty (the
# default): none, the connecting peer is the client. The launcher passes them to uvicorn
# (--forwarded-allow-ips); the login lockout uses them too (accounts.client_ip).
TRUSTED_PROXIES = [
    str(ip_network(p.strip(), strict=False)) for p in env.list("TRUSTED_PROXIES", default=[]) if p.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from static: the docs work offline
    "django_celery_beat",
    "axes",
    "core",
    "accounts",
    "market",
    "mlmodel",
    "trading",
    "autotrade",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.streaming.WhiteNoiseMiddleware",  # WhiteNoise, streamed asynchronously under ASGI
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "observator.urls"
ASGI_APPLICATION = "observator.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.site",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.mysql":
    _db.setdefault("OPTIONS", {}).update(
        {
            "charset": "utf8mb4",
            "init_command": "SET sql_mode='STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
            "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
            "isolation_level": "read committed",
        }
    )
    _db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web, workers and beat share one SQLite file.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
_db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/home"
LOGOUT_REDIRECT_URL = "/login"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "accounts.validators.PasswordPolicyValidator"},
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)  # hours
# A username locks after AXES_FAILURE_LIMIT failures from any mix of addresses (a rotating X-Forwarded-For,
# or many machines, cannot sidestep it); the username + address pair is counted too. The price: anyone can
# lock a known username out for the cool-off period.
AXES_LOCKOUT_PARAMETERS = ["username", ["username", "ip_address"]]
# The address recorded and locked: the peer, or what a TRUSTED_PROXIES proxy forwarded (accounts.client_ip).
AXES_CLIENT_IP_CALLABLE = "accounts.client_ip.client_ip_get"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.lockout_response"
AXES_SENSITIVE_PARAMETERS = ["password", "access_key", "secret_key"]

# Exchange keys are encrypted at rest with MultiFernet; the first key encrypts, all keys decrypt (rotation).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS")
# Extra sections of the profile page (holdings, e-mail report, ...): dotted paths to callables
# ``(request) -> str`` returning HTML-safe markup, rendered in order (see accounts.views._profile_sections).
PROFILE_SECTIONS: list[str] = [
    "trading.views.profile_holdings_section",
    "trading.views.profile_report_section",
]
# Typed messages between apps (core.messages): a lower app publishes a msgspec Struct of a topic; the Celery
# tasks declared here receive it as keyword argument ``arg`` on ``queue``. A publisher never names a higher
# app's task; this is the one place that wires them (catalogue: docs/architecture.md).
MESSAGE_SUBSCRIBERS: dict[str, list[dict[str, str]]] = {
    # market.messages.MarketBatch: the collector's ~1 s batch of every market's books and trades
    "market.batch": [{"task": "mlmodel.tasks.ingest_market_data", "queue": "ml", "arg": "packed"}],
    # mlmodel.messages.Prediction: every new prediction of an active model
    "mlmodel.prediction": [
        {"task": "autotrade.tasks.autotrade_on_prediction", "queue": "default", "arg": "prediction"}
    ],
}
# Hooks of the apps above trading (trading never imports them): dotted paths to callables.
# ``(*, user, reason) -> None``, called after trading halted auto-trading for ``user`` (daily loss limit) or
# for everyone (``user=None``: the kill switch engaged); see trading.hooks.auto_trading_halted_notify.
AUTO_TRADING_HALT_HOOKS: list[str] = ["autotrade.services.autotrade_on_halt"]
# ``(*, user) -> dict``, merged into the /trade page's client configuration (its ``api`` entries join the
# page's endpoints); see trading.dashboard.trade_page_context.
TRADE_PAGE_CONFIG: list[str] = ["autotrade.views.trade_page_config"]
# ``(request) -> str`` returning HTML-safe markup: the /trade page's panels, in order (trading.dashboard).
TRADE_PAGE_PANELS: list[str] = ["autotrade.views.trade_panel"]
# Checks Upbit keys before they are stored (a read-only GET /v1/accounts against UPBIT_REST_URL):
# ``callable(*, access_key, secret_key) -> accounts.services.KeyCheckResult`` (see exchange_credential_check).
EXCHANGE_KEY_CHECK = "market.keycheck.upbit_keys_check"

# --- i18n -----------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ko", "한국어")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", default="Asia/Seoul")
USE_I18N = True
USE_TZ = True

# --- Static and media / storage -------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Front-end libraries from the npm registry, installed by the setup command into node_modules (not copied
# into the repository); served under /static/vendor/.
NODE_MODULES_DIR = BASE_DIR / "node_modules"
if NODE_MODULES_DIR.is_dir():
    STATICFILES_DIRS.append(("vendor", NODE_MODULES_DIR))
# Local and test runs serve static files straight from the finders; production serves collectstatic output.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
MEDIA_URL = "/media/"
MEDIA_ROOT = VAR_DIR / "media"

AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", default="")
AWS_S3_ENDPOINT_URL = env("AWS_S3_ENDPOINT_URL", default=None)
AWS_S3_REGION_NAME = env("AWS_S3_REGION_NAME", default="ap-northeast-2")
AWS_DEFAULT_ACL = None
AWS_S3_FILE_OVERWRITE = False
if AWS_STORAGE_BUCKET_NAME:
    _default_storage = {"BACKEND": "storages.backends.s3.S3Storage"}
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- E-mail ---------------------------------------------------------------------------------------------
_email = env.email_url("EMAIL_URL", default="consolemail://")  # e.g. smtp+tls://user:password@host:587
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email["EMAIL_HOST"]
EMAIL_PORT = _email["EMAIL_PORT"]
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = _email.get("OPTIONS", {}).get("TIMEOUT")  # ?timeout=N on the URL
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="OBservator <no-reply@observator.local>")

# --- Redis: cache, channel layer, Celery -----------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
# /metrics answers loopback peers, and others that send "Authorization: Bearer <METRICS_TOKEN>" (docs/ops).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# Each process's liveness file (core.metrics): the launcher's health checks read it.
HEALTH_DIR = env.path("HEALTH_DIR", default=VAR_DIR / "health")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A broker that needs no server: one SQLite file in WAL mode (core/broker.py says why not kombu's
    # filesystem transport; bench/bench_broker.py measures both). The file and folder are made on first use.
    from functools import partial

    from core.broker import sqlite_connect

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
# Workers log through LOGGING above (JSON, UTC, secrets redacted), not Celery's own root handler and format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
_upload_h, _upload_m = (int(x) for x in env("MARKET_UPLOAD_AT", default="00:05").split(":"))
_train_h, _train_m = (int(x) for x in env("ML_RETRAIN_AT", default="00:10").split(":"))
# --- Machine learning (every ML_* knob and its default; mlmodel.conf.get reads them) --------------------
# Prediction serving in the ml worker.
ML_DEVICE = env("ML_DEVICE", default="auto")  # "auto" = CUDA when available
ML_SERVING_THREADS = env.int("ML_SERVING_THREADS", default=1)  # 0 = leave torch / BLAS threads as they are
ML_SERVING_COMPILED = env.bool("ML_SERVING_COMPILED", default=True)  # single-layer LSTMs on CPU: compiled
# A queued training run that no ml worker has taken after this many seconds is failed as "undelivered".
ML_TRAINING_PICKUP_TIMEOUT_S = env.float("ML_TRAINING_PICKUP_TIMEOUT_S", default=90.0)
# The first model of a market with none active is trained by itself once this much data is recorded
# (mlmodel/bootstrap.py; checked every ML_BOOTSTRAP_CHECK_S on the default queue).
ML_BOOTSTRAP = env.bool("ML_BOOTSTRAP", default=True)
ML_BOOTSTRAP_MIN_MINUTES = env.float("ML_BOOTSTRAP_MIN_MINUTES", default=10.0)
ML_BOOTSTRAP_CHECK_S = env.float("ML_BOOTSTRAP_CHECK_S", default=30.0)
ML_BOOTSTRAP_MARKETS = env.list("ML_BOOTSTRAP_MARKETS", default=[])  # empty = every market in MARKET_CODES
# One set of training defaults (mlmodel/config.py): train, ml_report, nightly retrain, Train now and the
# first-model bootstrap all start from these. Window 30: at 50 the test sets of sparse data shrink.
ML_TRAIN_DAYS = 5
ML_HORIZON_S = 10.0
ML_WINDOW = 30
ML_FEATURE_LEVELS = 10
ML_HIDDEN = 32
ML_LAYERS = 1
ML_DROPOUT = 0.0
ML_EPOCHS = 40
ML_PATIENCE = 6
ML_BATCH_SIZE = 256
ML_LR = 1e-3
ML_SEED = 0
ML_MAX_SAMPLES_PER_EPOCH = 200_000
ML_N_SPLITS = 3
ML_TRAIN_STRIDE = 1
ML_EVAL_STRIDE = 1
ML_SPIKE_K = 4.0
ML_SPIKE_WINDOW_S = 60.0
ML_SPIKE_PAD_S = 600.0
ML_TRAIN_IN_SUBPROCESS: bool | None = None  # None = yes inside the ml worker (serving goes on), no elsewhere
ML_TRAIN_TIME_LIMIT_S = 6 * 3600
ML_PREDICTION_KEEP_S = 3600  # predictions older than this are pruned
ML_LIVE_KEEP_S = 300  # raw book/trade history kept per market in the ML worker
ML_MAX_DATA_AGE_S: float | None = 15.0  # no prediction from a snapshot older than this (None = no check)
ML_BACKTEST_THRESHOLD = 0.0005  # the threshold the walk-forward backtest assumes (0.05 %)
ML_BACKTEST_ORDER_KRW = 100_000.0
ML_BACKTEST_LATENCY_MS = 100
# The promotion gate (mlmodel/gate.py): significance level of the loss tests, the backtest round trips a
# candidate needs over all test periods (5 days of data), and the smallest test period (samples) below
# which a training fails instead of reporting a figure of noise.
ML_GATE_ALPHA = 0.05
ML_GATE_MIN_ROUND_TRIPS = 20
ML_MIN_TEST_SAMPLES = 200
# Where spike/crash slices and archived day files fetched back for training are kept; None = beside
# MARKET_DATA_DIR (``<name>-ml-spikes``, ``<name>-training-cache``), see mlmodel.conf.
ML_SPIKE_DATA_DIR = env("ML_SPIKE_DATA_DIR", default=None)
ML_TRAINING_CACHE_DIR = env("ML_TRAINING_CACHE_DIR", default=None)
CELERY_BEAT_SCHEDULE = {
    "market-upload-finished-days": {
        "task": "market.tasks.upload_finished_days",
        "schedule": crontab(hour=_upload_h, minute=_upload_m),
    },
    "market-retention": {"task": "market.tasks.apply_retention", "schedule": crontab(minute=30)},
    "mlmodel-nightly-retrain": {
        "task": "mlmodel.tasks.nightly_retrain",
        "schedule": crontab(hour=_train_h, minute=_train_m),
    },
    # A quick look at the recorded data; not on the ml queue, whose one process serves predictions.
    "mlmodel-bootstrap-first-model": {
        "task": "mlmodel.tasks.bootstrap_first_model",
        "schedule": ML_BOOTSTRAP_CHECK_S,
        "options": {"queue": "default", "expires": ML_BOOTSTRAP_CHECK_S},
    },
    # Training runs no ml worker took in time are failed as undelivered (mlmodel.tasks.training_runs_check).
    "mlmodel-training-runs-check": {
        "task": "mlmodel.tasks.training_runs_check",
        "schedule": 30.0,
        "options": {"queue": "default", "expires": 30.0},
    },
    "trading-fire-scheduled-orders": {"task": "trading.tasks.fire_due_scheduled_orders", "schedule": 1.0},
    "trading-reconcile-open-orders": {"task": "trading.tasks.reconcile_open_orders", "schedule": 60.0},
    # Fill resting paper limit orders as the market trades through them; refresh open live orders.
    "trading-sync-open-orders": {"task": "trading.tasks.sync_open_orders", "schedule": 1.0},
    "trading-daily-reports": {
        "task": "trading.tasks.send_daily_reports",
        "schedule": crontab(hour=8, minute=0),
    },
}

# --- REST API -------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: DRF answers a missing credential with the first class's authenticate_header, so an
    # anonymous call is a 401 with "WWW-Authenticate: Token" (session-only would make it a 403). Forbidden
    # (authenticated) and CSRF failures stay 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "core.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Throttles count REMOTE_ADDR: the web server has already put a TRUSTED_PROXIES proxy's client there
    # (DRF's default would key on the raw X-Forwarded-For text, a new bucket per made-up header).
    "NUM_PROXIES": 0,
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env("API_RATE_USER", default="600/min"),
        "anon": env("API_RATE_ANON", default="120/min"),
        "orders": env("API_RATE_ORDERS", default="120/min"),
        # Per client address: the sign-up duplicate check and the API-token endpoint (accounts.api.views).
        "username_check": env("API_RATE_USERNAME_CHECK", default="60/min"),
        "auth_token": env("API_RATE_AUTH_TOKEN", default="10/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "OBservator API",
    "DESCRIPTION": "Order-book-driven trading on Upbit KRW markets: balances, orders, schedules, "
    "auto-trading.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI / ReDoc from drf-spectacular-sidecar (static files), never a CDN: /api/docs/ works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No ReDoc page is routed (its bundle always loads a logo from cdn.redoc.ly); the setting keeps it local.
    "REDOC_DIST": "SIDECAR",
    # <id:...> path parameters are bounded integers (core.converters); every operation documents the common
    # error answers (core.schema).
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1},
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.add_error_responses",
    ],
}

# --- Market data ----------------------------------------------------------------------------------------
UPBIT_REST_URL = env("UPBIT_REST_URL", default="https://api.upbit.com")
UPBIT_WS_URL = env("UPBIT_WS_URL", default="wss://api.upbit.com/websocket/v1")
# True when the launcher fell back to the local Upbit simulator (or it was chosen): every page says so.
MARKET_SIMULATED = env.bool("MARKET_SIMULATED", default=False)
# The simulator's planted order-flow signal (docs/simulator.md), shown in the banner; the launcher sets it.
SIM_SIGNAL_STRENGTH = env.float("SIM_SIGNAL_STRENGTH", default=0.0)
MARKET_CODES = env.list("MARKET_CODES", default=["KRW-BTC"])
MARKET_DATA_DIR = env.path("MARKET_DATA_DIR", default=VAR_DIR / "data")
MARKET_RETENTION_DAYS = env.int("MARKET_RETENTION_DAYS", default=3)
# The recorded sample CSV that import_sample / ml_report read when no --csv is given ("" = the bundled one).
MARKET_SAMPLE_CSV = env("MARKET_SAMPLE_CSV", default="")
# Collector: seconds between day-file segments (a crash loses at most this much); S3 key prefix of uploads.
MARKET_FLUSH_INTERVAL = env.float("MARKET_FLUSH_INTERVAL", default=2.0)
MARKET_UPLOAD_PREFIX = env("MARKET_UPLOAD_PREFIX", default="marketdata")
# Send each second's new snapshots to the ML worker (mlmodel.tasks.ingest_market_data) for live predictions.
MARKET_PREDICTION_FEED = env.bool("MARKET_PREDICTION_FEED", default=True)
# Price levels per side in that feed (models may use at most this many; the default feature set uses 10).
MARKET_PREDICTION_LEVELS = env.int("MARKET_PREDICTION_LEVELS", default=15)
# Live fan-out (market/fanout.py, market/consumers.py): publish each market at most every N ms (latest wins),
# send each browser at most every N ms, top N order-book levels per side.
MARKET_FANOUT_INTERVAL_MS = env.int("MARKET_FANOUT_INTERVAL_MS", default=50)
MARKET_WS_THROTTLE_MS = env.int("MARKET_WS_THROTTLE_MS", default=50)
# An open /ws/user/ socket re-reads its session this often (and on each ping); gone -> closed with 4401.
WS_SESSION_RECHECK_S = env.float("WS_SESSION_RECHECK_S", default=10.0)
# The /trade page marks the market "stale" (closed or feed interrupted) after this long without an update.
DASHBOARD_STALE_AFTER_S = env.int("DASHBOARD_STALE_AFTER_S", default=10)
MARKET_FANOUT_LEVELS = env.int("MARKET_FANOUT_LEVELS", default=15)
# Public market-data REST API: requests per client (user, else IP).
MARKET_API_RATE = env("MARKET_API_RATE", default="300/min")
# Other exchanges' BTC tickers (public REST) and the FX source used to convert them to KRW. The FX endpoint
# returns {"base"|"base_code": "USD", "rates": {"KRW": .., "JPY": ..}} (ExchangeRate-API's open endpoint).
# USDT is priced with Upbit's KRW-USDT when MARKET_USDT_SOURCE=upbit and it answers, else as 1 USDT = 1 USD.
BITFLYER_API_URL = env("BITFLYER_API_URL", default="https://api.bitflyer.com")
BINANCE_API_URL = env("BINANCE_API_URL", default="https://api.binance.com")
OKX_API_URL = env("OKX_API_URL", default="https://www.okx.com")
FX_SOURCE_URL = env("FX_SOURCE_URL", default="https://open.er-api.com/v6/latest/USD")
FX_SOURCE_NAME = env("FX_SOURCE_NAME", default="ExchangeRate-API (open.er-api.com)")  # a name, in no language
MARKET_USDT_SOURCE = env("MARKET_USDT_SOURCE", default="upbit")
EXCHANGES_CACHE_SECONDS = env.int("EXCHANGES_CACHE_SECONDS", default=10)
FX_CACHE_SECONDS = env.int("FX_CACHE_SECONDS", default=3600)
FEEDS_HTTP_TIMEOUT = env.float("FEEDS_HTTP_TIMEOUT", default=4.0)
# Bitcoin news (RSS/Atom), refreshed by market.tasks.refresh_news.
NEWS_FEEDS = env.list(
    "NEWS_FEEDS",
    default=[
        "https://www.coindesk.com/arc/outboundfeeds/rss/",
        "https://cointelegraph.com/rss/tag/bitcoin",
        "https://bitcoinmagazine.com/.rss/full/",
    ],
)
NEWS_REFRESH_SECONDS = env.int("NEWS_REFRESH_SECONDS", default=600)
NEWS_KEEP_DAYS = env.int("NEWS_KEEP_DAYS", default=30)
CELERY_BEAT_SCHEDULE["market-refresh-news"] = {
    "task": "market.tasks.refresh_news",
    "schedule": float(NEWS_REFRESH_SECONDS),
}
# Parsed once, here: every user of the fee reads this Decimal (a fraction per side, charged in KRW).
UPBIT_FEE_RATE = Decimal(env("UPBIT_FEE_RATE", default="0.0005"))
UPBIT_MIN_ORDER_KRW = env.int("UPBIT_MIN_ORDER_KRW", default=5000)

# --- Trading --------------------------------------------------------------------------------------------
PAPER_STARTING_KRW = env("PAPER_STARTING_KRW", default="10000000")
# Paper fills use the collector's live book when at most this old (ms), else a REST snapshot (0: always).
PAPER_BOOK_MAX_AGE_MS = env.int("PAPER_BOOK_MAX_AGE_MS", default=2000)
# Also queue each time-triggered scheduled order with an ETA at its due time (the 1 s beat is the safety net).
TRADING_PRECISE_SCHEDULE = env.bool("TRADING_PRECISE_SCHEDULE", default=True)
# Auto-trading's round-trip cost = both fees + this factor x (spread / mid) of the live book: 0.5 (default)
# = the half-spread, 1.0 = the full spread a market buy-then-sell pays. Between 0 and 2.
AUTOTRADE_SPREAD_COST_FACTOR = env("AUTOTRADE_SPREAD_COST_FACTOR", default="0.5")
# "hold" decisions older than this many days are pruned (the buys and sells are kept).
AUTOTRADE_HOLD_KEEP_DAYS = env.float("AUTOTRADE_HOLD_KEEP_DAYS", default=7.0)


def _check_spread_cost_factor(value: str) -> None:
    from decimal import Decimal, InvalidOperation

    from django.core.exceptions import ImproperlyConfigured

    try:
        factor = Decimal(str(value).strip())
    except InvalidOperation:
        factor = Decimal("NaN")
    if not factor.is_finite() or not (0 <= factor <= 2):
        raise ImproperlyConfigured(
            f"AUTOTRADE_SPREAD_COST_FACTOR must be a number between 0 and 2, not {value!r}."
        )


_check_spread_cost_factor(AUTOTRADE_SPREAD_COST_FACTOR)

# --- Logging: one JSON object per line; secrets are redacted by a filter on every handler ---------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO").upper()  # runstack's children: WARNING unless LOG_LEVEL is set
# httpx logs every request at INFO (the collector's relay POSTs: 10 a second a market): only at DEBUG.
_HTTP_CLIENT_LOG_LEVEL = "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "core.logging.RedactSecretsFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            # ISO 8601 in UTC with its offset: the process runs in TIME_ZONE (Asia/Seoul), and a bare local
            # time without a zone read as the next day's early morning next to UTC timestamps elsewhere.
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler (DEBUG only) printed each 4xx/5xx a second time as plain text: the
        # root's JSON handler is the one handler. A client's 4xx (a too-small amount, a bad token) is answered
        # to the client and logged (as WARNING) only at LOG_LEVEL=INFO or DEBUG; 5xx are always logged.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.request": {"level": LOG_LEVEL if LOG_LEVEL in ("DEBUG", "INFO") else "ERROR"},
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        "httpx": {"level": _HTTP_CLIENT_LOG_LEVEL},
        "httpcore": {"level": _HTTP_CLIENT_LOG_LEVEL},
    },
}

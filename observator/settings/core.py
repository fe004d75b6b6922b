"""Django itself: hosts, apps, middleware, database, authentication, languages, static and media files,
e-mail, the REST API, logging and the operator's endpoints. Read from the environment, defaults here."""

from __future__ import annotations

from ipaddress import ip_network

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
# The web server runs the sync views under these paths on WEB_SYNC_THREADS threads of its own, which keep
# their database connections WEB_SYNC_CONN_MAX_AGE seconds (health-checked); everywhere else CONN_MAX_AGE
# holds (core/asgi_pool.py). An empty WEB_SYNC_PATHS serves everything through Django's own ASGI handler.
WEB_SYNC_PATHS = env.list("WEB_SYNC_PATHS", default=["/api/"])
WEB_SYNC_THREADS = env.int("WEB_SYNC_THREADS", default=4)
WEB_SYNC_CONN_MAX_AGE = env.int("WEB_SYNC_CONN_MAX_AGE", default=60)
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

# --- Operations -----------------------------------------------------------------------------------------
# /metrics answers loopback peers, and others that send "Authorization: Bearer <METRICS_TOKEN>" (docs/ops).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# Each process's liveness file (core.metrics): the launcher's health checks read it.
HEALTH_DIR = env.path("HEALTH_DIR", default=VAR_DIR / "health")

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

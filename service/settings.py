"""Beacon's one settings module: everything comes from environment variables (see README's table)."""

from __future__ import annotations

import warnings
from pathlib import Path

from service.env import (
    ConfigError,
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
)
from service.observability.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and env_bool("REQUIRE_SECRET_KEY", False):
        raise ValueError("SECRET_KEY must be set")
    SECRET_KEY = "beacon-development-only-secret-key-change-me-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"])

# --- Database -----------------------------------------------------------------------------------------
# Importing the settings never starts a database: manage.py, `make run`, the tests and the benchmark start
# the embedded PostgreSQL (service/embedded_db.py) and export DATABASE_URL before Django loads.
REQUIRE_DATABASE_URL = env_bool("REQUIRE_DATABASE_URL", False)
DATABASE_URL = env_str("DATABASE_URL", "")
if not DATABASE_URL and REQUIRE_DATABASE_URL:
    from service.embedded_db import MISSING_URL

    raise ConfigError(MISSING_URL)

# Unset (e.g. `make lint` importing the settings): a placeholder that names the fix if anything connects.
_database = database_from_url(DATABASE_URL or "postgresql:///set-DATABASE_URL-or-run-manage.py")
_database["OPTIONS"].setdefault("application_name", "beacon-web")
DATABASES = {
    "default": {
        "ENGINE": "django_tenants.postgresql_backend",
        **_database,
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        "CONN_HEALTH_CHECKS": True,
    }
}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

# --- Tenancy (django-tenants) -------------------------------------------------------------------------
TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
SHARED_APPS = [
    "tenants",  # first: its create_tenant (the contract's) overrides django-tenants' own
    "django_tenants",
    "service.streaming",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "ninja",  # its Swagger UI files are served by Beacon itself at /v1/docs (no CDN)
]
TENANT_APPS = ["service.notifications"]
# In a tenant schema, shared apps' migrations are recorded without replaying them (tenants/migrate.py).
TENANT_BASE_MIGRATE_COMMAND = "tenants.migrate.Command"
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

MIDDLEWARE = [
    "service.http.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # /static/: compressed, hashed names, cached for a year
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "service.http.OutageMiddleware",  # last: it sees the view's exception first
]
ROOT_URLCONF = "service.urls"
ASGI_APPLICATION = "service.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "service" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
# Before collectstatic (tests, a fresh checkout) STATIC_ROOT does not exist: pages render with plain names
# (service/staticfiles.py), so WhiteNoise's start-up warning would only be a non-JSON line in the logs.
warnings.filterwarnings("ignore", message="No directory at: ")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "service.staticfiles.Storage"},
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024 + 1024  # the batch limit; finer limits are checked per route
CSRF_FAILURE_VIEW = "service.errors.csrf_failure"  # the error shape outside the admin (service/errors.py)

# --- Beacon -------------------------------------------------------------------------------------------
HEARTBEAT_SECONDS = env_float("HEARTBEAT_SECONDS", 15.0, minimum=0.05)
REPLAY_LIMIT = env_int("REPLAY_LIMIT", 1000, minimum=1, maximum=100_000)
PUBLISH_ANNOUNCE = env_bool("PUBLISH_ANNOUNCE", True)  # off only to measure the cost of NOTIFY
# The broker (docs/streaming.md): unset is PostgreSQL LISTEN/NOTIFY; redis://[:password@]host:port/db is Redis.
BROKER_URL = env_url("BROKER_URL", "", {"redis", "rediss", "unix"})
BROKER_CHANNEL = env_str("BROKER_CHANNEL", "beacon")  # the NOTIFY / Redis pub/sub channel
BROKER_CHECK_SECONDS = env_float("BROKER_CHECK_SECONDS", 2.0, minimum=0.05)  # Redis: lost-announcement check
# Tests only: when this file exists, a publishing worker removes it and exits between commit and announcement.
TEST_CRASH_AFTER_COMMIT = env_str("TEST_CRASH_AFTER_COMMIT", "")
DRAIN_SECONDS = env_float("DRAIN_SECONDS", 20.0, minimum=0.0)
MAX_CONNECTION_AGE_SECONDS = env_float("MAX_CONNECTION_AGE_SECONDS", 600.0, minimum=1.0)
WORKER_MAX_CONNECTIONS = env_int("WORKER_MAX_CONNECTIONS", 10_000, minimum=1)
STREAM_QUEUE_SIZE = env_int("STREAM_QUEUE_SIZE", 1000, minimum=1)
# The replay window (docs/streaming.md): each tenant's newest notifications kept in every worker's memory, so
# a resume within them needs no query. Rows per tenant, and bytes for all tenants of one worker.
REPLAY_WINDOW_EVENTS = env_int("REPLAY_WINDOW_EVENTS", 20_000, minimum=0, maximum=10_000_000)
REPLAY_WINDOW_BYTES = env_int("REPLAY_WINDOW_BYTES", 32 * 1024 * 1024, minimum=0)
# Connects' slot and unread-count queries are batched: at most one statement of each kind per this interval.
STREAM_BATCH_SECONDS = env_float("STREAM_BATCH_SECONDS", 0.02, minimum=0.0)
# Publishes without Idempotency-Key run on the worker's event loop on a pool of their own (no thread hop).
PUBLISH_DB_POOL_SIZE = env_int("PUBLISH_DB_POOL_SIZE", 4, minimum=1, maximum=100)
STREAM_DB_POOL_SIZE = env_int("STREAM_DB_POOL_SIZE", 4, minimum=1, maximum=100)
# Threads per worker that run blocking ORM work (service/db.py); each keeps one connection. Bounded here, not
# by Python's default executor (cpu_count + 4, the host's CPUs in a container: up to 32 connections a worker).
DB_THREADS = env_int("DB_THREADS", 4, minimum=1, maximum=64)
# Seconds a request waits for a connection of either pool before it is 503 unavailable (load shedding, and a
# quick answer while PostgreSQL is down: a pool that lost its connections only reconnects with backoff).
DB_POOL_WAIT_SECONDS = env_float("DB_POOL_WAIT_SECONDS", 5.0, minimum=0.1)
STREAM_SEND_TIMEOUT_SECONDS = env_float("STREAM_SEND_TIMEOUT_SECONDS", 10.0, minimum=0.01)
# HTTP_HEAD_TIMEOUT_SECONDS is read by the server layer (service/serving.py), which runs without Django too.
# Seconds between two reads of a /v1 request's body before 408 request_timeout (service/apihandler.py).
HTTP_BODY_TIMEOUT_SECONDS = env_float("HTTP_BODY_TIMEOUT_SECONDS", 30.0, minimum=0.1)
API_KEY_CACHE_SECONDS = env_float("API_KEY_CACHE_SECONDS", 2.0, minimum=0.0)
TENANT_CACHE_SECONDS = env_float("TENANT_CACHE_SECONDS", 5.0, minimum=0.0)
DEMO = env_bool("DEMO", False)
METRICS_PORT = env_int("METRICS_PORT", 9464, minimum=0, maximum=65535)
METRICS_TENANT_LABELS = env_bool("METRICS_TENANT_LABELS", True)
METRICS_TENANT_LABEL_LIMIT = env_int("METRICS_TENANT_LABEL_LIMIT", 100, minimum=0)
SENTRY_DSN = env_str("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "production")
RELEASE = env_str("RELEASE", "beacon@0.1.0")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "json")  # json (one object per line) or text
ACCESS_LOG = env_bool("ACCESS_LOG", True)

# --- CORS (service/cors.py; django-cors-headers for the Django routes, the same values on /v1/stream) -------
# Which origins get the headers is decided per request from the tenants' allowed origins, never listed here.
CORS_URLS_REGEX = r"^/v1/(stream|inbox(/.*)?|beacon\.js)\Z"  # \Z: "$" also matches before a final newline
CORS_ALLOWED_ORIGINS: list[str] = []
CORS_ALLOW_CREDENTIALS = True
CORS_ALLOW_METHODS = ["GET", "HEAD", "POST", "OPTIONS"]
CORS_ALLOW_HEADERS = ["authorization", "content-type", "last-event-id"]
CORS_EXPOSE_HEADERS = ["retry-after", "x-request-id", "www-authenticate"]
CORS_PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight (Chromium caps it at 7200)

LOGGING = logging_config(LOG_LEVEL, LOG_FORMAT, access_log=ACCESS_LOG)

if SENTRY_DSN:
    from service.observability.sentry import init_sentry

    init_sentry(SENTRY_DSN, environment=SENTRY_ENVIRONMENT, release=RELEASE)

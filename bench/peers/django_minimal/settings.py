"""Minimal settings: no database, no middleware, no apps: the cost of Django's request/response path only."""

SECRET_KEY = "bench-peer-django-minimal"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.peers.django_minimal.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
LOGGING_CONFIG = None

"""Django's ASGI handler for ``/v1``, without the admin's middleware.

Under ASGI each of Django's classic middlewares (sessions, auth, messages, CSRF, ...) runs its hooks through
``sync_to_async`` on one shared thread: a dozen thread hops per request that the JSON API does not need (it
authenticates with API keys and tokens, and ninja's views are CSRF-exempt). The profile of 32 concurrent
publishes showed those hops as the largest cost, so ``/v1`` gets a handler built with ``API_MIDDLEWARE``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

API_MIDDLEWARE = [
    "service.http.RequestIdMiddleware",
    "service.cors.OriginUnionMiddleware",  # decides whether the origin gets CORS headers (async, cached)
    "service.cors.CorsMiddleware",  # django-cors-headers: preflights and the headers on every answer
]


class ApiHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        site_middleware = settings.MIDDLEWARE
        settings.MIDDLEWARE = API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = site_middleware

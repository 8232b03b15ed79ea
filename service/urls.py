"""Django routes. ``/v1/stream``, ``/healthz`` and ``/readyz`` are served in front of Django (asgi.py)."""

from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, path

from service import beacon_js
from service.api import api

# No slash-appending redirect under /v1 (CommonMiddleware's APPEND_SLASH): ``/v1`` answered ``301`` to ``/v1/``
# (ninja's root view) in HTML; an API path without its slash is an unknown route, ``404 not_found`` in the error
# shape like any other. The admin keeps its redirect (``/admin`` to ``/admin/``).
_api_urls = api.urls  # ninja builds its patterns anew at each access: mark the ones used
for _pattern in _api_urls[0]:
    if isinstance(_pattern, URLPattern):
        _pattern.callback.should_append_slash = False  # type: ignore[attr-defined]  # what no_append_slash sets

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("v1/beacon.js", beacon_js.serve, name="beacon-js"),
    path("v1/", _api_urls),
]

if settings.DEMO:
    from service import demo

    urlpatterns += [
        path("", demo.page, name="demo"),
        path("demo/token", demo.token, name="demo-token"),
        path("demo/publish", demo.publish, name="demo-publish"),
    ]

# Django's own refusals in the error shape (the admin keeps its HTML pages: service.errors).
handler400 = "service.errors.json_400"
handler403 = "service.errors.json_403"
handler404 = "service.errors.json_404"
handler500 = "service.errors.json_500"

"""ASGI entry point: the lean streaming and health routes in front of Django."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")

from django.core.asgi import get_asgi_application

django_application = get_asgi_application()

import service.beacon_js  # noqa: E402, F401  (reads the browser client once, at start-up)
from service.apihandler import ApiHandler  # noqa: E402
from service.streaming.app import BeaconApp  # noqa: E402

application = BeaconApp(django_application, api=ApiHandler())

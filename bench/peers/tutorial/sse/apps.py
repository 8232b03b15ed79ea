from django.apps import AppConfig


class SseConfig(AppConfig):
    name = "bench.peers.tutorial.sse"
    label = "sse"
    default_auto_field = "django.db.models.BigAutoField"

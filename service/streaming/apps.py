from django.apps import AppConfig


class StreamingConfig(AppConfig):
    name = "service.streaming"
    label = "streaming"
    default_auto_field = "django.db.models.BigAutoField"

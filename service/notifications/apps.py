from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "service.notifications"
    label = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from service.notifications import admin  # noqa: F401  (hooks the send form into the tenant admin)

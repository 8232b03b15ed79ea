from django.contrib import admin

from bench.peers.tutorial.sse.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    pass

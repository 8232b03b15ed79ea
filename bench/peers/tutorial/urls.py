from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path

from bench.peers.tutorial.sse.views import main, notifications


def healthz(request: HttpRequest) -> HttpResponse:  # a benchmark addition
    return HttpResponse("ok")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("notifications/", notifications, name="notifications"),
    path("healthz", healthz),
    path("", main, name="main"),
]

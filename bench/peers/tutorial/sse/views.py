"""The tutorial's views, as published (only the imports are adapted to this package)."""

import asyncio
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.contrib import auth
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone

from .models import Notification


@login_required
def main(request):
    return HttpResponse("<div id='container'></div>")  # the tutorial renders sse/main.html here


async def notifications(request):
    user = await sync_to_async(auth.get_user)(request)
    if not user.is_authenticated:
        return HttpResponse(status=403)

    async def stream(user):
        while True:
            now = timezone.now()
            async for notification in Notification.objects.filter(
                user=user, dispatched=False, created__gte=now - timedelta(seconds=10)
            ):
                yield f"data: {notification.text}\n\n"
                notification.dispatched = True
                await sync_to_async(notification.save)()

            await asyncio.sleep(1)

    response = StreamingHttpResponse(stream(user), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response

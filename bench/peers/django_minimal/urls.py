"""``/stream``: one bounded queue per stream, filled by the worker's in-process broadcast; ``/healthz``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path

from bench.peers.common import HEARTBEAT_SECONDS, start_control

SUBSCRIBERS: set[asyncio.Queue[bytes]] = set()
_control: list[asyncio.Task[object]] = []


def broadcast(payload: bytes) -> None:
    frame = b"data: " + payload + b"\n\n"
    for queue in list(SUBSCRIBERS):
        if not queue.full():
            queue.put_nowait(frame)


def _ensure_control() -> None:
    """Django has no lifespan: bind this worker's broadcast socket on its first request."""
    if not _control:
        _control.append(asyncio.get_running_loop().create_task(start_control(broadcast)))


async def stream(request: HttpRequest) -> StreamingHttpResponse:
    _ensure_control()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)

    async def events() -> AsyncIterator[bytes]:
        SUBSCRIBERS.add(queue)
        try:
            yield b"retry: 3000\n\n"
            while True:
                try:
                    async with asyncio.timeout(HEARTBEAT_SECONDS):
                        frame = await queue.get()
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                yield frame
        finally:
            SUBSCRIBERS.discard(queue)

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


async def healthz(request: HttpRequest) -> HttpResponse:
    _ensure_control()
    return HttpResponse("ok")


urlpatterns = [path("stream", stream), path("healthz", healthz)]

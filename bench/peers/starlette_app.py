"""Peer (b): sse-starlette with an in-process broadcast (one bounded queue per stream).

Run: ``gunicorn -c deploy/gunicorn.conf.py bench.peers.starlette_app:app``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bench.peers.common import HEARTBEAT_SECONDS, start_control

SUBSCRIBERS: set[asyncio.Queue[str]] = set()


def broadcast(payload: bytes) -> None:
    data = payload.decode()
    for queue in list(SUBSCRIBERS):
        if not queue.full():
            queue.put_nowait(data)


async def stream(request: Request) -> EventSourceResponse:
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)

    async def events() -> AsyncIterator[dict[str, Any]]:
        SUBSCRIBERS.add(queue)
        try:
            while True:
                yield {"data": await queue.get()}
        finally:
            SUBSCRIBERS.discard(queue)

    return EventSourceResponse(events(), ping=int(HEARTBEAT_SECONDS))


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    transport = await start_control(broadcast)
    yield
    transport.close()


app = Starlette(routes=[Route("/stream", stream), Route("/healthz", healthz)], lifespan=lifespan)

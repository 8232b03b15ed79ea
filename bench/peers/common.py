"""The peers' broadcast trigger: one UDP socket per worker process on loopback.

Each worker writes its port to ``$PEER_CONTROL_DIR/<pid>``; the benchmark sends one datagram per worker and
the worker hands the payload to its local subscribers. This measures pure in-process fan-out (no storage,
no broker), a lower bound that Beacon's persisted, announced broadcast is compared against.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

HEARTBEAT_SECONDS = float(os.environ.get("HEARTBEAT_SECONDS", "15"))


class _Control(asyncio.DatagramProtocol):
    def __init__(self, on_payload: Callable[[bytes], None]) -> None:
        self.on_payload = on_payload

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.on_payload(data)


async def start_control(on_payload: Callable[[bytes], None]) -> asyncio.BaseTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Control(on_payload), local_addr=("127.0.0.1", 0)
    )
    _announce_port(transport.get_extra_info("sockname")[1])
    return transport


def _announce_port(port: int) -> None:
    directory = os.environ.get("PEER_CONTROL_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        Path(directory, str(os.getpid())).write_text(str(port))

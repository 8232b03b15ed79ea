"""Real Redis for the broker tests: the machine's at 127.0.0.1:6379 (database 9, a channel of the test run's
own, never FLUSHALL), or a private ``redis-server`` on a free port for tests that kill or restart it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import redis

from tests.support import free_port, wait_until

SHARED_URL = "redis://127.0.0.1:6379/9"


def shared_redis_url() -> str:
    """The machine's Redis (``.ci/run`` starts one when nothing listens on 6379); skip when it is absent."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            pass
    except OSError:
        pytest.skip("no Redis at 127.0.0.1:6379 (.ci/run starts Debian's redis-server)")
    return SHARED_URL


def channel() -> str:
    """A pub/sub channel of this test's own: channels are shared by every database of a Redis server."""
    return f"beacon_test_{uuid.uuid4().hex[:12]}"


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free port, without persistence: safe to kill and restart."""

    def __init__(self, workdir: Path, password: str = "", tls: bool = False) -> None:
        self.password = password
        self.tls = tls  # serve TLS only (``rediss://``), with a self-signed certificate for 127.0.0.1
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:  # redis-py reads the CA from the URL's query: the certificate is verified, not skipped
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.workdir / 'redis.crt'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _tls_arguments(self) -> list[str]:
        """Ports and a self-signed certificate (openssl, valid for 127.0.0.1) for a TLS-only server."""
        cert, key = self.workdir / "redis.crt", self.workdir / "redis.key"
        if not cert.exists():
            subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
            command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            command += ["-keyout", str(key), "-out", str(cert), *subject]
            subprocess.run(command, check=True, capture_output=True)
        return [
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)),
            *("--tls-auth-clients", "no"),
        ]

    def start(self) -> PrivateRedis:
        ports = self._tls_arguments() if self.tls else ["--port", str(self.port)]
        if self.password:  # the server refuses every command until AUTH: the password must really be sent
            ports += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            [
                self.binary,
                *ports,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=10, message=f"redis-server on {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)


def kill_beacon_clients(client: redis.Redis) -> int:
    """``CLIENT KILL`` every connection whose name Beacon set (``beacon-listener``, ``beacon-publisher``)."""
    killed = 0
    for entry in client.client_list():
        if str(entry.get("name", "")).startswith("beacon-"):
            killed += int(client.execute_command("CLIENT", "KILL", "ID", entry["id"], "SKIPME", "yes"))
    return killed

"""Beacon itself (gunicorn with deploy/gunicorn.conf.py) behind real nginx with deploy/nginx/beacon.conf."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

from tests.deploy.test_helm import (
    NGINX,
    accepts,
    needs_nginx,
    nginx_site,
    running,
    wait_for,
    write_nginx_conf,
)
from tests.support import Api, free_port, unique


@needs_nginx
def test_events_arrive_unbuffered_through_nginx(server, acme: Api, tmp_path: Path) -> None:
    port = free_port()
    conf = write_nginx_conf(tmp_path, nginx_site(f"127.0.0.1:{server.port}", port), foreground=True)
    command = [str(NGINX), "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")]
    user = unique()
    with running(command, env=dict(os.environ), cwd=tmp_path, log=tmp_path / "nginx.out"):
        wait_for(lambda: accepts(port), 15, "nginx to listen")
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        client.request("GET", f"/v1/stream?token={acme.token(user)}", headers={"Accept-Encoding": "gzip"})
        response = client.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        assert response.getheader("Content-Encoding") is None
        assert response.readline().startswith(b"retry: ")  # flushed at once, through the proxy
        # Published through the proxy too; each event must arrive while the stream stays open.
        for n in range(3):
            publish = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            publish.request(
                "POST",
                "/v1/notifications",
                body=json.dumps({"recipient": user, "data": {"n": n}}),
                headers={"Authorization": f"Bearer {acme.key}", "Content-Type": "application/json"},
            )
            stored = json.loads(publish.getresponse().read())["notifications"][0]["id"]
            seen = b""
            while f"id: {stored}".encode() not in seen:
                line = response.readline()  # times out (10 s) if nginx held the event back
                assert line, "the stream ended"
                seen += line
        client.close()


@needs_nginx
def test_http10_clients_without_host_are_served_through_nginx(server, tmp_path: Path) -> None:
    """nginx speaks HTTP/1.1 upstream, where Beacon requires Host (RFC 9112 3.2): the config supplies one."""
    import socket

    port = free_port()
    conf = write_nginx_conf(tmp_path, nginx_site(f"127.0.0.1:{server.port}", port), foreground=True)
    command = [str(NGINX), "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")]
    with running(command, env=dict(os.environ), cwd=tmp_path, log=tmp_path / "nginx.out"):
        wait_for(lambda: accepts(port), 15, "nginx to listen")
        for path in ("/healthz", "/v1/docs", "/v1/stream"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                answer = b""
                while part := sock.recv(65536):
                    answer += part
            expected = b" 401 " if path == "/v1/stream" else b" 200 "  # served: no credential on the stream
            assert expected in answer.split(b"\r\n", 1)[0], answer[:300]

"""Structured JSON logs with request id and tenant; no credential ever reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Callable
from logging.config import dictConfig
from typing import Any

import httpx
import pytest

from service.env import ConfigError
from service.http import request_id_var, tenant_var
from service.observability.logs import JsonFormatter, logging_config
from tests.observability.helpers import next_notification, open_stream, wait_for
from tests.support import Api, Server, unique

# What gunicorn itself prints before the application (and so settings.LOGGING) is loaded.
GUNICORN_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[[A-Z]+\] ")
FIELDS = {"ts", "level", "logger", "message", "request_id", "tenant"}


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_real_server_logs_json_with_context_and_no_credentials(
    start_server: Callable[..., Server], make_tenant: Callable[..., tuple[Any, str]]
) -> None:
    srv = start_server(workers=2)
    tenant, key = make_tenant()
    api = Api(srv.url, key)
    user = unique()
    token = api.token(user)
    opaque = f"not-a-jwt-{uuid.uuid4().hex}"
    request_id = f"obs-{uuid.uuid4().hex[:12]}"

    stream = open_stream(srv.url, token)  # the header, then the query parameter as EventSource sends it
    try:
        api.publish_ok({"recipient": user, "data": {"n": 1}})
        next_notification(stream.events)
    finally:
        stream.close()
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        with client.stream("GET", "/v1/stream", params={"token": token, "last_event_id": "0"}) as response:
            assert response.status_code == 200
        inbox = client.get("/v1/inbox", params={"token": token}, headers={"X-Request-ID": request_id})
        assert inbox.status_code == 200
        assert inbox.headers["X-Request-ID"] == request_id
        assert client.get("/v1/stream", params={"token": opaque}).status_code == 401
        assert client.get("/v1/inbox", headers={"Cookie": f"beacon_token={token}"}).status_code == 200

    def logged() -> list[dict[str, Any]] | None:
        lines = _json_lines(srv.log_path.read_text() if srv.log_path else "")
        ours = [e for e in lines if e["logger"] == "uvicorn.access" and e["request_id"] == request_id]
        unauthorized = [e for e in lines if e["logger"] == "uvicorn.access" and e.get("status") == 401]
        return lines if ours and unauthorized else None

    entries = wait_for(logged, message="the access log lines of our requests")
    assert srv.log_path is not None
    text = srv.log_path.read_text()
    for secret in (token, opaque, key, token.rsplit(".", 1)[1]):
        assert secret not in text

    for line in text.splitlines():
        if line.startswith("{"):
            assert json.loads(line).keys() >= FIELDS, line
        else:
            assert GUNICORN_LINE.match(line), f"a worker wrote a line that is not JSON: {line!r}"

    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    (inbox_line,) = [e for e in access if e["request_id"] == request_id]
    assert inbox_line["tenant"] == tenant.slug
    assert inbox_line["path"] == "/v1/inbox?token=[Filtered]"
    assert inbox_line["status"] == 200
    streams = [e for e in access if e["path"].startswith("/v1/stream?")]
    assert {e["path"] for e in streams} == {
        "/v1/stream?token=[Filtered]&last_event_id=0",
        "/v1/stream?token=[Filtered]",
    }
    assert {e["tenant"] for e in streams if e["status"] == 200} == {tenant.slug}
    assert [e["tenant"] for e in streams if e["status"] == 401] == ["-"]
    published = [e for e in access if e["path"] == "/v1/notifications"]
    assert published and all(e["tenant"] == tenant.slug and e["request_id"] != "-" for e in published)
    # Every request has its own id.
    ids = [e["request_id"] for e in access]
    assert len(ids) == len(set(ids))


def _capture(config: dict[str, Any]) -> io.StringIO:
    buffer = io.StringIO()
    config["handlers"]["console"]["stream"] = buffer
    return buffer


@pytest.fixture
def restore_logging() -> Any:
    from django.conf import settings

    yield
    dictConfig(settings.LOGGING)


def test_json_lines_carry_context_extra_fields_and_exceptions(restore_logging: Any) -> None:
    config = logging_config("INFO", "json")
    buffer = _capture(config)
    dictConfig(config)
    rid, tenant = request_id_var.set("rid-1"), tenant_var.set("acme")
    try:
        log = logging.getLogger("beacon.test")
        log.info("published %d rows", 3, extra={"rows": 3})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed with key %s", "bk_abcdefghijkl_" + "s" * 43)
    finally:
        tenant_var.reset(tenant)
        request_id_var.reset(rid)
    logging.getLogger("beacon.test").warning("outside a request")
    first, second, third = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first["message"] == "published 3 rows" and first["rows"] == 3
    assert (first["request_id"], first["tenant"], first["level"], first["logger"]) == (
        "rid-1", "acme", "INFO", "beacon.test",
    )  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["ts"])
    assert second["message"] == "failed with key [Filtered]"
    assert "ValueError: boom" in second["exc_info"]
    assert (third["request_id"], third["tenant"]) == ("-", "-")


def test_the_access_logger_redacts_its_arguments(restore_logging: Any) -> None:
    config = logging_config("INFO", "json")
    buffer = _capture(config)
    dictConfig(config)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    record_args = ("127.0.0.1:5000", "GET", f"/v1/stream?token={jwt}&last_event_id=7", "1.1", 200)
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', *record_args)
    (entry,) = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert entry["path"] == "/v1/stream?token=[Filtered]&last_event_id=7"
    assert jwt not in buffer.getvalue()


def test_every_part_of_a_json_line_is_redacted(restore_logging: Any) -> None:
    """The filter cleans a record's message and arguments once; whatever else a line carries (extra fields,
    a traceback, a message that is no string, context values) is redacted by the formatter."""
    config = logging_config("INFO", "json")
    buffer = _capture(config)
    dictConfig(config)
    key = "bk_abcdefghijkl_" + "s" * 43
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    log = logging.getLogger("beacon.test")
    rid = request_id_var.set(jwt)  # an incoming X-Request-ID is only checked for its characters
    try:
        log.info("plain %s", key)
        log.info("extra", extra={"note": f"token={jwt}", "nested": {"auth": f"Bearer {key}"}})
        log.info(ValueError(f"not a string: {key}"))
        try:
            raise RuntimeError(f"token={jwt}")
        except RuntimeError:
            log.exception("failed")
        log.info("stack", stack_info=True, extra={"ignored": None})
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/v1/inbox?access_token={jwt}", "1.1", 401
        )
    finally:
        request_id_var.reset(rid)
    text = buffer.getvalue()
    entries = _json_lines(text)
    assert len(entries) == 6
    assert key not in text and jwt not in text and "s" * 43 not in text
    assert {e["request_id"] for e in entries} == {"[Filtered]"}
    assert entries[0]["message"] == "plain [Filtered]"
    assert entries[1]["note"] == "token=[Filtered]" and entries[1]["nested"] == {"auth": "Bearer [Filtered]"}
    assert entries[5]["path"] == "/v1/inbox?access_token=[Filtered]"


def test_access_log_can_be_turned_off_and_text_format_keeps_context(restore_logging: Any) -> None:
    config = logging_config("INFO", "text", access_log=False)
    buffer = _capture(config)
    dictConfig(config)
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    token = tenant_var.set("globex")
    try:
        logging.getLogger("beacon.test").warning("token=abc.def")
    finally:
        tenant_var.reset(token)
    assert re.search(r" WARNING beacon\.test \[- globex\] token=\[Filtered\]$", buffer.getvalue().strip())


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        logging_config("INFO", "xml")


def test_json_formatter_survives_odd_values() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", (object(),), None)
    record.payload = {"set": {1, 2}}
    line = JsonFormatter().format(record)
    assert json.loads(line)["payload"] == {"set": "{1, 2}"}
    assert "\n" not in line

"""Sentry: initialised only with SENTRY_DSN; events carry the tenant tag and never a credential."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from service.observability.sentry import before_breadcrumb, before_send, init_sentry, scrub
from tests.observability.helpers import OwnDatabase, SentryInbox, wait_for
from tests.support import ROOT, Api, Server

KEY = "bk_" + "Ab_3" * 3 + "_" + "s3cr3t-" * 6  # shaped like a Beacon key (12-char public id with "_")
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIiwidGlkIjoiYWNtZSJ9.c2lnbmF0dXJlLXZhbHVl"


class CollectingTransport(Transport):
    """Keeps every envelope in memory instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [dict(event) for envelope in self.envelopes if (event := envelope.get_event()) is not None]

    def serialized(self) -> str:
        return b"".join(envelope.serialize() for envelope in self.envelopes).decode(errors="replace")


@pytest.fixture
def transport() -> Iterator[CollectingTransport]:
    collector = CollectingTransport()
    init_sentry(
        "https://public@sentry.invalid/1", environment="test", release="beacon@test", transport=collector
    )
    try:
        yield collector
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def test_an_error_in_a_request_reaches_sentry_scrubbed_and_tagged_with_the_tenant(
    transport: CollectingTransport,
    make_tenant: Callable[..., tuple[Any, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.asgi import application
    from service.notifications import publish

    tenant, key = make_tenant()
    session = f"session-{uuid.uuid4().hex}"

    async def scenario() -> tuple[str, httpx.Response]:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://testserver"
        )
        async with client:
            minted = await client.post(
                "/v1/tokens", json={"recipient": "user-1"}, headers={"Authorization": f"Bearer {key}"}
            )
            assert minted.status_code == 201, minted.text
            token = str(minted.json()["token"])

            def explode(*args: Any, **kwargs: Any) -> Any:
                logging.getLogger("service.test").warning("publishing with %s and ?token=%s", key, token)
                sentry_sdk.add_breadcrumb(
                    message=f"Authorization: Bearer {key}", data={"url": f"/x?token={token}"}
                )
                sentry_sdk.set_extra("credentials", {"key": key, "nested": [f"Bearer {token}"]})
                raise RuntimeError(f"database exploded for {key} holding {token}")

            monkeypatch.setattr(publish, "publish", explode)
            response = await client.post(
                f"/v1/notifications?token={token}&last_event_id=3",
                json={"recipient": "user-1", "data": {"n": 1}},
                headers={
                    "Authorization": f"Bearer {key}",
                    "Cookie": f"beacon_token={token}; sessionid={session}",
                    "X-Request-ID": "sentry-test-1",
                },
            )
        return token, response

    token, response = asyncio.run(scenario())
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    sentry_sdk.flush(timeout=5)

    events = [e for e in transport.events() if e.get("exception")]
    assert events, transport.envelopes
    raw = transport.serialized()
    for secret in (key, key[16:], token, token.rsplit(".", 1)[1], session):
        assert secret not in raw
    assert "database exploded for [Filtered] holding [Filtered]" in raw
    for event in events:
        assert event["tags"]["tenant"] == tenant.slug
        assert event["tags"]["request_id"] == "sentry-test-1"
        assert event["environment"] == "test" and event["release"] == "beacon@test"
        request = event["request"]
        assert "last_event_id=3" in request["query_string"]
        assert "token=[Filtered]" in request["query_string"]
        headers = {name.lower(): value for name, value in request.get("headers", {}).items()}
        assert headers.get("authorization") in (None, "[Filtered]")
        assert headers.get("cookie") in (None, "[Filtered]")
        assert headers.get("x-request-id") == "sentry-test-1"
        crumbs = json.dumps(event.get("breadcrumbs", {}))
        assert "publishing with [Filtered] and ?token=[Filtered]" in crumbs


def test_scrub_covers_every_part_of_an_event() -> None:
    event = {
        "request": {
            "url": f"https://beacon.test/v1/stream?token={JWT}",
            "query_string": "token=opaque-value&last_event_id=9",
            "headers": {"Authorization": f"Bearer {KEY}", "Cookie": "beacon_token=x", "X-Other": "keep"},
            "cookies": {"beacon_token": JWT},
        },
        "exception": {"values": [{"type": "ValueError", "value": f"bad key {KEY}"}]},
        "breadcrumbs": {
            "values": [{"message": f"GET /v1/inbox?token={JWT}", "data": {"auth": f"Bearer {JWT}"}}]
        },
        "extra": {"deep": [[{"x": [f"a {KEY} b"]}]], "token": "plain"},
        "logentry": {"message": "key %s", "params": [KEY], "formatted": f"key {KEY}"},
        "contexts": {"pairs": [["authorization", "Basic Zm9vOmJhcg=="], ["last_event_id", "5"]]},
    }
    cleaned = json.dumps(scrub(event))
    for secret in (KEY, JWT, "opaque-value", "beacon_token=x", "Zm9vOmJhcg==", '"plain"'):
        assert secret not in cleaned
    for kept in ("last_event_id=9", '"last_event_id", "5"', "X-Other", "keep"):
        assert kept in cleaned
    crumb = before_breadcrumb({"message": f"Authorization: Bearer {KEY}", "category": "x"}, None)
    assert crumb["message"] == "Authorization: Bearer [Filtered]"
    meta = {"request": {"headers": {"authorization": {"": {"rem": [["!config", "s"]]}}}}}
    with_meta: Any = {"message": JWT, "_meta": meta}
    sent: dict[str, Any] = dict(before_send(with_meta, {}))
    assert sent["message"] == "[Filtered]"
    assert sent["_meta"] == meta  # Sentry's bookkeeping of removed values stays intact


def test_a_real_server_reports_a_database_outage_scrubbed_and_tagged(
    own_database: OwnDatabase, start_server: Callable[..., Server]
) -> None:
    slug = f"obs-{uuid.uuid4().hex[:8]}"
    own_database.manage("create_tenant", slug)
    key = own_database.manage("create_api_key", slug).strip().splitlines()[-1]
    session = f"session-{uuid.uuid4().hex}"
    with SentryInbox() as inbox:
        srv = start_server(
            workers=1,  # one process: the caches warmed below are the ones that serve the failing request
            DATABASE_URL=own_database.url,
            SENTRY_DSN=inbox.dsn,
            SENTRY_ENVIRONMENT="ci",
            RELEASE="beacon@obs-test",
            API_KEY_CACHE_SECONDS="300",
            TENANT_CACHE_SECONDS="300",
        )
        api = Api(srv.url, key)
        token = api.token("user-1")
        api.publish_ok({"recipient": "user-1", "data": {"n": 1}})

        own_database.refuse_connections()  # the database goes away under the running server
        own_database.terminate()
        response = httpx.post(
            f"{srv.url}/v1/notifications",
            params={"token": token, "last_event_id": "1"},
            json={"recipient": "user-1", "data": {"n": 2}},
            headers={
                "Authorization": f"Bearer {key}",
                "Cookie": f"beacon_token={token}; sessionid={session}",
                "X-Request-ID": "sentry-e2e-1",
            },
            timeout=30,
        )
        assert response.status_code == 503, response.text  # an outage is not a bug: retry (issue 10)
        assert response.json()["error"]["code"] == "unavailable" and response.headers["Retry-After"]

        def reported() -> list[dict[str, Any]]:
            return [e for e in inbox.events() if e.get("exception") and e.get("tags", {}).get("request_id")]

        events = wait_for(reported, timeout=30, message="the worker to send the error to the local Sentry")
        raw = b"".join(inbox.bodies).decode(errors="replace")
    for secret in (key, key[16:], token, token.rsplit(".", 1)[1], session):
        assert secret not in raw
    for event in events:
        assert event["tags"]["tenant"] == slug
        assert event["tags"]["request_id"] == "sentry-e2e-1"
        assert (event["environment"], event["release"]) == ("ci", "beacon@obs-test")
        assert event["request"]["query_string"] == "token=[Filtered]&last_event_id=1"


@pytest.mark.parametrize(
    "dsn, expected", [("", "False False"), ("https://public@sentry.invalid/1", "True True")]
)
def test_sentry_starts_only_when_a_dsn_is_set(dsn: str, expected: str) -> None:
    """Without a DSN the whole app loads without even importing the SDK (a cheaper start for every process)."""
    code = (
        "import sys, django; django.setup(); import service.asgi;"
        " from service.observability.context import active_sentry;"
        " print('sentry_sdk' in sys.modules, active_sentry() is not None)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "service.settings", "SENTRY_DSN": dsn}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == expected

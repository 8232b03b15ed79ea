"""schemathesis against ``/v1/openapi.json`` of a real server: generated requests (valid and invalid) to
every operation, with a valid API key or subscriber token. No 5xx, and every response matches the schema
(status documented, content type, body). Examples are bounded so the test stays within seconds."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from tests.support import Api, unique

EXAMPLES = 10
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def credentials(server, make_tenant) -> dict[str, str]:
    """A tenant of its own (generous publish rate), its key and a subscriber token."""
    _tenant, key = make_tenant(publish_rate_per_second=10_000)
    return {"key": key, "token": Api(server.url, key).token(unique())}


#: For generation only. hypothesis builds a character class one code point at a time, and ``TargetId``'s
#: exact class (every printable code point, about 280,000: tests/test_openapi_rules.py proves it is the
#: server's rule) cost 0.8 s per strategy, 40 s per run. Cases draw ids from this subset of it instead
#: (ASCII, Latin-1, CJK and emoji); the document is otherwise the server's, responses are checked against it.
GENERATED_IDS = "^[ -~\u00a1-\u00ac\u00ae-\u00ff\u4e00-\u4e2f\U0001f600-\U0001f60f]+$"


def _with_generated_ids(value: Any, exact: str) -> Any:
    if isinstance(value, dict):
        return {
            k: GENERATED_IDS if k == "pattern" and v == exact else _with_generated_ids(v, exact)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_with_generated_ids(item, exact) for item in value]
    return value


def _operations(server_url: str) -> list[Any]:
    document = httpx.get(server_url + "/v1/openapi.json", timeout=10).json()
    exact = document["components"]["schemas"]["TargetId"]["pattern"]
    schema = schemathesis.openapi.from_dict(_with_generated_ids(document, exact))
    return [result.ok() for result in schema.get_all_operations()]


def test_generated_ids_are_a_subset_of_the_documented_ones():
    every = "".join(map(chr, range(0x20000)))
    assert all(c.isprintable() for c in re.findall(GENERATED_IDS[1:-2], every))


def _fuzz(operation: Any, mode: Any, base_url: str, headers: dict[str, str]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

    call()


def test_every_operation_answers_within_its_schema(server, credentials):
    offset = server.log_size()
    operations = _operations(server.url)
    assert len(operations) >= 8  # every /v1 route but the stream, which is not JSON
    failures: list[str] = []
    for operation in operations:
        secured = {name for entry in operation.definition.raw.get("security", []) for name in entry}
        token = credentials["token"] if "SubscriberAuth" in secured else credentials["key"]
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, server.url, {"Authorization": f"Bearer {token}"})
            except Exception as exc:  # every operation is tried; all failures are reported together
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    statuses = Counter(
        entry.get("status")
        for line in server.log_path.read_bytes()[offset:].decode(errors="replace").splitlines()
        if (entry := json.loads(line) if line.startswith("{") else {}).get("logger") == "uvicorn.access"
    )
    assert sum(statuses.values()) >= len(operations) * EXAMPLES  # the requests really reached the server
    assert statuses[201] + statuses[200] > 0 and statuses[422] > 0  # accepted and refused cases both ran

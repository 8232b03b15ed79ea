"""Every error code the service can answer is in docs/errors.md, and the suite's 500 detector works."""

from __future__ import annotations

import json
import re
from pathlib import Path

from service.http import ERROR_CODES
from tests.support import ROOT, server_errors


def _documented() -> set[tuple[int, str]]:
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", (ROOT / "docs" / "errors.md").read_text(), re.M)
    return {(int(status), code) for status, code in rows}


def _raised() -> set[tuple[int, str]]:
    """``(status, code)`` pairs written in the source: ``ApiError(409, "code", ...)`` and the maps."""
    found: set[tuple[int, str]] = set()
    for path in Path(ROOT / "service").rglob("*.py"):
        text = path.read_text()
        found |= {(int(s), c) for s, c in re.findall(r'ApiError\(\s*(\d{3}),\s*"([a-z_]+)"', text)}
        found |= {(int(s), c) for s, c in re.findall(r'(\d{3}): "([a-z_]+)"', text)}
    found |= {
        (401, "unauthenticated"),
        (401, "invalid_api_key"),
        (401, "invalid_token"),
        (403, "tenant_mismatch"),
    }
    found |= {(422, "invalid_field"), (503, "not_ready")}
    found |= set(ERROR_CODES.items())
    return found


def test_every_error_code_is_documented():
    missing = _raised() - _documented()
    assert not missing, f"add these to docs/errors.md: {sorted(missing)}"


def test_the_500_detector_sees_500s_and_tracebacks_only():
    access = {"level": "INFO", "logger": "uvicorn.access", "method": "POST", "path": "/v1/notifications"}
    lines = [
        json.dumps({**access, "status": 201}),
        json.dumps({**access, "status": 503}),
        json.dumps({"level": "WARNING", "logger": "service.api", "message": "database unavailable"}),
        json.dumps({**access, "status": 500}),
        json.dumps(
            {"level": "ERROR", "logger": "service.api", "message": "unhandled", "exc_info": "Traceback"}
        ),
        "Traceback (most recent call last):",
        "not json at all",
    ]
    assert server_errors(lines) == [lines[3], lines[4], lines[5]]

"""``GET /v1/beacon.js``: the browser client (``service/client/beacon.js``), read once when the process starts.

Caching: a strong ``ETag`` (SHA-256 of the bytes) and ``Cache-Control: public, max-age=300``. The URL has no
version, so a browser reuses the file for five minutes, then revalidates with ``If-None-Match`` and gets
``304 Not Modified`` (no body) until a release changes it. CORS headers come from the API middleware
(``service.cors``), so a ``<script crossorigin>`` on an allowed origin works too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import parse_etags

from service.errors import ApiError

SCRIPT_FILE = Path(__file__).resolve().parent / "client" / "beacon.js"
CACHE_CONTROL = "public, max-age=300"
CONTENT_TYPE = "text/javascript; charset=utf-8"


@dataclass(frozen=True)
class Script:
    body: bytes
    etag: str  # strong: a quoted hash of the exact bytes (RFC 9110, section 8.8.3)

    @classmethod
    def read(cls, path: Path) -> Script:
        body = path.read_bytes()
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


SCRIPT = Script.read(SCRIPT_FILE)


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison; ``*`` matches any current file (RFC 9110, 13.1.2)."""
    if not if_none_match:
        return False
    tags = parse_etags(if_none_match)
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


async def serve(request: HttpRequest) -> HttpResponse:
    """GET and HEAD; ``304`` when the client's copy is current; ``405`` for any other method (the front app,
    service/streaming/app.py, refuses them first; a preflight is answered by the CORS middleware)."""
    if request.method not in {"GET", "HEAD"}:
        return ApiError(
            405, "method_not_allowed", "use GET or HEAD", headers={"Allow": "GET, HEAD"}
        ).to_response()
    headers = {"ETag": SCRIPT.etag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if not_modified(request.headers.get("If-None-Match"), SCRIPT.etag):
        return HttpResponseNotModified(headers=headers)
    body = SCRIPT.body if request.method == "GET" else b""
    response = HttpResponse(body, content_type=CONTENT_TYPE, headers=headers)
    response["Content-Length"] = str(len(SCRIPT.body))
    return response

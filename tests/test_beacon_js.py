"""``GET /v1/beacon.js``: the file as it is on disk, a strong ETag, 304 on revalidation, HEAD, CORS."""

from __future__ import annotations

import hashlib

import httpx

from service.beacon_js import SCRIPT_FILE, not_modified

ACME_ORIGIN = "https://app.acme.test"


def test_if_none_match_uses_the_weak_comparison() -> None:
    etag = '"abc"'
    assert not_modified('"abc"', etag)
    assert not_modified('W/"abc"', etag)
    assert not_modified('"x", "abc"', etag)
    assert not_modified("*", etag)
    assert not not_modified('"abd"', etag)
    assert not not_modified("", etag)
    assert not not_modified(None, etag)
    assert not not_modified("garbage", etag)


def test_served_with_a_strong_etag_and_a_short_cache(server) -> None:
    body = SCRIPT_FILE.read_bytes()
    response = httpx.get(server.url + "/v1/beacon.js", timeout=10)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["x-content-type-options"] == "nosniff"
    # Cacheable by shared caches, and its CORS headers depend on the Origin: every answer says so.
    assert "origin" in response.headers["vary"].lower()
    etag = response.headers["etag"]
    assert etag == '"' + hashlib.sha256(body).hexdigest()[:32] + '"'  # strong: no W/ prefix
    assert b"window" in body or b"Beacon" in body


def test_revalidation_answers_304_without_a_body(server) -> None:
    url = server.url + "/v1/beacon.js"
    etag = httpx.get(url, timeout=10).headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}'):
        again = httpx.get(url, headers={"If-None-Match": header}, timeout=10)
        assert again.status_code == 304 and again.content == b"", header
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == "public, max-age=300"
    changed = httpx.get(url, headers={"If-None-Match": '"something-else"'}, timeout=10)
    assert changed.status_code == 200 and changed.content == SCRIPT_FILE.read_bytes()


def test_head_has_the_headers_and_no_body(server) -> None:
    response = httpx.head(server.url + "/v1/beacon.js", timeout=10)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["etag"] and int(response.headers["content-length"]) == len(
        SCRIPT_FILE.read_bytes()
    )


def test_cors_for_allowed_origins_only_and_other_methods_refused(server, tenant_pair) -> None:
    url = server.url + "/v1/beacon.js"
    allowed = httpx.get(url, headers={"Origin": ACME_ORIGIN}, timeout=10)
    assert allowed.headers["access-control-allow-origin"] == ACME_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "origin" in allowed.headers["vary"].lower()
    revalidated = httpx.get(
        url, headers={"Origin": ACME_ORIGIN, "If-None-Match": allowed.headers["etag"]}, timeout=10
    )
    assert revalidated.status_code == 304
    assert revalidated.headers["access-control-allow-origin"] == ACME_ORIGIN
    other = httpx.get(url, headers={"Origin": "https://evil.test"}, timeout=10)
    assert other.status_code == 200
    assert not any(name.lower().startswith("access-control-") for name in other.headers)
    assert "origin" in other.headers["vary"].lower()
    post = httpx.post(url, headers={"Origin": ACME_ORIGIN}, timeout=10)
    assert post.status_code == 405 and post.json()["error"]["code"] == "method_not_allowed"
    assert post.headers["access-control-allow-origin"] == ACME_ORIGIN

"""``/v1`` routes: thin views; auth, parsing and errors live in ``service.api`` and ``auth``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query as QueryParam
from ninja import Router

from service import jsonbody
from service.db import run_db
from service.errors import ApiError
from service.notifications import inbox, publish, tokens
from service.notifications.auth import ApiKeyAuth, KeyPrincipal, SubscriberAuth
from service.notifications.schemas import (
    BatchIn,
    Cursor,
    ErrorOut,
    InboxOut,
    NotificationOut,
    PageLimit,
    PublishIn,
    PublishOut,
    ReadAllOut,
    TargetId,
    TokenIn,
    TokenOut,
    UnreadCountOut,
)
from service.notifications.tokens import Subscriber
from service.notifications.validation import idempotency_key_problem
from service.numbers import ascii_int
from service.timefmt import rfc3339

router = Router()
api_key = ApiKeyAuth()
subscriber_token = SubscriberAuth()

# Query parameters as the OpenAPI document states them (``TargetId`` validates ids by the full rule; the view
# checks ``limit`` and ``before``). ``topic`` has a plain list annotation so that ninja reads repeated
# parameters into it.
TOPIC_PARAM: Any = QueryParam(
    [], max_length=100, description="Repeat to include topics' notifications (<= 100)."
)
LIMIT_PARAM: Any = QueryParam(50, ge=1, le=inbox.MAX_PAGE, description="Page size, 1-100.")
BEFORE_PARAM: Any = QueryParam(None, description="The `next` of the previous page (a notification id).")

ERRORS: dict[int, Any] = {code: ErrorOut for code in (400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503)}
#: The publish routes' ``Idempotency-Key`` header in the OpenAPI document (docs/decisions.md): what
#: ``idempotency_key_problem`` accepts once the white space around it is stripped (RFC 9110 section 5.5).
IDEMPOTENCY_KEY_HEADER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "Replays the first response for a retry with the same key and body (24 h); another body "
    "with the same key is 409.",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e](?:[\\x20-\\x7e]{0,253}[\\x21-\\x7e])?$"},
}


def _idempotency_key(request: HttpRequest) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    # White space around a field value is not part of it (RFC 9110 section 5.5): h11 strips it, httptools
    # keeps the trailing part, so ``k `` was the key ``k`` under one parser and ``k `` (or a 422) under the other.
    key = key.strip(" \t")
    problem = idempotency_key_problem(key)
    if problem is not None:
        raise invalid_idempotency_key(problem)
    return key


def invalid_idempotency_key(problem: str) -> ApiError:
    return ApiError(422, "invalid_field", f"Idempotency-Key: {problem}", field="Idempotency-Key")


def _respond(outcome: publish.Outcome) -> HttpResponse:
    response = HttpResponse(outcome.to_bytes(), status=outcome.status, content_type="application/json")
    if outcome.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


async def _publish(request: HttpRequest, route: str, items: list[PublishIn]) -> HttpResponse:
    """The ninja side of publishing; without ``Idempotency-Key`` the worker serves these routes with
    ``service.notifications.publish_route`` (the same functions, without Django's request machinery)."""
    principal: KeyPrincipal = request.auth  # type: ignore[attr-defined]
    encoded = publish.encoded_items(route, items, principal.tenant)
    key = _idempotency_key(request)
    # "The same body" is equal JSON after parsing: hash the parsed request, not its bytes.
    body_hash = publish.request_hash(route, jsonbody.parse(request.body)) if key is not None else None
    return _respond(await publish.store(principal.tenant, encoded, idempotency_key=key, body_hash=body_hash))


@router.post(
    "/notifications",
    auth=api_key,
    response={201: PublishOut, **ERRORS},
    tags=["ingestion"],
    summary="Publish one notification (to a recipient, recipients, a topic or everyone)",
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_HEADER]},
)
async def publish_one(request: HttpRequest, payload: PublishIn) -> HttpResponse:
    return await _publish(request, "single", [payload])


@router.post(
    "/notifications/batch",
    auth=api_key,
    response={201: PublishOut, **ERRORS},
    tags=["ingestion"],
    summary="Publish up to 1000 notifications, all or nothing",
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_HEADER]},
)
async def publish_batch(request: HttpRequest, payload: BatchIn) -> HttpResponse:
    return await _publish(request, "batch", payload.notifications)


@router.get(
    "/notifications",
    auth=api_key,
    response={200: InboxOut, **ERRORS},
    tags=["inbox"],
    summary="A recipient's notifications, newest first (for tenant backends)",
)
async def list_for_recipient(
    request: HttpRequest,
    recipient: TargetId,
    topic: list[TargetId] = TOPIC_PARAM,
    unread: bool = False,
    limit: PageLimit = LIMIT_PARAM,
    before: Cursor | None = BEFORE_PARAM,
) -> Any:
    principal: KeyPrincipal = request.auth  # type: ignore[attr-defined]
    cursor = inbox.validate_page_args(limit, before)
    return await run_db(
        inbox.page,
        principal.tenant,
        recipient,
        tuple(dict.fromkeys(topic or ())),
        unread=unread,
        limit=limit,
        before=cursor,
    )


@router.post(
    "/tokens",
    auth=api_key,
    response={201: TokenOut, **ERRORS},
    tags=["tokens"],
    summary="Mint a subscriber token for one recipient",
)
async def mint_token(request: HttpRequest, payload: TokenIn) -> Any:
    principal: KeyPrincipal = request.auth  # type: ignore[attr-defined]
    token, exp = tokens.mint(principal.tenant, payload.recipient, payload.topics, payload.ttl)
    body = {"token": token, "expires_at": rfc3339(datetime.fromtimestamp(exp, UTC))}
    return HttpResponse(json.dumps(body), status=201, content_type="application/json")


@router.get(
    "/inbox",
    auth=subscriber_token,
    response={200: InboxOut, **ERRORS},
    tags=["inbox"],
    summary="The subscriber's inbox, newest first, with a `before` cursor",
)
async def my_inbox(
    request: HttpRequest,
    unread: bool = False,
    limit: PageLimit = LIMIT_PARAM,
    before: Cursor | None = BEFORE_PARAM,
) -> Any:
    who: Subscriber = request.auth  # type: ignore[attr-defined]
    cursor = inbox.validate_page_args(limit, before)
    return await run_db(
        inbox.page, who.tenant, who.recipient, who.topics, unread=unread, limit=limit, before=cursor
    )


@router.get(
    "/inbox/unread-count", auth=subscriber_token, response={200: UnreadCountOut, **ERRORS}, tags=["inbox"]
)
async def my_unread_count(request: HttpRequest) -> Any:
    who: Subscriber = request.auth  # type: ignore[attr-defined]
    return {"unread": await run_db(inbox.unread_count, who.tenant, who.recipient)}


@router.post(
    "/inbox/read-all",
    auth=subscriber_token,
    response={200: ReadAllOut, **ERRORS},
    tags=["inbox"],
    summary="Mark every unread notification read (one UPDATE)",
)
async def my_read_all(request: HttpRequest) -> Any:
    who: Subscriber = request.auth  # type: ignore[attr-defined]
    return await run_db(inbox.mark_all_read, who.tenant, who.recipient)


@router.post(
    "/inbox/{notification_id}/read",
    auth=subscriber_token,
    response={200: NotificationOut, **ERRORS},
    tags=["inbox"],
)
async def my_read_one(request: HttpRequest, notification_id: Cursor) -> Any:
    who: Subscriber = request.auth  # type: ignore[attr-defined]
    found = ascii_int(notification_id)
    if found is None:
        raise ApiError(404, "not_found", "no such notification for this recipient")
    return await run_db(inbox.mark_read, who.tenant, who.recipient, who.topics, found)

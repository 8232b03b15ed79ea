"""The demo page (``DEMO=1``): the demo recipient's inbox and live stream through ``beacon.js``, and a form
that publishes.

The browser never sees an API key: ``/demo/token`` plays the tenant backend and mints subscriber tokens (as
``POST /v1/tokens`` would), and ``/demo/publish`` publishes through the same code path as
``POST /v1/notifications``.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST
from pydantic import ValidationError

from service.db import run_db
from service.errors import ApiError
from service.notifications import publish as publishing
from service.notifications import tokens
from service.notifications.schemas import PublishIn
from tenants import directory

DEMO_TENANT = "demo"
DEMO_RECIPIENT = "demo-user"


async def _tenant() -> directory.TenantInfo:
    tenant = await run_db(directory.tenant_by_slug, DEMO_TENANT)
    if tenant is None:
        raise ApiError(
            404, "not_found", "the demo tenant does not exist: run `make run` or create_tenant demo"
        )
    return tenant


DEMO_TOKEN_TTL = 3600  # seconds; beacon.js asks for a new one at 80 % of that


async def page(request: HttpRequest) -> HttpResponse:
    try:
        await _tenant()
    except ApiError as exc:
        return exc.to_response()
    render_async = sync_to_async(render)
    return await render_async(request, "demo.html", {"recipient": DEMO_RECIPIENT})


async def token(request: HttpRequest) -> HttpResponse:
    """``GET /demo/token`` → ``{"token": ..., "expires_at": <unix seconds>}`` for the demo recipient.

    A real page gets its token from its own backend, which checks its own session first (docs/embed.md).
    """
    try:
        tenant = await _tenant()
    except ApiError as exc:
        return exc.to_response()
    jwt, exp = tokens.mint(tenant, DEMO_RECIPIENT, ["news"], DEMO_TOKEN_TTL)
    return JsonResponse({"token": jwt, "expires_at": exp}, headers={"Cache-Control": "no-store"})


@require_POST
async def publish(request: HttpRequest) -> HttpResponse:
    try:
        tenant = await _tenant()
        text = str(request.POST.get("text", ""))[:500] or "Hello from Beacon"
        try:
            item = PublishIn.model_validate(
                {"recipient": DEMO_RECIPIENT, "event": "demo.message", "data": {"text": text}}
            )
        except ValidationError:  # a NUL in the text: jsonb cannot store it (service.jsonbody)
            raise ApiError(
                422, "invalid_field", "text: must be text PostgreSQL can store", field="text"
            ) from None
        encoded = publishing.encoded_data(item, tenant, "data")
        outcome = await run_db(publishing.publish, tenant, [(item, encoded)])
    except ApiError as exc:
        return exc.to_response()
    return JsonResponse(outcome.body, status=outcome.status, json_dumps_params={"separators": (",", ":")})

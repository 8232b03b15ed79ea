"""The demo page (``DEMO=1``): a plain EventSource for a demo recipient, and a form that publishes.

The browser never sees an API key: the server mints the subscriber token and publishes through the same
code path as ``POST /v1/notifications``.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

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


async def page(request: HttpRequest) -> HttpResponse:
    try:
        tenant = await _tenant()
    except ApiError as exc:
        return exc.to_response()
    token, _ = tokens.mint(tenant, DEMO_RECIPIENT, ["news"], 3600)
    render_async = sync_to_async(render)
    return await render_async(request, "demo.html", {"token": token, "recipient": DEMO_RECIPIENT})


@require_POST
async def publish(request: HttpRequest) -> HttpResponse:
    try:
        tenant = await _tenant()
        text = str(request.POST.get("text", ""))[:500] or "Hello from Beacon"
        item = PublishIn.model_validate(
            {"recipient": DEMO_RECIPIENT, "event": "demo.message", "data": {"text": text}}
        )
        encoded = publishing.encoded_data(item, tenant, "data")
        outcome = await run_db(publishing.publish, tenant, [(item, encoded)])
    except ApiError as exc:
        return exc.to_response()
    return JsonResponse(outcome.body, status=outcome.status, json_dumps_params={"separators": (",", ":")})

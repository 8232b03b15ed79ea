"""The admin's "send a notification" form on each tenant, publishing through the API's own code path."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from pydantic import ValidationError

from service import jsonbody
from service.errors import ApiError
from service.notifications import publish
from service.notifications.schemas import PublishIn
from tenants.admin import TenantAdmin
from tenants.directory import TenantInfo
from tenants.models import Tenant


class SendForm(forms.Form):
    recipient = forms.CharField(required=False, max_length=256, help_text="A recipient id, or leave empty.")
    topic = forms.CharField(required=False, max_length=256, help_text="Or a topic id.")
    broadcast = forms.BooleanField(required=False, help_text="Or every subscriber of the tenant.")
    event = forms.CharField(required=False, max_length=64)
    payload = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), initial="{}", help_text="Any JSON value."
    )

    def to_publish(self) -> PublishIn:
        cleaned = self.cleaned_data
        # The API's parser: JSON only (no NaN), numbers as PostgreSQL prints them (service.jsonbody).
        body: dict[str, Any] = {"data": jsonbody.parse((cleaned["payload"] or "null").encode())}
        for name in ("recipient", "topic", "event"):
            if cleaned[name]:
                body[name] = cleaned[name]
        if cleaned["broadcast"]:
            body["broadcast"] = True
        return PublishIn.model_validate(body)


def send_notification_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    tenant = get_object_or_404(Tenant, pk=object_id)
    form = SendForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            item = form.to_publish()
            info = TenantInfo.of(tenant)
            outcome = publish.publish(info, [(item, publish.encoded_data(item, info, "data"))])
        except jsonbody.InvalidJson as exc:
            form.add_error("payload", f"not JSON: {exc}")
        except ValidationError as exc:
            form.add_error(None, "; ".join(str(e["msg"]) for e in exc.errors()))
        except ApiError as exc:
            form.add_error(None, exc.message)
        else:
            ids = ", ".join(n["id"] for n in outcome.body["notifications"])
            messages.success(request, f"Sent notification {ids}.")
            return HttpResponseRedirect(reverse("admin:tenants_tenant_change", args=[tenant.pk]))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Send a notification as {tenant.slug}",
        "form": form,
        "tenant": tenant,
        "opts": model_admin.model._meta,
    }
    return TemplateResponse(request, "admin/notifications/send.html", context)


def _urls_with_send(original: Any) -> Any:
    def get_urls(self: TenantAdmin) -> list[URLPattern]:
        view = self.admin_site.admin_view(
            lambda request, object_id: send_notification_view(self, request, object_id)
        )
        return [path("<path:object_id>/send/", view, name="tenants_tenant_send"), *original(self)]

    return get_urls


# Hook the form into the tenant admin from here: tenants/ must not import notifications (design.md).
TenantAdmin.get_urls = _urls_with_send(TenantAdmin.get_urls)  # type: ignore[method-assign]
TenantAdmin.change_form_template = "admin/notifications/tenant_change_form.html"

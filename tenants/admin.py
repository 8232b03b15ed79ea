"""Operator admin for tenants, domains and API keys. A new key's secret is shown once, in a message."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from tenants import keys
from tenants.models import ApiKey, Domain, Tenant


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "schema_name", "is_active", "created_at")
    search_fields = ("slug", "name")
    readonly_fields = ("schema_name", "signing_secret", "created_at")
    inlines = [DomainInline]
    actions = ["rotate_signing_secret"]

    @admin.action(description="Rotate the subscriber-signing secret (invalidates issued tokens)")
    def rotate_signing_secret(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            tenant.rotate_signing_secret()
        self.message_user(request, f"Rotated {queryset.count()} signing secret(s).")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("public_id", "tenant", "name", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("tenant",)
    readonly_fields = ("public_id", "created_at", "last_used_at")
    fields = ("tenant", "name", "public_id", "expires_at", "revoked_at", "created_at", "last_used_at")
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            full, obj.public_id, obj.secret_hash = keys.generate()
            super().save_model(request, obj, form, change)
            messages.warning(request, f"New API key (copy it now, it is not shown again): {full}")
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        updated = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {updated} key(s).")

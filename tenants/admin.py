"""Operator admin for tenants, domains and API keys. A new key's secret is shown once, in a message."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.validators import MinValueValidator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from service import hosts
from service.numbers import ascii_int
from tenants import keys, lifecycle
from tenants.models import ApiKey, Domain, Tenant
from tenants.origins import check_origins


class AllowedOriginsField(forms.Field):
    """``Tenant.allowed_origins`` as a text area with one origin per line (not a JSON list to type by hand).

    Every bad line is named with the reason (``tenants.origins.check_origin``), e.g.
    ``'https://app.example.com/': an origin has no path, no trailing slash, no query and no fragment``.
    """

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60, "placeholder": "https://app.example.com"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(origin) for origin in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            return [str(origin) for origin in value]
        return [line.strip() for line in str(value or "").splitlines() if line.strip()]

    def validate(self, value: Any) -> None:
        super().validate(value)
        check_origins(value)

    def clean(self, value: Any) -> list[str]:
        cleaned = super().clean(value)
        return check_origins(cleaned)  # duplicates dropped, order kept


class AsciiIntegerField(forms.IntegerField):
    """A whole number typed in ASCII digits (``service.numbers``), white space around it ignored: Django's
    ``IntegerField`` also took ``١٢``, ``1_000`` and ``+5``, which the commands' options refuse."""

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        number = ascii_int(str(value).strip())
        if number is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return number


#: The limits, positive as the commands' ``--max-connections`` and friends (0 would refuse every stream or
#: publish: deactivate the tenant for that), and the retention settings (their own 60 s minimum).
LIMIT_FIELDS = (
    "max_connections",
    "max_connections_per_recipient",
    "publish_rate_per_second",
    "max_payload_bytes",
)
NUMBER_FIELDS = (*LIMIT_FIELDS, "default_ttl_seconds", "max_retention_seconds")


class TenantAdminForm(forms.ModelForm):
    allowed_origins = AllowedOriginsField(
        required=False,
        help_text="One origin per line, as a browser sends it in Origin: scheme://host[:port], e.g. "
        "https://app.example.com (no path, no trailing slash, no *). Pages on these origins may call the "
        "stream and the inbox (CORS).",
    )

    class Meta:
        model = Tenant
        fields = "__all__"
        field_classes = {name: AsciiIntegerField for name in NUMBER_FIELDS}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in LIMIT_FIELDS:
            field = self.fields[name]
            field.validators.append(MinValueValidator(1))
            field.widget.attrs["min"] = 1


class DomainForm(forms.ModelForm):
    """A domain as requests are matched on it (``service.hosts.normalize``): a value no ``Host`` header can
    match (a space, a scheme, a path) is refused; a port, a trailing dot and upper case are dropped."""

    class Meta:
        model = Domain
        fields = "__all__"

    def clean_domain(self) -> str:
        raw = self.cleaned_data["domain"]
        host = hosts.normalize(raw)
        if not host:
            raise forms.ValidationError(f"{raw[:80]!r} is not a host name such as notify.example.com")
        return host


class DomainInline(admin.TabularInline):
    model = Domain
    form = DomainForm
    extra = 0


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """Tenants are deactivated here, never deleted: dropping a schema takes ``delete_tenant --drop-schema
    --yes``. The signing secret is never shown; rotating it shows the new one once (for backends that sign
    their own tokens) and ends the tenant's open streams."""

    form = TenantAdminForm

    list_display = ("slug", "name", "schema_name", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("slug", "name")
    exclude = ("signing_secret",)
    readonly_fields = ("schema_name", "created_at")
    inlines = [DomainInline]
    actions = ["deactivate", "activate", "rotate_signing_secret"]

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        was_active = bool(change and form.initial.get("is_active", True))
        lifecycle.save_tenant(obj, was_active=was_active)

    @admin.action(description="Deactivate selected tenants (keeps their data; ends their streams)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        tenants = list(queryset.filter(is_active=True))
        for tenant in tenants:
            lifecycle.set_active(tenant, False)
        self.message_user(request, f"Deactivated {len(tenants)} tenant(s); their data is kept.")

    @admin.action(description="Activate selected tenants")
    def activate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        tenants = list(queryset.filter(is_active=False))
        for tenant in tenants:
            lifecycle.set_active(tenant, True)
        self.message_user(request, f"Activated {len(tenants)} tenant(s).")

    @admin.action(description="Rotate the subscriber-signing secret (old tokens stop working, streams end)")
    def rotate_signing_secret(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            lifecycle.rotate_signing_secret(tenant)
            messages.warning(
                request,
                f"New signing secret of {tenant.slug} (copy it now, it is not shown again): "
                f"{tenant.signing_secret}",
            )


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

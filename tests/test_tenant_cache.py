"""The per-process tenant cache (``tenants/directory.py``): a clear is never undone by a load in flight.

A rotation or deactivation clears the cached tenants (``forget_tenants``) so that the next token check reads
the new row. A load of the old row that began before the clear and ends after it must not put the old row
back: streams would then be accepted with the old secret until the entry expired.
"""

from __future__ import annotations

import pytest

from tenants import directory


@pytest.mark.django_db
def test_a_load_begun_before_a_clear_is_not_stored(make_tenant) -> None:
    tenant, _key = make_tenant()
    directory.forget_tenants()
    loads = []

    def load_racing_a_rotation(slug: str) -> directory.TenantInfo | None:
        loads.append(slug)
        value = directory.TenantInfo.of(tenant)  # the row as read before the rotation committed
        directory.forget_tenants()  # the rotation's close announcement arrives meanwhile
        return value

    cache = directory.tenants_by_slug
    assert directory._cached(cache, tenant.slug, load_racing_a_rotation) is not None
    assert cache.get(tenant.slug) == (False, None)  # not stored: the next check reads the row again
    assert directory.tenant_by_slug(tenant.slug) is not None  # an ordinary load is stored
    assert cache.get(tenant.slug)[0] is True
    assert loads == [tenant.slug]

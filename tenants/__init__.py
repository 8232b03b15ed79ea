"""Who: tenants, their domains and API keys, all in the ``public`` schema."""

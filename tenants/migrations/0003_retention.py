# Per-tenant default ttl and maximum retention (issue 11).

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("tenants", "0002_allowed_origins_validator"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="default_ttl_seconds",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="ttl of notifications published without one, 60 s to 90 days (empty: 30 days).",
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(60),
                    django.core.validators.MaxValueValidator(7776000),
                ],
            ),
        ),
        migrations.AddField(
            model_name="tenant",
            name="max_retention_seconds",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="No notification is kept longer: larger ttls are shortened to it, and purge_expired deletes older rows (empty: 90 days, the contract's largest ttl).",
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(60),
                    django.core.validators.MaxValueValidator(7776000),
                ],
            ),
        ),
    ]

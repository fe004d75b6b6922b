"""Auto-trading's own per-user settings (the kept profit threshold), written on a user's first choice."""

import django.db.models.deletion
from decimal import Decimal
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("autotrade", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AutoTradeSettings",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "threshold",
                    models.DecimalField(
                        decimal_places=10,
                        default=Decimal("0.0005"),
                        max_digits=20,
                        verbose_name="profit threshold (fraction)",
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="autotrade_settings",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "auto-trading settings",
                "verbose_name_plural": "auto-trading settings",
            },
        ),
    ]

"""The kept auto-trading threshold belongs to the autotrade app (``AutoTradeSettings``). Depends on the
autotrade migration that copies it there, so the copy runs before the column goes (and, backwards, the
column is back before the copy returns)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0008_autotrade_moved_to_its_app"),
        ("autotrade", "0003_threshold_from_trading_profile"),
    ]

    operations = [
        migrations.RemoveField(model_name="tradingprofile", name="autotrade_threshold"),
    ]

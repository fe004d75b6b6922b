"""The kill switch is a singleton row (pk=1), present from the start so the admin can flip it."""

from django.db import migrations


def create_switch(apps, schema_editor):
    apps.get_model("trading", "TradingSwitch").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("trading", "0001_initial_trading_models")]
    operations = [migrations.RunPython(create_switch, migrations.RunPython.noop)]

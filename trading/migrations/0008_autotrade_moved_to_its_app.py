"""The auto-trading models moved to the autotrade app: removed from trading's state only. The tables
(trading_autotradesession, trading_autotradedecision) and their rows stay; autotrade.0001 takes them over."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0007_order_book_source"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="AutoTradeDecision"),
                migrations.DeleteModel(name="AutoTradeSession"),
            ],
            database_operations=[],
        ),
    ]

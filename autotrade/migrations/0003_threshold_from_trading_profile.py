"""The kept threshold moves from ``TradingProfile.autotrade_threshold`` to ``AutoTradeSettings.threshold``:
every non-default choice is copied (a user with the default needs no row). Backwards, the rows are copied
onto the trading profiles (created as ``trading_profile_ensure`` would) and deleted. trading.0009 removes the
old field only after this ran."""

from decimal import Decimal

from django.db import migrations

DEFAULT_THRESHOLD = Decimal("0.0005")


def threshold_to_autotrade(apps, schema_editor) -> None:
    db = schema_editor.connection.alias
    profile = apps.get_model("trading", "TradingProfile")
    kept = apps.get_model("autotrade", "AutoTradeSettings")
    rows = (
        profile.objects.using(db)
        .exclude(autotrade_threshold=DEFAULT_THRESHOLD)
        .values_list("user_id", "autotrade_threshold")
    )
    for user_id, threshold in rows.iterator():
        kept.objects.using(db).update_or_create(user_id=user_id, defaults={"threshold": threshold})


def threshold_to_trading(apps, schema_editor) -> None:
    db = schema_editor.connection.alias
    profile = apps.get_model("trading", "TradingProfile")
    kept = apps.get_model("autotrade", "AutoTradeSettings")
    for row in kept.objects.using(db).select_related("user").iterator():
        updated = profile.objects.using(db).filter(user_id=row.user_id).update(autotrade_threshold=row.threshold)
        if not updated:
            profile.objects.using(db).create(
                user_id=row.user_id,
                autotrade_threshold=row.threshold,
                daily_report=bool(getattr(row.user, "email_opt_in", False)),  # as TradingProfile.defaults_for
            )
    kept.objects.using(db).all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("autotrade", "0002_autotrade_settings"),
        ("trading", "0008_autotrade_moved_to_its_app"),
    ]

    operations = [
        migrations.RunPython(threshold_to_autotrade, threshold_to_trading, elidable=True),
    ]

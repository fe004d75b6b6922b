"""Auto-trading's own app takes over the models that lived in the trading app: state only (the tables keep
their names and rows, see db_table), and the content types move with them so the admin's permissions and
log entries stay attached."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MODELS = ("autotradesession", "autotradedecision")


def _move_content_types(apps, schema_editor, *, source: str, target: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MODELS:
        if content_type.objects.using(db).filter(app_label=target, model=model).exists():
            continue  # already there (a database that never had the old one gets it from post_migrate)
        content_type.objects.using(db).filter(app_label=source, model=model).update(app_label=target)


def content_types_forward(apps, schema_editor) -> None:
    _move_content_types(apps, schema_editor, source="trading", target="autotrade")


def content_types_backward(apps, schema_editor) -> None:
    _move_content_types(apps, schema_editor, source="autotrade", target="trading")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("trading", "0008_autotrade_moved_to_its_app"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AutoTradeSession',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('market', models.CharField(max_length=20, verbose_name='market')),
                        ('mode', models.CharField(max_length=8, verbose_name='mode')),
                        ('state', models.CharField(choices=[('running', 'Running'), ('stopped', 'Stopped')], default='running', max_length=8)),
                        ('running_key', models.CharField(blank=True, max_length=20, null=True)),
                        ('threshold', models.DecimalField(decimal_places=10, max_digits=20, verbose_name='profit threshold (fraction)')),
                        ('order_krw', models.DecimalField(decimal_places=8, max_digits=30, verbose_name='order size (KRW)')),
                        ('max_position_krw', models.DecimalField(blank=True, decimal_places=8, max_digits=30, null=True, verbose_name='position limit (KRW)')),
                        ('stop_loss', models.DecimalField(blank=True, decimal_places=10, max_digits=20, null=True, verbose_name='stop loss (fraction below cost)')),
                        ('cooldown_s', models.PositiveIntegerField(default=10, verbose_name='cool-down (s)')),
                        ('last_prediction_ts', models.BigIntegerField(default=0)),
                        ('last_order_at', models.DateTimeField(blank=True, null=True)),
                        ('started_at', models.DateTimeField(auto_now_add=True)),
                        ('stopped_at', models.DateTimeField(blank=True, null=True)),
                        ('stop_reason', models.CharField(blank=True, max_length=200)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='autotrade_sessions', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'trading_autotradesession',
                        'ordering': ['-started_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='AutoTradeDecision',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('market', models.CharField(max_length=20)),
                        ('prediction_ts', models.BigIntegerField()),
                        ('predicted_return', models.DecimalField(decimal_places=10, max_digits=20)),
                        ('horizon_s', models.FloatField(blank=True, null=True)),
                        ('model_version', models.CharField(blank=True, max_length=100)),
                        ('best_bid', models.DecimalField(blank=True, decimal_places=8, max_digits=30, null=True)),
                        ('best_ask', models.DecimalField(blank=True, decimal_places=8, max_digits=30, null=True)),
                        ('threshold', models.DecimalField(decimal_places=10, max_digits=20)),
                        ('fee_cost', models.DecimalField(decimal_places=10, max_digits=20)),
                        ('half_spread', models.DecimalField(decimal_places=10, max_digits=20)),
                        ('cost', models.DecimalField(decimal_places=10, max_digits=20)),
                        ('action', models.CharField(choices=[('buy', 'Buy'), ('sell', 'Sell'), ('hold', 'Hold')], max_length=4)),
                        ('reason', models.CharField(max_length=30)),
                        ('detail', models.CharField(blank=True, max_length=300)),
                        ('outcome', models.CharField(choices=[('none', 'No order'), ('pending', 'Order being placed'), ('placed', 'Order placed'), ('rejected', 'Order refused')], default='none', max_length=8)),
                        ('idempotency_key', models.CharField(blank=True, max_length=64)),
                        ('order_krw', models.DecimalField(blank=True, decimal_places=8, max_digits=30, null=True)),
                        ('volume', models.DecimalField(blank=True, decimal_places=8, max_digits=30, null=True)),
                        ('manual_adjust_volume', models.DecimalField(blank=True, decimal_places=8, max_digits=30, null=True, verbose_name='position reduced by a manual trade')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('order', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='trading.order')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('session', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='decisions', to='autotrade.autotradesession')),
                    ],
                    options={
                        'db_table': 'trading_autotradedecision',
                        'ordering': ['-prediction_ts', '-id'],
                    },
                ),
                migrations.AddIndex(
                    model_name='autotradesession',
                    index=models.Index(fields=['market', 'state'], name='trading_autotrade_market_state'),
                ),
                migrations.AddConstraint(
                    model_name='autotradesession',
                    constraint=models.UniqueConstraint(fields=('user', 'running_key'), name='trading_autotrade_one_running'),
                ),
                migrations.AddIndex(
                    model_name='autotradedecision',
                    index=models.Index(fields=['user', '-created_at'], name='trading_autodecision_user'),
                ),
                migrations.AddConstraint(
                    model_name='autotradedecision',
                    constraint=models.UniqueConstraint(fields=('session', 'prediction_ts'), name='trading_autodecision_once'),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_types_forward, content_types_backward),
    ]

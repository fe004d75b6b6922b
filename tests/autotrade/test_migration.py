"""A database migrated before auto-trading left the trading app migrates forward with every row kept: the
tables stay (``trading_autotrade*``), the state and the content types move to ``autotrade``; the kept
threshold moves from the trading profile to ``AutoTradeSettings`` and back. Runs on the suite's database
(SQLite by default, MariaDB in CI)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from autotrade.models import AutoTradeDecision, AutoTradeSession, AutoTradeSettings
from autotrade.selectors import autotrade_threshold_get

BEFORE_THE_MOVE = [("trading", "0007_order_book_source"), ("autotrade", None)]
BEFORE_THE_SETTINGS = [("trading", "0008_autotrade_moved_to_its_app"), ("autotrade", "0001_initial")]


def _migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection)


@pytest.mark.django_db(transaction=True)
def test_rows_of_a_database_migrated_before_the_move_are_kept() -> None:
    executor = _migrate(BEFORE_THE_MOVE)
    graph = executor.loader.graph
    nodes = [BEFORE_THE_MOVE[0]] + [n for n in graph.leaf_nodes() if n[0] in ("auth", "contenttypes")]
    old = executor.loader.project_state(nodes).apps
    user = old.get_model("accounts", "User").objects.create(username="before-the-move")
    content_type = old.get_model("contenttypes", "ContentType")
    session_ct, _ = content_type.objects.get_or_create(app_label="trading", model="autotradesession")
    content_type.objects.filter(app_label="autotrade").delete()  # as before the app existed
    permission = old.get_model("auth", "Permission").objects.create(
        name="Can stop sessions", codename="stop_autotradesession_test", content_type=session_ct
    )
    session = old.get_model("trading", "AutoTradeSession").objects.create(
        user=user,
        market="KRW-BTC",
        mode="paper",
        running_key="KRW-BTC",
        threshold=Decimal("0.0005"),
        order_krw=Decimal(100_000),
        cooldown_s=10,
    )
    old.get_model("trading", "AutoTradeDecision").objects.create(
        session=session,
        user=user,
        market="KRW-BTC",
        prediction_ts=1_800_000_000_000,
        predicted_return=Decimal("0.003"),
        threshold=Decimal("0.0005"),
        fee_cost=Decimal("0.001"),
        half_spread=Decimal("0.001"),
        cost=Decimal("0.002"),
        action="hold",
        reason="below_threshold",
        manual_adjust_volume=Decimal("0.0001"),
    )

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    moved = AutoTradeSession.objects.get(pk=session.pk)
    assert (moved.user_id, moved.market, moved.running_key, moved.threshold) == (
        user.pk,
        "KRW-BTC",
        "KRW-BTC",
        Decimal("0.0005"),
    )
    assert moved.is_running and moved.started_at <= dt.datetime.now(tz=dt.UTC)
    decision = AutoTradeDecision.objects.get(session=moved)
    assert decision.manual_adjust_volume == Decimal("0.0001") and decision.reason == "below_threshold"
    assert AutoTradeSession._meta.db_table == "trading_autotradesession"
    # The content type moved with its id, so permissions (and admin log entries) stay attached.
    ct = ContentType.objects.get_for_model(AutoTradeSession)
    assert (ct.pk, ct.app_label) == (session_ct.pk, "autotrade")
    assert not ContentType.objects.filter(app_label="trading", model="autotradesession").exists()
    assert ct.permission_set.filter(pk=permission.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_move_migrates_back_and_forth() -> None:
    _migrate(BEFORE_THE_MOVE)
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    assert {"trading_autotradesession", "trading_autotradedecision"} <= set(tables)  # never dropped
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert AutoTradeSession.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_kept_threshold_moves_to_autotrade_settings_and_back() -> None:
    executor = _migrate(BEFORE_THE_SETTINGS)
    nodes = BEFORE_THE_SETTINGS + [n for n in executor.loader.graph.leaf_nodes() if n[0] == "accounts"]
    old = executor.loader.project_state(nodes).apps
    user_model = old.get_model("accounts", "User")
    profile_model = old.get_model("trading", "TradingProfile")
    chose = user_model.objects.create(username="chose-0.3")
    default = user_model.objects.create(username="kept-the-default")
    profile_model.objects.create(user=chose, autotrade_threshold=Decimal("0.003"))
    profile_model.objects.create(user=default)

    try:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        assert AutoTradeSettings.objects.get(user_id=chose.pk).threshold == Decimal("0.003")
        assert not AutoTradeSettings.objects.filter(user_id=default.pk).exists()  # the default needs no row
        assert autotrade_threshold_get(user=chose) == Decimal("0.003")
        assert autotrade_threshold_get(user=default) == Decimal("0.0005")
        # Chosen after the move by a user who never had a trading profile: backwards, one is made for it.
        later = user_model.objects.create(username="chose-later", email_opt_in=True)
        AutoTradeSettings.objects.create(user_id=later.pk, threshold=Decimal("0.004"))

        executor = _migrate(BEFORE_THE_SETTINGS)
        old = executor.loader.project_state(nodes).apps
        profiles = old.get_model("trading", "TradingProfile").objects
        assert profiles.get(user_id=chose.pk).autotrade_threshold == Decimal("0.003")
        assert profiles.get(user_id=default.pk).autotrade_threshold == Decimal("0.0005")
        back = profiles.get(user_id=later.pk)
        assert (back.autotrade_threshold, back.daily_report, back.mode) == (Decimal("0.004"), True, "paper")
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert autotrade_threshold_get(user=chose) == Decimal("0.003")  # and forward again

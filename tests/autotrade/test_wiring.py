"""How auto-trading is reached from the apps below it, which never import it: the halt hook, the /trade page's
configuration hook and the prediction subscriber are declared in settings; the task's old name still runs."""

from __future__ import annotations

from typing import Any

import pytest

from autotrade.models import AutoTradeDecision, AutoTradeSession
from autotrade.services import autotrade_start
from celery_app import app
from tests.autotrade.conftest import prediction
from trading.dashboard import trade_page_context
from trading.hooks import auto_trading_halted_notify
from trading.services import kill_switch_engage
from trading.services.profiles import auto_trading_halt

calls: list[dict[str, Any]] = []


def recording_hook(*, user: Any, reason: str) -> None:
    calls.append({"user": user, "reason": reason})


def start(user: Any) -> AutoTradeSession:
    return autotrade_start(user=user, market="KRW-BTC", threshold="0.0005", order_krw="100000")


def test_a_halt_reaches_auto_trading_only_through_the_declared_hooks(
    user: Any, wide_book: Any, active_models: Any, settings: Any
) -> None:
    calls.clear()
    session = start(user)
    settings.AUTO_TRADING_HALT_HOOKS = ["tests.autotrade.test_wiring.recording_hook"]
    auto_trading_halt(user=user, reason="Daily loss limit reached")
    kill_switch_engage(reason="test")
    assert calls == [
        {"user": user, "reason": "Daily loss limit reached"},
        {"user": None, "reason": "Kill switch engaged by the operators."},
    ]
    session.refresh_from_db()
    assert session.is_running  # auto-trading's own hook was not declared: trading alone cannot stop it
    settings.AUTO_TRADING_HALT_HOOKS = ["autotrade.services.autotrade_on_halt"]
    auto_trading_halted_notify(user=None, reason="Kill switch engaged by the operators.")
    session.refresh_from_db()
    assert not session.is_running and session.stop_reason == "Kill switch engaged by the operators."


def test_the_trade_page_gets_auto_tradings_part_from_the_declared_hook(user: Any, settings: Any) -> None:
    ctx = trade_page_context(user=user, market="KRW-BTC", csrf_token="x")["config"]
    assert ctx["api"]["auto_start"] == "/api/trading/auto/start/"
    assert ctx["api"]["auto_decisions"] == "/api/trading/auto/decisions/"
    assert ctx["threshold"] == {"min": 0, "max": 5.0, "step": 0.01, "default": 0.05}
    settings.TRADE_PAGE_CONFIG = []
    bare = trade_page_context(user=user, market="KRW-BTC", csrf_token="x")["config"]
    assert "threshold" not in bare and not any(name.startswith("auto") for name in bare["api"])
    assert bare["api"]["buy"] == "/api/trading/orders/buy/"  # trading's own page works without it
    assert "reason_signal_buy" in ctx["strings"] and "reason_signal_buy" not in bare["strings"]


def test_the_auto_trading_panel_is_a_declared_panel_of_the_trade_page(
    user: Any, client: Any, settings: Any
) -> None:
    client.force_login(user)
    page = client.get("/trade").content.decode()
    assert page.count('data-testid="auto-panel"') == 1 and 'data-testid="auto-start"' in page
    settings.TRADE_PAGE_PANELS = []
    bare = client.get("/trade")
    assert bare.status_code == 200 and 'data-testid="auto-panel"' not in bare.content.decode()


def test_predictions_are_subscribed_to_by_the_new_task_name(settings: Any) -> None:
    subscribers = settings.MESSAGE_SUBSCRIBERS["mlmodel.prediction"]
    assert [s["task"] for s in subscribers] == ["autotrade.tasks.autotrade_on_prediction"]
    app.loader.import_default_modules()
    assert "autotrade.tasks.autotrade_on_prediction" in app.tasks


@pytest.mark.parametrize(
    "name", ["autotrade.tasks.autotrade_on_prediction", "trading.tasks.autotrade_on_prediction"]
)
def test_a_prediction_queued_under_either_name_is_judged_once(
    name: str, user: Any, wide_book: Any, active_models: Any
) -> None:
    """Messages queued before the move carry the old name: they still run, and a redelivery under the other
    name changes nothing (one decision per session and prediction)."""
    app.loader.import_default_modules()
    session = start(user)
    p = prediction(0.003)
    assert app.tasks[name].run(prediction=p) == 1
    other = (
        {"autotrade.tasks.autotrade_on_prediction", "trading.tasks.autotrade_on_prediction"} - {name}
    ).pop()
    app.tasks[other].run(prediction=p)
    assert AutoTradeDecision.objects.filter(session=session).count() == 1


def test_celery_finds_each_apps_tasks_module_only() -> None:
    """The news task lives in market/tasks.py under its old name; no second tasks module is found by name."""
    app.loader.import_default_modules()
    assert app.tasks["market.tasks.refresh_news"].__module__ == "market.tasks"
    ours = {t.__module__ for n, t in app.tasks.items() if not n.startswith("celery.")}
    assert ours <= {f"{a}.tasks" for a in ("accounts", "core", "market", "mlmodel", "trading", "autotrade")}

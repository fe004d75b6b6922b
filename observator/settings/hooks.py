"""Cross-app wiring: the hooks and typed-message subscribers through which a lower app reaches a higher one
without importing it (docs/architecture.md). The one place that names a higher app's code for a lower one."""

from __future__ import annotations

# Extra sections of the profile page (holdings, e-mail report, ...): dotted paths to callables
# ``(request) -> str`` returning HTML-safe markup, rendered in order (see accounts.views._profile_sections).
PROFILE_SECTIONS: list[str] = [
    "trading.views.profile_holdings_section",
    "trading.views.profile_report_section",
]
# Typed messages between apps (core.messages): a lower app publishes a msgspec Struct of a topic; the Celery
# tasks declared here receive it as keyword argument ``arg`` on ``queue``. A publisher never names a higher
# app's task; this is the one place that wires them (catalogue: docs/architecture.md).
MESSAGE_SUBSCRIBERS: dict[str, list[dict[str, str]]] = {
    # market.messages.MarketBatch: the collector's ~1 s batch of every market's books and trades
    "market.batch": [{"task": "mlmodel.tasks.ingest_market_data", "queue": "ml", "arg": "packed"}],
    # mlmodel.messages.Prediction: every new prediction of an active model
    "mlmodel.prediction": [
        {"task": "autotrade.tasks.autotrade_on_prediction", "queue": "default", "arg": "prediction"}
    ],
}
# Hooks of the apps above trading (trading never imports them): dotted paths to callables.
# ``(*, user, reason) -> None``, called after trading halted auto-trading for ``user`` (daily loss limit) or
# for everyone (``user=None``: the kill switch engaged); see trading.hooks.auto_trading_halted_notify.
AUTO_TRADING_HALT_HOOKS: list[str] = ["autotrade.services.autotrade_on_halt"]
# ``(*, user) -> dict``, merged into the /trade page's client configuration (its ``api`` entries join the
# page's endpoints); see trading.dashboard.trade_page_context.
TRADE_PAGE_CONFIG: list[str] = ["autotrade.views.trade_page_config"]
# ``(request) -> str`` returning HTML-safe markup: the /trade page's panels, in order (trading.dashboard).
TRADE_PAGE_PANELS: list[str] = ["autotrade.views.trade_panel"]
# Checks Upbit keys before they are stored (a read-only GET /v1/accounts against UPBIT_REST_URL):
# ``callable(*, access_key, secret_key) -> accounts.services.KeyCheckResult`` (see exchange_credential_check).
EXCHANGE_KEY_CHECK = "market.keycheck.upbit_keys_check"

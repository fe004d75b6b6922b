from django.apps import AppConfig

from core.realtime import relay_tap_add
from market.livebook import livebook_record_event


class MarketConfig(AppConfig):
    name = "market"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Embedded mode: every book the collector relays to the web process is kept for paper fills.
        relay_tap_add(message_type="market.orderbook", fn=livebook_record_event)

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class TradingConfig(AppConfig):
    name = "trading"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from trading.exchanges import credential_changed  # imports models: only once apps are ready

        # Saved, rotated or deleted keys drop the cached live exchange of that user (every process).
        for signal, uid in ((post_save, "trading-keys-saved"), (post_delete, "trading-keys-deleted")):
            signal.connect(credential_changed, sender="accounts.ExchangeCredential", dispatch_uid=uid)

from django.apps import AppConfig


class AutotradeConfig(AppConfig):
    name = "autotrade"
    verbose_name = "Auto-trading"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """A bad ``AUTOTRADE_SPREAD_COST_FACTOR`` stops every process at start (ImproperlyConfigured), not at
        the first prediction; the settings module itself runs no check."""
        from autotrade.services import spread_cost_factor  # models are loaded only once apps are ready

        spread_cost_factor()

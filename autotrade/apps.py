from django.apps import AppConfig


class AutotradeConfig(AppConfig):
    name = "autotrade"
    verbose_name = "Auto-trading"
    default_auto_field = "django.db.models.BigAutoField"

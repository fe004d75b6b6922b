from django.apps import AppConfig

from core import converters


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        converters.register()  # before any URLconf is imported (they use <id:...>)

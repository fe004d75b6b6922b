from django.apps import AppConfig


class MlmodelConfig(AppConfig):
    name = "mlmodel"
    default_auto_field = "django.db.models.BigAutoField"

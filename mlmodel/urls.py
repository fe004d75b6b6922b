"""Page routes of the mlmodel app."""

urlpatterns: list = []

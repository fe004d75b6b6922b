"""Page routes of the trading app."""

urlpatterns: list = []

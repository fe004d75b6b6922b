"""Page routes of the market app."""

urlpatterns: list = []

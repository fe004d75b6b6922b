"""REST API routes of the market app."""

urlpatterns: list = []

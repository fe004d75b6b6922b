"""REST API routes of the mlmodel app."""

urlpatterns: list = []

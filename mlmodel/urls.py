"""Page routes of the mlmodel app."""

from django.urls import path

from mlmodel import views

app_name = "mlmodel"
urlpatterns = [
    path("model", views.model_page, name="model"),
    path("model/versions/<id:version_id>/", views.model_report, name="report"),
    path("model/versions/<id:version_id>/plots/<slug:name>.png", views.model_plot, name="plot"),
]

"""REST API routes of the mlmodel app (under /api/ml/)."""

from django.urls import path

from mlmodel.api import views

app_name = "ml-api"
urlpatterns = [
    path("ml/models/state/", views.ModelStateApi.as_view(), name="model-state"),
    path("ml/models/active/", views.ActiveModelApi.as_view(), name="model-active"),
    path("ml/predictions/latest/", views.LatestPredictionApi.as_view(), name="prediction-latest"),
]

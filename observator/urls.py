"""URL root: pages, the REST API under /api/, the OpenAPI schema and the admin."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core import views as core_views

api_patterns = [
    path("", include("accounts.api.urls")),
    path("", include("market.api.urls")),
    path("", include("mlmodel.api.urls")),
    path("", include("trading.api.urls")),
    path("", include("autotrade.api.urls")),
]

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include(api_patterns)),
    # Any other /api/.../ path (an id past the database's range included) is a JSON 404, with DEBUG on too.
    re_path(r"^api/.+/$", core_views.api_not_found),
    path("", include("core.urls")),
    path("", include("accounts.urls")),
    path("", include("market.urls")),
    path("", include("mlmodel.urls")),
    path("", include("trading.urls")),
]
# JSON error bodies under /api/ (an unmatched /api/ path is a JSON 404, not an HTML page).
handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.page_not_found"
handler500 = "core.views.server_error"

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

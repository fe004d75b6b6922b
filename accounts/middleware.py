"""The logged-in user's language: applied when the browser has not chosen one, saved when they switch."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import translation

from accounts.services import user_update_profile


class UserLanguageMiddleware:
    """Sits after AuthenticationMiddleware.

    - No language cookie yet (new browser): use the user's saved ``preferred_language``.
    - A switch through Django's ``set_language`` view (/i18n/setlang/) while logged in is saved on the user,
      so the choice follows them to other browsers and into e-mails.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._set_language_path: str | None = None

    def _is_set_language(self, request: HttpRequest) -> bool:
        if self._set_language_path is None:
            self._set_language_path = reverse("set_language")
        return request.method == "POST" and request.path == self._set_language_path

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        authenticated = user is not None and user.is_authenticated
        if authenticated and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES and user.preferred_language:
            translation.activate(user.preferred_language)
            request.LANGUAGE_CODE = user.preferred_language
        response = self.get_response(request)
        if authenticated and self._is_set_language(request) and response.status_code in (200, 204, 302):
            language = request.POST.get("language", "")
            if translation.check_for_language(language) and language in dict(settings.LANGUAGES):
                user_update_profile(user=user, data={"preferred_language": language})
        return response

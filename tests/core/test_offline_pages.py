"""Every page works offline: no script, stylesheet, icon, image or CSS url() from outside the site.

The pages are rendered as a visitor, a logged-in user and an admin (every admin changelist, add form and a
change form of every model that has a row); the site's own CSS files they link are read too. A browser
check loads /api/docs/ in Chromium with every request outside the site refused and requires Swagger UI to
render with no failed request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib import admin
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.services import exchange_credential_save
from tests.accounts.factories import UserFactory, upbit_key

pytestmark = pytest.mark.django_db

CSS_URL_RE = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""")
# Routes the walk skips: the REST API (JSON), the admin (walked through its registry), machine endpoints.
SKIP_PREFIXES = ("api/", "admin/", "internal/", "i18n/", "healthz", "logout", "favicon.ico")
# Pages that must have been rendered and checked, so that the walk cannot pass by finding nothing.
MUST_CHECK = {"/signup", "/login", "/home", "/profile", "/trade", "/model", "/api/docs/"}


class _AssetParser(HTMLParser):
    """Collects the URLs a browser would fetch on its own: scripts, links, images, media, CSS url()."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed", "input") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"])
        if tag in ("img", "source") and a.get("srcset"):
            self.urls += [part.strip().split(" ")[0] for part in a["srcset"].split(",") if part.strip()]
        if tag == "object" and a.get("data"):
            self.urls.append(a["data"])
        if a.get("style"):
            self.urls += css_urls(a["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += css_urls(data)


def css_urls(css: str) -> list[str]:
    return [m.group(2) or m.group(4) for m in CSS_URL_RE.finditer(css)]


def is_outside(url: str) -> bool:
    parts = urlsplit(url.strip())
    if parts.scheme in ("data", "blob"):
        return False
    return bool(parts.netloc) and parts.netloc != "testserver" or parts.scheme not in ("", "http", "https")


def static_css_urls(url: str) -> list[str]:
    """url() and @import of one of the site's own stylesheets (found by the static finders)."""
    path = urlsplit(url).path
    if not (path.startswith("/static/") and path.endswith(".css")):
        return []
    found = finders.find(path.removeprefix("/static/"))
    return css_urls(Path(found).read_text(encoding="utf-8")) if found else []


def outside_assets(html: str) -> list[str]:
    parser = _AssetParser()
    parser.feed(html)
    urls = list(parser.urls)
    for url in parser.urls:
        urls += static_css_urls(url)
    return [u for u in urls if is_outside(u)]


def missing_static(html: str) -> list[str]:
    parser = _AssetParser()
    parser.feed(html)
    return [
        u
        for u in parser.urls
        if urlsplit(u).path.startswith("/static/")
        and not finders.find(urlsplit(u).path.removeprefix("/static/"))
    ]


def simple_routes() -> Iterator[str]:
    """Every parameterless route of the site (outside SKIP_PREFIXES), as an absolute path."""

    def walk(patterns: list, prefix: str) -> Iterator[str]:
        for p in patterns:
            route = str(p.pattern)
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + route)
            elif isinstance(p, URLPattern):
                full = prefix + route
                if re.search(r"[<^$(\\]", full) or full.startswith(SKIP_PREFIXES):
                    continue
                yield "/" + full

    yield from walk(get_resolver().url_patterns, "")


def admin_urls() -> Iterator[str]:
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        yield reverse("admin:{}_{}_changelist".format(*info))
        if model_admin.has_add_permission(_FakeRequest()):
            yield reverse("admin:{}_{}_add".format(*info))
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            yield reverse("admin:{}_{}_change".format(*info), args=[first.pk])


class _FakeRequest:
    """Just enough of a request for ModelAdmin.has_add_permission (a superuser asks)."""

    class user:  # noqa: N801
        is_active = is_staff = is_superuser = True

        @staticmethod
        def has_perm(*_args: object) -> bool:
            return True


def check_pages(client: Client, urls: list[str]) -> set[str]:
    checked: set[str] = set()
    problems: list[str] = []
    for url in urls:
        response = client.get(url)
        assert response.status_code in (200, 302, 405), f"{url} answered {response.status_code}"
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        html = response.content.decode()
        problems += [f"{url}: outside asset {u}" for u in outside_assets(html)]
        problems += [f"{url}: missing static file {u}" for u in missing_static(html)]
        checked.add(url)
    assert not problems, "\n".join(problems)
    return checked


def test_the_asset_check_catches_outside_urls():
    html = (
        '<link rel="stylesheet" href="https://cdn.example.com/x.css">'
        '<script src="//cdn.example.com/a.js"></script>'
        '<img src="/static/ok.png"><div style="background:url(https://e.example/i.png)"></div>'
        "<style>@import 'http://fonts.example/f.css';</style><img src=\"data:image/png;base64,AA==\">"
    )
    assert outside_assets(html) == [
        "https://cdn.example.com/x.css",
        "//cdn.example.com/a.js",
        "https://e.example/i.png",
        "http://fonts.example/f.css",
    ]


def test_every_page_loads_only_assets_of_the_site(client: Client, settings, tmp_path: Path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    routes = sorted(set(simple_routes()) | {"/api/docs/"})
    checked = check_pages(client, routes)  # a visitor

    user = UserFactory()
    exchange_credential_save(user=user, access_key=upbit_key(), secret_key=upbit_key())
    client.force_login(user)
    checked |= check_pages(client, routes)

    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    admin_pages = [reverse("admin:index"), *admin_urls()]
    checked |= check_pages(client, routes + admin_pages)

    assert checked >= MUST_CHECK, f"not rendered: {MUST_CHECK - checked}"
    user_change = reverse("admin:accounts_user_change", args=[user.pk])
    assert user_change in checked and reverse("admin:index") in checked


def test_favicon_is_linked_and_served(client: Client):
    html = client.get("/login").content.decode()
    assert 'rel="icon"' in html and "/static/favicon.svg" in html
    assert finders.find("favicon.svg")
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.svg"


@pytest.mark.e2e
@pytest.mark.live
def test_api_docs_render_swagger_ui_offline(page, asgi_server: str, artifacts_dir: Path):
    site = urlsplit(asgi_server).netloc
    outside: list[str] = []
    failed: list[str] = []

    def route(r):  # noqa: ANN001, ANN202 - refuse everything off the site, as an offline browser would
        if urlsplit(r.request.url).netloc != site and not r.request.url.startswith("data:"):
            outside.append(r.request.url)
            return r.abort()
        return r.continue_()

    page.route("**/*", route)
    page.on("requestfailed", lambda req: failed.append(req.url))
    page.on("response", lambda resp: resp.status >= 400 and failed.append(f"{resp.status} {resp.url}"))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .information-container .title", timeout=20_000)
    assert "OBservator API" in page.locator(".swagger-ui .title").first.inner_text()
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)  # the operations, from /api/schema/
    page.screenshot(path=str(artifacts_dir / "api-docs-offline.png"))
    assert not outside, f"requests outside the site: {outside}"
    assert not failed, f"failed requests: {failed}"
    assert not errors, f"page errors: {errors}"

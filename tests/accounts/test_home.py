"""Home page and the chrome every page shares: brand, navigation, language switch."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_home_shows_brand_and_buttons_to_profile_and_trade(logged_in: Client):
    html = logged_in.get("/home").content.decode()
    assert "OBservator" in html and "a new measure for crypto investing" in html
    assert 'class="btn btn-primary btn-lg" href="/profile"' in html
    assert 'href="/trade"' in html


def test_home_for_visitors_offers_signup_and_login(client: Client):
    html = client.get("/home").content.decode()
    assert 'href="/signup"' in html and 'href="/login"' in html
    assert 'action="/logout"' not in html


def test_root_redirects_home(client: Client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/home"


@pytest.mark.parametrize("path", ["/home", "/profile"])
def test_navigation_with_profile_trade_home_logout_and_language_switch_on_every_page(logged_in: Client, path):
    html = logged_in.get(path).content.decode()
    for link in (
        'href="/home"',
        'href="/trade"',
        'href="/profile"',
        'action="/logout"',
        'action="/i18n/setlang/"',
        'value="ko"',
        'value="en"',
    ):
        assert link in html, (path, link)
    assert 'aria-current="page"' in html


@pytest.mark.parametrize("path", ["/signup", "/login", "/home"])
def test_visitor_pages_have_nav_and_language_switch(client: Client, path):
    html = client.get(path).content.decode()
    assert 'class="nav"' in html and 'action="/i18n/setlang/"' in html


def test_simulated_market_banner_is_shown_when_simulated(client: Client, settings):
    settings.MARKET_SIMULATED = True
    assert 'data-testid="simulated-banner"' in client.get("/home").content.decode()
    settings.MARKET_SIMULATED = False
    assert 'data-testid="simulated-banner"' not in client.get("/home").content.decode()

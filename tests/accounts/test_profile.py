"""Profile page: account details, saving/replacing/removing Upbit keys, extra sections from other apps."""

from __future__ import annotations

import pytest
from django.http import HttpRequest
from django.test import Client
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from accounts.models import ExchangeCredential
from accounts.selectors import exchange_credentials_get
from tests.accounts.factories import ExchangeCredentialFactory, upbit_key

pytestmark = pytest.mark.django_db


def test_profile_requires_login(client: Client):
    response = client.get("/profile")
    assert response.status_code == 302 and response["Location"].startswith("/login?next=/profile")


def test_profile_shows_username_email_join_date_and_no_keys(logged_in: Client, user):
    html = logged_in.get("/profile").content.decode()
    assert user.username in html and user.email in html
    assert "Joined" in html and user.date_joined.strftime("%Y") in html
    assert "Not stored" in html
    assert '<dialog id="keys-help-dialog"' in html
    for step in ("My page", "Open API management", "IP addresses"):
        assert step in html
    assert 'href="/home"' in html  # back to home


def test_saving_keys_encrypts_them_and_shows_only_a_hint(logged_in: Client, user):
    access, secret = upbit_key(), upbit_key()
    response = logged_in.post("/profile", {"access_key": access, "secret_key": secret})
    assert response.status_code == 302
    assert exchange_credentials_get(user=user) == (access, secret)
    html = logged_in.get("/profile").content.decode()
    assert "Stored" in html
    assert f"{access[:4]}…{access[-4:]}" in html
    assert access not in html and secret not in html
    assert secret[:8] not in html and secret[-8:] not in html
    assert "The secret key is never shown again." in html


def test_saving_again_replaces_the_keys(logged_in: Client, user):
    ExchangeCredentialFactory(user=user)
    access, secret = upbit_key(), upbit_key()
    logged_in.post("/profile", {"access_key": access, "secret_key": secret})
    assert ExchangeCredential.objects.filter(user=user).count() == 1
    assert exchange_credentials_get(user=user) == (access, secret)


@pytest.mark.parametrize(
    ("access", "secret", "field", "message"),
    [
        ("", "S" * 40, "access_key", "Enter your Upbit access key."),
        ("A" * 40, "", "secret_key", "Enter your Upbit secret key."),
        ("A" * 39, "S" * 40, "access_key", "exactly 40 letters and digits"),
        ("A" * 40, "S" * 39 + "!", "secret_key", "exactly 40 letters and digits"),
        ("A" * 41, "S" * 40, "access_key", "exactly 40 letters and digits"),
        ("A" * 40, "A" * 40, "secret_key", "must differ from the access key"),
    ],
)
def test_bad_keys_get_a_clear_message_store_nothing_and_are_not_echoed(
    logged_in: Client, user, access, secret, field, message
):
    response = logged_in.post("/profile", {"access_key": access, "secret_key": secret})
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html.split(f'data-testid="errors-{field}"')[1].split("</ul>")[0]
    assert not ExchangeCredential.objects.filter(user=user).exists()
    for value in (access, secret):
        if value:
            assert f'value="{value}"' not in html


def test_removing_keys(logged_in: Client, user):
    ExchangeCredentialFactory(user=user)
    response = logged_in.post("/profile/keys/delete")
    assert response.status_code == 302
    assert not ExchangeCredential.objects.filter(user=user).exists()
    assert logged_in.get("/profile/keys/delete").status_code == 405


def test_updating_contact_details(logged_in: Client, user):
    response = logged_in.post(
        "/profile/settings", {"email": "New@Gmail.com", "phone": "01055556666", "email_opt_in": "on"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.email, user.phone, user.email_opt_in) == ("new@gmail.com", "010-5555-6666", True)
    response = logged_in.post("/profile/settings", {"email": "x@y.z", "phone": "999"})
    assert response.status_code == 400
    assert "010-1234-5678" in response.content.decode().split('data-testid="errors-phone"')[1]


# --- PROFILE_SECTIONS: how the trading app adds holdings and the e-mail report ------------------------------
def holdings_section(request: HttpRequest) -> str:
    return format_html('<section class="card" id="holdings">Holdings of {}</section>', request.user.username)


def unsafe_section(request: HttpRequest) -> str:
    return "<script>alert(1)</script>"


def broken_section(request: HttpRequest) -> str:
    raise RuntimeError("exchange down")


def report_section(request: HttpRequest) -> str:
    return mark_safe('<section class="card" id="report">Send to my e-mail</section>')


def test_profile_sections_render_in_order_escaped_when_unsafe_and_isolated_when_broken(
    logged_in: Client, user, settings
):
    prefix = "tests.accounts.test_profile."
    settings.PROFILE_SECTIONS = [
        prefix + name for name in ("holdings_section", "unsafe_section", "broken_section", "report_section")
    ]
    response = logged_in.get("/profile")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<section class="card" id="holdings">Holdings of {user.username}</section>' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "This section is unavailable right now." in html
    assert html.index('id="holdings"') < html.index('id="report"')

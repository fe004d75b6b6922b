"""Django admin for users and credentials: key material is never visible nor editable there."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from accounts.selectors import exchange_credentials_get
from tests.accounts.factories import ExchangeCredentialFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client) -> Client:
    admin = UserFactory(username="siteadmin", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def test_admin_pages_show_the_hint_but_never_the_keys(admin_client: Client):
    credential = ExchangeCredentialFactory()
    access, secret = exchange_credentials_get(user=credential.user)
    pages = [
        "/admin/accounts/user/",
        f"/admin/accounts/user/{credential.user_id}/change/",
        "/admin/accounts/exchangecredential/",
        f"/admin/accounts/exchangecredential/{credential.pk}/change/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        for value in (access, secret, credential.access_key_encrypted, credential.secret_key_encrypted):
            assert value not in html, page
        assert 'name="access_key_encrypted"' not in html and 'name="secret_key_encrypted"' not in html
    assert credential.access_key_hint in admin_client.get(pages[2]).content.decode()
    assert admin_client.get("/admin/accounts/exchangecredential/add/").status_code == 403


def test_admin_can_remove_a_users_keys(admin_client: Client):
    credential = ExchangeCredentialFactory()
    response = admin_client.post(
        f"/admin/accounts/exchangecredential/{credential.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert exchange_credentials_get(user=credential.user) is None


def test_admin_user_creation_applies_the_username_rule(admin_client: Client):
    data = {
        "username": "bad_name!",
        "email": "a@b.com",
        "password1": "Adm1n!pass",
        "password2": "Adm1n!pass",
        "usable_password": "true",
    }
    response = admin_client.post("/admin/accounts/user/add/", data)
    assert response.status_code == 200 and not User.objects.filter(username="bad_name!").exists()
    data["username"] = "goodname1"
    response = admin_client.post("/admin/accounts/user/add/", data)
    assert response.status_code == 302 and User.objects.filter(username="goodname1").exists()

"""Log-in, lockout after repeated failures, log-out by POST only, Argon2 hashing."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.accounts.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
GENERIC = "The username or password is incorrect."


def test_login_page_links_to_signup(client: Client):
    html = client.get("/login").content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert 'href="/signup"' in html


def test_login_with_username_and_password_goes_home(client: Client, user):
    response = client.post("/login", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/home"
    assert client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.parametrize("case", ["wrong-password", "unknown-user", "inactive-user"])
def test_failure_message_never_says_which_part_was_wrong(client: Client, user, case: str):
    username, password = user.username, "Wrong!pass1"
    if case == "unknown-user":
        username = "nobodyhere"
    if case == "inactive-user":
        user.is_active = False
        user.save()
        password = PASSWORD
    response = client.post("/login", {"username": username, "password": password})
    html = response.content.decode()
    assert response.status_code == 200
    assert GENERIC in html
    for revealing in ("does not exist", "no such user", "Wrong password", "inactive"):
        assert revealing.lower() not in html.lower()
    assert "_auth_user_id" not in client.session


def test_lockout_after_five_failures_with_a_clear_message_even_for_the_right_password(client: Client, user):
    for _ in range(4):
        response = client.post("/login", {"username": user.username, "password": "Wrong!pass1"})
        assert response.status_code == 200 and GENERIC in response.content.decode()
    response = client.post("/login", {"username": user.username, "password": "Wrong!pass1"})
    assert response.status_code == 429
    html = response.content.decode()
    assert "Too many failed login attempts" in html
    assert "Try again in 15 minutes." in html
    assert 'class="nav"' in html  # a proper page with the site chrome
    response = client.post("/login", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_lockout_of_one_user_does_not_lock_another(client: Client, user, other_user):
    for _ in range(5):
        client.post("/login", {"username": user.username, "password": "Wrong!pass1"})
    response = client.post("/login", {"username": other_user.username, "password": PASSWORD})
    assert response.status_code == 302


def test_logout_by_get_is_refused(client: Client, user):
    client.force_login(user)
    response = client.get("/logout")
    assert response.status_code == 405
    assert client.session.get("_auth_user_id") == str(user.pk)


def test_logout_by_post_ends_the_session(client: Client, user):
    client.force_login(user)
    response = client.post("/logout")
    assert response.status_code == 302 and response["Location"] == "/login"
    assert "_auth_user_id" not in client.session
    assert client.get("/profile").status_code == 302


def test_logout_requires_the_csrf_token():
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(UserFactory())
    assert csrf_client.post("/logout").status_code == 403


def test_passwords_are_hashed_with_argon2_outside_tests():
    from observator.settings import base

    assert base.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    with override_settings(PASSWORD_HASHERS=base.PASSWORD_HASHERS):
        user = UserFactory(password="Argon!2pass")
        assert user.password.startswith("argon2$")
        assert user.check_password("Argon!2pass")

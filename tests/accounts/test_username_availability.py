"""The live duplicate check behind the sign-up page: public, translated, throttled."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/accounts/username-availability"


def test_free_username_is_available(client: Client):
    response = client.get(URL, {"username": "freename1"})
    assert response.status_code == 200
    assert response.json() == {
        "username": "freename1",
        "available": True,
        "reason": "available",
        "message": "This username is available.",
    }


def test_taken_username_is_reported_case_insensitively(client: Client):
    UserFactory(username="Existing1")
    body = client.get(URL, {"username": "existing1"}).json()
    assert body["available"] is False and body["reason"] == "taken"
    assert body["message"] == "This username is already taken."


@pytest.mark.parametrize("username", ["abc", "a" * 21, "with_underscore", "space name", "", "한글이름"])
def test_invalid_username_is_never_available(client: Client, username: str):
    body = client.get(URL, {"username": username}).json()
    assert body["available"] is False and body["reason"] == "invalid"


def test_missing_parameter_is_a_clear_400(client: Client):
    response = client.get(URL)
    assert response.status_code == 400
    assert "username" in response.json()["error"]["fields"]


def test_message_follows_the_language(client: Client):
    UserFactory(username="Existing1")
    client.cookies["django_language"] = "ko"
    body = client.get(URL, {"username": "existing1"}).json()
    assert body["message"] == "이미 사용 중인 아이디입니다."


def test_check_is_throttled_per_address(client: Client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "username_check": "3/min",
        },
    }
    codes = [client.get(URL, {"username": f"name{i}xx"}).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]


def test_signup_script_requires_a_passing_check_before_submit(client: Client):
    # The page wires the script; the script blocks submit until the check for the current name passed.
    html = client.get("/signup").content.decode()
    assert "js/accounts/signup.js" in html
    script = b"".join(client.get("/static/js/accounts/signup.js").streaming_content).decode()
    assert 'addEventListener("submit"' in script and "event.preventDefault()" in script
    assert "state.available" in script

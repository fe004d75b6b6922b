"""Sign-up page: every rule has its own message next to its field, and no violation creates anything."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError

from accounts.models import User
from accounts.services import user_create
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db


def valid_data(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "username": "newtrader1",
        "email_local": "new.trader",
        "email_domain": "naver.com",
        "email_domain_custom": "",
        "phone": "010-1234-5678",
        "password1": "Tr4de!Safe",
        "password2": "Tr4de!Safe",
        "privacy_consent": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def field_errors(html: str, field: str) -> str:
    match = re.search(rf'data-testid="errors-{field}">(.*?)</ul>', html, re.S)
    return match.group(1) if match else ""


def test_signup_page_has_every_field_the_domain_picker_the_terms_popup_and_a_login_link(client):
    html = client.get("/signup").content.decode()
    for name in (
        "username",
        "email_local",
        "email_domain",
        "email_domain_custom",
        "phone",
        "password1",
        "password2",
        "privacy_consent",
        "email_opt_in",
    ):
        assert f'name="{name}"' in html, name
    for domain in ("naver.com", "gmail.com", "daum.net", "kakao.com", "hanmail.net"):
        assert f'<option value="{domain}"' in html
    assert '<option value="custom">Enter directly</option>' in html
    assert '<dialog id="terms-dialog"' in html and 'data-dialog-open="terms-dialog"' in html
    assert 'data-availability-url="/api/accounts/username-availability"' in html
    assert 'href="/login"' in html


def test_valid_signup_creates_the_user_with_consent_time_and_logs_in(client):
    response = client.post("/signup", valid_data(email_opt_in="on"))
    assert response.status_code == 302 and response["Location"] == "/home"
    user = User.objects.get(username="newtrader1")
    assert user.email == "new.trader@naver.com"
    assert user.phone == "010-1234-5678"
    assert user.privacy_consent and user.privacy_consent_at is not None
    assert user.email_opt_in is True
    assert user.check_password("Tr4de!Safe") and not user.password.startswith("Tr4de")
    assert client.get("/profile").status_code == 200  # logged in


def test_custom_domain_and_phone_without_hyphens_are_combined_server_side(client):
    response = client.post(
        "/signup", valid_data(email_domain="custom", email_domain_custom="Company.co.kr", phone="01099998888")
    )
    assert response.status_code == 302
    user = User.objects.get(username="newtrader1")
    assert user.email == "new.trader@company.co.kr"
    assert user.phone == "010-9999-8888"
    assert user.email_opt_in is False


VIOLATIONS = [
    ("username-missing", {"username": ""}, "username", "Enter a username."),
    ("username-short", {"username": "abc"}, "username", "Use 4 to 20 letters or digits"),
    ("username-long", {"username": "a" * 21}, "username", "Use at most 20 characters."),
    ("username-special", {"username": "abc_def"}, "username", "Use 4 to 20 letters or digits"),
    ("username-space", {"username": "abc def"}, "username", "Use 4 to 20 letters or digits"),
    ("username-hangul", {"username": "사용자이름"}, "username", "Use 4 to 20 letters or digits"),
    ("email-missing", {"email_local": ""}, "email", "Enter your e-mail address."),
    ("email-with-at", {"email_local": "me@naver.com"}, "email", "Enter only the part before @"),
    ("email-bad-chars", {"email_local": "me you"}, "email", "Enter a valid e-mail address."),
    ("domain-unknown", {"email_domain": "evil.com"}, "email", "Choose an e-mail domain."),
    ("custom-domain-empty", {"email_domain": "custom"}, "email", "Enter the e-mail domain"),
    (
        "custom-domain-bad",
        {"email_domain": "custom", "email_domain_custom": "nodot"},
        "email",
        "Enter a valid domain",
    ),
    ("phone-missing", {"phone": ""}, "phone", "Enter your mobile number."),
    ("phone-not-010", {"phone": "011-1234-5678"}, "phone", "010-1234-5678"),
    ("phone-short", {"phone": "010-123-5678"}, "phone", "010-1234-5678"),
    ("password-missing", {"password1": "", "password2": ""}, "password1", "Enter a password."),
    ("password-short", {"password1": "Ab1!", "password2": "Ab1!"}, "password1", "8 to 16 characters"),
    (
        "password-long",
        {"password1": "Abcdefgh1234567!x", "password2": "Abcdefgh1234567!x"},
        "password1",
        "8 to 16 characters",
    ),
    (
        "password-no-special",
        {"password1": "Abcd1234efgh", "password2": "Abcd1234efgh"},
        "password1",
        "special character",
    ),
    (
        "password-like-username",
        {"password1": "newtrader1!", "password2": "newtrader1!"},
        "password1",
        "too similar",
    ),
    ("password-common", {"password1": "password1!", "password2": "password1!"}, "password1", "too common"),
    ("password-mismatch", {"password2": "Tr4de!Other"}, "password2", "The two passwords do not match."),
    ("confirm-missing", {"password2": ""}, "password2", "Enter the password again."),
    (
        "no-consent",
        {"privacy_consent": None},
        "privacy_consent",
        "You must agree to the collection and use of personal data.",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "field", "message"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_each_signup_rule_shows_its_own_message_next_to_its_field_and_creates_nothing(
    client, overrides, field, message
):
    before = User.objects.count()
    response = client.post("/signup", valid_data(**overrides))
    assert response.status_code == 400
    html = response.content.decode()
    assert message in field_errors(html, field), html
    assert User.objects.count() == before
    assert "_auth_user_id" not in client.session


def test_taken_username_case_insensitively_is_refused(client):
    UserFactory(username="TakenName")
    response = client.post("/signup", valid_data(username="takenname"))
    assert response.status_code == 400
    assert "This username is already taken." in field_errors(response.content.decode(), "username")
    assert User.objects.count() == 1


def test_all_violations_at_once_each_get_their_message(client):
    response = client.post(
        "/signup",
        {
            "username": "a!",
            "email_local": "",
            "email_domain": "naver.com",
            "phone": "123",
            "password1": "short",
            "password2": "other",
        },
    )
    html = response.content.decode()
    for field in ("username", "email", "phone", "password1", "password2", "privacy_consent"):
        assert field_errors(html, field), field
    assert User.objects.count() == 0


def test_submitted_password_is_not_echoed_back_on_error(client):
    response = client.post("/signup", valid_data(username="x"))
    assert "Tr4de!Safe" not in response.content.decode()


def test_user_create_service_checks_every_rule_itself():
    with pytest.raises(ValidationError) as info:
        user_create(
            username="ab", email="not-an-email", phone="02-123", password="weak", privacy_consent=False
        )
    assert set(info.value.message_dict) == {"username", "email", "phone", "password", "privacy_consent"}
    assert User.objects.count() == 0


def test_user_create_service_stores_consent_time_and_language():
    user = user_create(
        username="serviceuser",
        email="s@daum.net",
        phone="01011112222",
        password="Gr8!pass",
        privacy_consent=True,
        preferred_language="ko",
    )
    assert user.privacy_consent_at is not None
    assert user.preferred_language == "ko"
    assert user.phone == "010-1111-2222"


def test_empty_post_shows_required_messages(client):
    response = client.post("/signup", {})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Enter a username." in field_errors(html, "username")
    assert User.objects.count() == 0


def test_logged_in_users_are_sent_home_from_signup(client):
    client.force_login(UserFactory())
    response = client.get("/signup")
    assert response.status_code == 302 and response["Location"] == "/home"


def test_an_e_mail_another_account_uses_is_refused_case_insensitively(client):
    UserFactory(username="firstowner", email="Owner@Naver.com")
    response = client.post("/signup", valid_data(email_local="OWNER", email_domain="naver.com"))
    assert response.status_code == 400
    assert "Another account already uses this e-mail address." in field_errors(
        response.content.decode(), "email"
    )
    assert User.objects.count() == 1


def test_user_create_service_refuses_a_taken_e_mail_itself():
    UserFactory(username="firstowner", email="owner@daum.net")
    with pytest.raises(ValidationError) as info:
        user_create(
            username="secondowner",
            email=" OWNER@daum.net ",
            phone="01011112222",
            password="Gr8!pass",
            privacy_consent=True,
        )
    assert info.value.message_dict == {"email": ["Another account already uses this e-mail address."]}
    assert User.objects.count() == 1


@pytest.mark.parametrize("password", ["Ab1!", "abc", "1234567", "Abcdefgh1234567!x"])
def test_a_password_of_the_wrong_length_gets_one_message(client, password):
    response = client.post("/signup", valid_data(password1=password, password2=password))
    errors = field_errors(response.content.decode(), "password1")
    assert errors.count("<li>") == 1, errors
    assert "Password must be 8 to 16 characters long." in errors


def test_user_create_service_reports_one_password_message():
    with pytest.raises(ValidationError) as info:
        user_create(
            username="serviceuser",
            email="s@daum.net",
            phone="01011112222",
            password="1234",
            privacy_consent=True,
        )
    assert info.value.message_dict == {"password": ["Password must be 8 to 16 characters long."]}

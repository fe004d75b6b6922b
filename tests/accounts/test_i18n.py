"""English/Korean: every account page renders fully in Korean, and the choice is saved on the user."""

from __future__ import annotations

import gettext
import re
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.test import Client

from tests.accounts.factories import PASSWORD, ExchangeCredentialFactory, UserFactory

pytestmark = pytest.mark.django_db

LOCALE = Path(settings.BASE_DIR) / "locale" / "ko" / "LC_MESSAGES"
OWNED = ("accounts/", "templates/accounts/", "templates/base.html", "templates/partials/")
# Shown identically in both languages on purpose: the brand, the language names, data and formats.
SAME_IN_BOTH = {
    "OBservator",
    "English",
    "한국어",
    "@",
    "×",
    "◎",
    "—",
    "••••••••••••",
    "010-1234-5678",
    "example.com",
    "naver.com",
    "gmail.com",
    "daum.net",
    "kakao.com",
    "hanmail.net",
}
TEXT_ATTRIBUTES = ("placeholder", "aria-label", "title", "alt", "data-confirm")


class _VisibleText(HTMLParser):
    """Text a person reads: text nodes outside script/style, plus labels carried in attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: set[str] = set()
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if value and (name in TEXT_ATTRIBUTES or name.startswith("data-msg-")):
                self._add(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._add(data)

    def _add(self, text: str) -> None:
        text = " ".join(text.split())
        if re.search(r"[A-Za-z]{2,}", text):
            self.texts.add(text)


def visible_texts(html: str) -> set[str]:
    parser = _VisibleText()
    parser.feed(html)
    return parser.texts


def _in(language: str, client: Client) -> Client:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return client


def _pages(client: Client, user) -> dict[str, str]:  # noqa: ANN001
    """Every page and state of the accounts section, rendered with the client's current language."""
    pages = {
        "signup": client.get("/signup"),
        "signup-errors": client.post(
            "/signup",
            {
                "username": "a!",
                "email_domain": "custom",
                "phone": "1",
                "password1": "password",
                "password2": "x",
            },
        ),
        "login": client.get("/login"),
        "login-failed": client.post("/login", {"username": user.username, "password": "Wrong!pass1"}),
        "home-visitor": client.get("/home"),
    }
    for _ in range(4):
        client.post("/login", {"username": "lockme", "password": "Wrong!pass1"})
    pages["lockout"] = client.post("/login", {"username": "lockme", "password": "Wrong!pass1"})
    client.force_login(user)
    pages["home"] = client.get("/home")
    pages["profile"] = client.get("/profile")
    pages["profile-key-errors"] = client.post("/profile", {"access_key": "short", "secret_key": ""})
    pages["profile-settings-errors"] = client.post("/profile/settings", {"email": "bad", "phone": "1"})
    pages["profile-saved"] = client.post("/profile/keys/delete", follow=True)
    client.logout()
    return {name: response.content.decode() for name, response in pages.items()}


@pytest.fixture
def user_with_keys():
    user = UserFactory(username="hangeul1", email="hangeul1@naver.com")
    ExchangeCredentialFactory(user=user)
    return user


def test_every_account_page_is_fully_korean(user_with_keys, settings):
    settings.PROFILE_SECTIONS = []  # sections other apps add are theirs to translate
    user = user_with_keys
    english = _pages(_in("en", Client()), user)
    ExchangeCredentialFactory(user=user)  # the English pass removed the keys
    korean = _pages(_in("ko", Client()), user)
    allowed = SAME_IN_BOTH | {user.username, user.email, user.phone}
    for name, html in korean.items():
        assert '<html lang="ko">' in html, name
        assert re.search(r"[가-힣]", html), name
        untranslated = (visible_texts(english[name]) & visible_texts(html)) - allowed
        untranslated = {t for t in untranslated if not re.fullmatch(r"[A-Za-z0-9]{4}…[A-Za-z0-9]{4}", t)}
        assert not untranslated, (name, untranslated)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/signup", ["계정 만들기", "중복 확인", "직접 입력", "개인정보 수집 및 이용 동의", "회원가입"]),
        ("/login", ["로그인", "아직 계정이 없으신가요?"]),
        ("/home", ["암호화폐 투자의 새로운 기준", "회원가입"]),
    ],
)
def test_korean_strings_on_visitor_pages(client: Client, path: str, expected: list[str]):
    html = _in("ko", client).get(path).content.decode()
    for text in expected:
        assert text in html, text


def test_korean_profile_and_form_errors(client: Client, user_with_keys):
    _in("ko", client).force_login(user_with_keys)
    html = client.get("/profile").content.decode()
    for text in (
        "내 프로필",
        "업비트 API 키",
        "키 발급 방법",
        "저장됨",
        "가입일",
        "로그아웃",
        "Open API 관리를 선택합니다.",
    ):
        assert text in html, text
    html = client.post("/profile", {"access_key": "x" * 39, "secret_key": "y" * 40}).content.decode()
    assert "업비트 키는 영문과 숫자로 된 정확히 40자입니다." in html
    client.logout()
    html = (
        _in("ko", client)
        .post("/signup", {"username": "ab", "password1": "abc", "password2": "abd"})
        .content.decode()
    )
    for text in (
        "공백이나 특수문자 없이",
        "이메일 주소를 입력해 주세요.",
        "휴대폰 번호를 입력해 주세요.",
        "비밀번호가 서로 일치하지 않습니다.",
        "개인정보 수집 및 이용에 동의해야",
    ):
        assert text in html, text


def test_korean_login_failure_and_lockout(client: Client, user):
    _in("ko", client)
    html = client.post("/login", {"username": user.username, "password": "Wrong!pass1"}).content.decode()
    assert "아이디 또는 비밀번호가 올바르지 않습니다." in html
    for _ in range(4):
        response = client.post("/login", {"username": user.username, "password": "Wrong!pass1"})
    assert response.status_code == 429
    assert "15분 뒤에 다시 시도해 주세요." in response.content.decode()


def test_switching_language_while_logged_in_is_saved_on_the_user(client: Client, user):
    client.force_login(user)
    response = client.post("/i18n/setlang/", {"language": "ko", "next": "/profile"})
    assert response.status_code == 302 and response["Location"] == "/profile"
    user.refresh_from_db()
    assert user.preferred_language == "ko"
    assert "내 프로필" in client.get("/profile").content.decode()
    # A new browser (no language cookie) gets the saved language after logging in.
    other_browser = Client()
    other_browser.post("/login", {"username": user.username, "password": PASSWORD})
    assert '<html lang="ko">' in other_browser.get("/home").content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/home"})
    user.refresh_from_db()
    assert user.preferred_language == "en"


def test_switching_language_as_a_visitor_only_sets_the_cookie(client: Client):
    response = client.post("/i18n/setlang/", {"language": "ko", "next": "/signup"})
    assert response.status_code == 302
    assert '<html lang="ko">' in client.get("/signup").content.decode()


def test_signup_stores_the_language_in_use(client: Client):
    _in("ko", client).post(
        "/signup",
        {
            "username": "koreanuser",
            "email_local": "k",
            "email_domain": "daum.net",
            "phone": "010-3333-4444",
            "password1": "Hangul!23",
            "password2": "Hangul!23",
            "privacy_consent": "on",
        },
    )
    from accounts.models import User

    assert User.objects.get(username="koreanuser").preferred_language == "ko"


def test_korean_catalogue_covers_every_accounts_string_and_the_mo_is_compiled():
    po = polib.pofile(str(LOCALE / "django.po"))
    with open(LOCALE / "django.mo", "rb") as fh:
        mo = gettext.GNUTranslations(fh)
    owned = [e for e in po if any(path.startswith(OWNED) for path, _line in e.occurrences)]
    assert len(owned) > 100
    for entry in owned:
        assert "fuzzy" not in entry.flags, entry.msgid
        if entry.msgid_plural:
            assert all(entry.msgstr_plural.values()), entry.msgid
            assert mo.ngettext(entry.msgid, entry.msgid_plural, 2) == entry.msgstr_plural[0], entry.msgid
        else:
            assert entry.msgstr, entry.msgid
            assert mo.gettext(entry.msgid) == entry.msgstr, f"django.mo is stale for {entry.msgid!r}"

"""The whole accounts journey in headless Chromium against the real ASGI server.

Sign up (the live duplicate check must pass before the form submits), switch to Korean, save Upbit keys
(the how-to popup opens), log out, log in again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from accounts.models import User
from accounts.selectors import exchange_credential_status, exchange_credentials_get
from market.upbit_sim.server import SimConfig, SimulatorThread
from tests.accounts.factories import UserFactory, upbit_key

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.e2e, pytest.mark.live]


@pytest.fixture(autouse=True)
def _sim_upbit(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorThread]:
    """The key check of the (subprocess) ASGI server asks this simulator, never the real Upbit. Autouse, so
    it is set up before the server starts and the server inherits UPBIT_REST_URL."""
    with SimulatorThread(SimConfig(markets=["KRW-BTC"], seed=3, tick_ms=50)) as sim:
        monkeypatch.setenv("UPBIT_REST_URL", sim.rest_url)
        yield sim


def test_signup_switch_to_korean_save_keys_log_out_and_in(page, artifacts_dir, _sim_upbit):
    UserFactory(username="takenname")
    expect = playwright_sync.expect
    page.goto("/signup")

    # A taken name: the check says so and the form refuses to submit.
    page.fill("#id_username", "TakenName")
    expect(page.get_by_test_id("username-status")).to_have_text("This username is already taken.")
    page.fill("#id_email_local", "journey")
    page.select_option("#id_email_domain", "custom")
    expect(page.locator("#id_email_domain_custom")).to_be_visible()
    page.fill("#id_email_domain_custom", "example.org")
    page.locator("#id_phone").press_sequentially("01012345678")
    expect(page.locator("#id_phone")).to_have_value("010-1234-5678")
    page.fill("#id_password1", "Tr4de!Safe")
    page.fill("#id_password2", "Tr4de!Safe")
    page.get_by_role("button", name="View terms").click()
    dialog = page.locator("#terms-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Agree").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#id_privacy_consent")).to_be_checked()
    page.get_by_role("button", name="Sign up", exact=True).click()
    page.wait_for_timeout(500)
    assert page.url.endswith("/signup")
    page.screenshot(path=str(artifacts_dir / "accounts-signup-blocked.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(artifacts_dir / "accounts-signup-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 720})
    assert not User.objects.filter(username__iexact="journey1").exists()

    # A free name: the check passes and the form goes through.
    page.fill("#id_username", "journey1")
    expect(page.get_by_test_id("username-status")).to_have_text("This username is available.")
    page.get_by_role("button", name="Sign up", exact=True).click()
    page.wait_for_url(re.compile(r"/home$"))
    user = User.objects.get(username="journey1")
    assert user.email == "journey@example.org" and user.phone == "010-1234-5678"

    # Switch to Korean: the page and the saved preference change.
    page.get_by_role("button", name="한국어").click()
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page.locator(".hero-tagline")).to_have_text("암호화폐 투자의 새로운 기준")
    user.refresh_from_db()
    assert user.preferred_language == "ko"

    # Save keys on the profile page; the secret never comes back into the page.
    page.get_by_role("link", name="프로필", exact=True).click()
    page.get_by_role("button", name="키 발급 방법").click()
    expect(page.locator("#keys-help-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#keys-help-dialog")).to_be_hidden()
    # Keys Upbit (the simulator here) does not know are refused, in Korean, and not stored.
    page.fill("#id_access_key", upbit_key())
    page.fill("#id_secret_key", upbit_key())
    page.get_by_role("button", name="키 저장").click()
    expect(page.get_by_test_id("key-check")).to_contain_text("invalid_access_key")
    expect(page.locator("#id_save_anyway")).to_be_visible()
    assert exchange_credentials_get(user=user) is None
    # Keys of a real (simulated) account pass the check and are stored.
    access, secret = upbit_key(), upbit_key()
    _sim_upbit.create_account(krw="1000000", access_key=access, secret_key=secret)
    page.fill("#id_access_key", access)
    page.fill("#id_secret_key", secret)
    page.get_by_role("button", name="키 저장").click()
    expect(page.get_by_test_id("key-status")).to_contain_text("저장됨")
    html = page.content()
    assert secret not in html and access not in html
    assert f"{access[:4]}…{access[-4:]}" in html
    assert exchange_credentials_get(user=user) == (access, secret)
    page.screenshot(path=str(artifacts_dir / "accounts-profile-ko.png"), full_page=True)

    # Log out (a POST from the nav), then log back in.
    page.get_by_test_id("logout").click()
    page.wait_for_url(re.compile(r"/login$"))
    page.fill("#id_username", "journey1")
    page.fill("#id_password", "Tr4de!Safe")
    page.get_by_role("button", name="로그인").last.click()
    page.wait_for_url(re.compile(r"/home$"))
    assert exchange_credential_status(user=user).stored

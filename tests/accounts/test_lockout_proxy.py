"""The login lockout counts the real client: X-Forwarded-For is believed only from TRUSTED_PROXIES (uvicorn
and the lockout's own address), and a username locks whatever address the failures come from."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from axes.models import AccessAttempt
from django.test import Client, RequestFactory
from rest_framework.test import APIRequestFactory
from rest_framework.throttling import AnonRateThrottle

from accounts.client_ip import client_ip_get
from core import launcher
from tests import live
from tests.accounts.factories import PASSWORD, UserFactory

TOKEN = "/api/accounts/token/"
WRONG = "Wrong!pass1"


def _ip(settings, proxies: list[str], peer: str, forwarded: str | None = None) -> str | None:  # noqa: ANN001
    settings.TRUSTED_PROXIES = proxies
    meta = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip_get(RequestFactory().get("/", **meta))


# --- the address, unit by unit ----------------------------------------------------------------------------


def test_forwarded_for_from_an_unlisted_peer_is_ignored(settings):
    assert _ip(settings, [], "127.0.0.1", "203.0.113.77") == "127.0.0.1"  # the default: no proxy trusted
    assert _ip(settings, ["10.0.0.0/8"], "192.0.2.10", "203.0.113.77") == "192.0.2.10"
    assert _ip(settings, [], "192.0.2.10") == "192.0.2.10"


def test_a_listed_proxy_forwarded_address_is_honoured(settings):
    assert _ip(settings, ["10.0.0.5/32"], "10.0.0.5", "203.0.113.77") == "203.0.113.77"
    # What the client wrote itself sits left of what the proxy appended: the rightmost untrusted hop counts.
    assert _ip(settings, ["10.0.0.5/32"], "10.0.0.5", "198.51.100.1, 203.0.113.77") == "203.0.113.77"
    # A chain of trusted proxies is walked through.
    assert _ip(settings, ["10.0.0.0/8"], "10.0.0.5", "198.51.100.1, 203.0.113.77, 10.1.2.3") == "203.0.113.77"
    assert _ip(settings, ["::1/128"], "::1", "2001:db8::7") == "2001:db8::7"
    assert _ip(settings, ["10.0.0.5/32"], "10.0.0.5", "203.0.113.77:4711") == "203.0.113.77"
    # Nothing usable forwarded: the proxy itself.
    assert _ip(settings, ["10.0.0.5/32"], "10.0.0.5") == "10.0.0.5"
    assert _ip(settings, ["10.0.0.5/32"], "10.0.0.5", "not-an-address") == "10.0.0.5"


def test_api_throttles_count_the_peer_not_the_header():
    request = APIRequestFactory().post(TOKEN, HTTP_X_FORWARDED_FOR="203.0.113.77", REMOTE_ADDR="192.0.2.10")
    assert AnonRateThrottle().get_ident(request) == "192.0.2.10"


def test_launcher_passes_trusted_proxies_to_uvicorn():
    kw = {
        "host": "127.0.0.1",
        "port": 8000,
        "simulate": False,
        "sim_port": 8765,
        "markets": ["KRW-BTC"],
        "available_commands": {"collect"},
    }
    web = next(s for s in launcher.build_specs(**kw)[0] if s.name == "web").args
    assert (
        "--no-proxy-headers" in web and "--forwarded-allow-ips" not in web
    )  # uvicorn's default trusts 127.0.0.1
    specs, _ = launcher.build_specs(**kw, trusted_proxies=["10.0.0.5/32", "192.0.2.0/24"])
    web = next(s for s in specs if s.name == "web").args
    assert web[web.index("--forwarded-allow-ips") + 1] == "10.0.0.5/32,192.0.2.0/24"
    assert "--no-proxy-headers" not in web


@pytest.mark.django_db
def test_lockout_records_the_address_a_listed_proxy_forwarded(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]  # the test client's peer address
    user = UserFactory()
    Client().post(
        "/login", {"username": user.username, "password": WRONG}, HTTP_X_FORWARDED_FOR="203.0.113.9"
    )
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["203.0.113.9"]


@pytest.mark.django_db
def test_username_locks_across_addresses_in_process(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]
    user = UserFactory()
    client = Client()
    codes = [
        client.post(
            "/login", {"username": user.username, "password": WRONG}, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}"
        ).status_code
        for i in range(1, 6)
    ]
    assert codes == [200, 200, 200, 200, 429]
    r = client.post(
        "/login", {"username": user.username, "password": PASSWORD}, HTTP_X_FORWARDED_FOR="198.51.100.1"
    )
    assert r.status_code == 429 and "_auth_user_id" not in client.session


# --- the real server ----------------------------------------------------------------------------------------


def _token_attempts(base: str, username: str) -> tuple[list[tuple[int, str]], httpx.Response]:
    """Eight wrong passwords, each from a new X-Forwarded-For, then the right one from yet another."""
    out = []
    with httpx.Client(base_url=base, timeout=30.0) as http:
        for i in range(1, 9):
            r = http.post(
                TOKEN,
                json={"username": username, "password": WRONG},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
            out.append((r.status_code, r.json()["error"]["code"]))
        right = http.post(
            TOKEN,
            json={"username": username, "password": PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.1"},
        )
    return out, right


def _login_attempts(base: str, username: str) -> tuple[list[int], httpx.Response, httpx.Client]:
    http = httpx.Client(base_url=base, timeout=30.0)
    codes = []

    def post(password: str, forwarded: str) -> httpx.Response:
        form = http.get("/login").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert token, form[-1000:]
        return http.post(
            "/login",
            data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": password},
            headers={"X-Forwarded-For": forwarded},
        )

    for i in range(1, 7):
        codes.append(post(WRONG, f"203.0.113.{i}").status_code)
    return codes, post(PASSWORD, "198.51.100.1"), http


def _locked(attempts: list[tuple[int, str]]) -> None:
    assert [code for code, _ in attempts[:4]] == [400] * 4
    assert attempts[4:] == [(429, "locked_out")] * 4, attempts


def test_rotating_forwarded_for_never_dodges_the_lock_on_the_real_server(asgi_server):
    user = UserFactory()
    attempts, right = _token_attempts(asgi_server, user.username)
    _locked(attempts)
    assert (
        right.status_code == 429
        and right.json()["error"]["code"] == "locked_out"
        and "token" not in right.text
    )
    # No proxy is trusted by default: every attempt was counted under the connecting address.
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}

    other = UserFactory()
    codes, right, http = _login_attempts(asgi_server, other.username)
    try:
        assert codes == [200, 200, 200, 200, 429, 429]
        assert right.status_code == 429 and "Too many failed login attempts" in right.text
        assert http.get("/profile").status_code == 302  # not logged in: sent to the login page
    finally:
        http.close()


@pytest.fixture
def asgi_server_behind_proxy(transactional_db, tmp_path: Path) -> Iterator[str]:  # noqa: ANN001
    """The real ASGI server told that 127.0.0.1 is its reverse proxy (as the launcher runs it)."""
    port = live.free_port()
    trusted = ["127.0.0.1/32"]
    env = live.child_env({"OBSERVATOR_ROLE": "web", "TRUSTED_PROXIES": ",".join(trusted)})
    args = live.asgi_server_args(port, trusted_proxies=trusted)
    with live.running(args, env=env, log_path=tmp_path / "asgi.log") as proc:
        live.wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=proc)
        yield f"http://127.0.0.1:{port}"


def test_behind_a_listed_proxy_each_client_address_is_seen_and_the_username_still_locks(
    asgi_server_behind_proxy,
):
    user = UserFactory()
    attempts, right = _token_attempts(asgi_server_behind_proxy, user.username)
    _locked(attempts)
    assert right.status_code == 429 and right.json()["error"]["code"] == "locked_out"
    # The proxy's header is believed: the failures are recorded under the addresses it forwarded.
    seen = set(AccessAttempt.objects.filter(username=user.username).values_list("ip_address", flat=True))
    assert {f"203.0.113.{i}" for i in range(1, 5)} <= seen and "127.0.0.1" not in seen

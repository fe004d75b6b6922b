"""The issue's reproductions of bad input against the running server itself (uvicorn with the default local
settings, DEBUG on, the REST API on the web threads of core/asgi_pool.py): a short JSON answer, never a 5xx
and never the debug traceback page. tests/core/test_bad_input.py covers each rule in process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from tests import live

HUGE = "99999999999999999999"


@pytest.fixture
def local_server(transactional_db, tmp_path: Path) -> Iterator[str]:  # noqa: ANN001
    """uvicorn as `python3 dev.py run` serves it: observator.settings.local (DEBUG on by default)."""
    port = live.free_port()
    env = live.child_env(
        {
            "DJANGO_SETTINGS_MODULE": "observator.settings.local",
            "OBSERVATOR_VAR_DIR": str(tmp_path),
            "OBSERVATOR_ROLE": "web",
        }
    )
    env.pop("DEBUG", None)
    with live.running(live.asgi_server_args(port), env=env, log_path=tmp_path / "asgi.log") as proc:
        live.wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=proc)
        yield f"http://127.0.0.1:{port}"


def _json_answer(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    assert len(response.content) < 2000  # not the 150 KB debug page
    return response.json()


def test_the_issues_reproductions_get_short_json_answers_from_the_running_server(local_server: str) -> None:
    user = get_user_model().objects.create_user(username="probe", email="p@example.com", password="x" * 12)
    auth = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    nested = ("[" * 1000 + "]" * 1000).encode()
    with httpx.Client(base_url=local_server, timeout=30) as http:
        # Deep nesting escaped the parser as RecursionError: a 500 and the traceback page.
        body = _json_answer(
            http.post("/api/accounts/token/", content=nested, headers={"Content-Type": "application/json"}),
            400,
        )
        assert "nested" in str(body)
        _json_answer(
            http.post(
                "/api/trading/orders/buy/",
                content=nested,
                headers={**auth, "Content-Type": "application/json"},
            ),
            400,
        )
        # OverflowError on an id past the database's range.
        _json_answer(http.get(f"/api/trading/auto/decisions/?session_id={HUGE}", headers=auth), 400)
        _json_answer(http.get(f"/api/trading/orders/{HUGE}/", headers=auth), 404)
        _json_answer(http.get("/api/nope/", headers=auth), 404)
        # Full-width and Arabic-Indic digits and a sign were placed as 5000.
        for amount in ["５０００", "٥٠٠٠", "+5000"]:
            answer = http.post(
                "/api/trading/orders/buy/", json={"market": "KRW-BTC", "amount_krw": amount}, headers=auth
            )
            assert "amount_krw" in _json_answer(answer, 400)["error"]["fields"]
        # A missing credential: 401 naming the scheme, not 403.
        anonymous = http.get("/api/trading/mode/")
        _json_answer(anonymous, 401)
        assert anonymous.headers["www-authenticate"] == "Token"

"""Bad input never reaches a 5xx: JSON nested deeper than the decoder can follow is a 400 on every parser."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

NESTED = ("[" * 1000 + "]" * 1000).encode()
DEEPER = ('{"username": ' + "[" * 20_000 + "]" * 20_000 + "}").encode()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [NESTED, DEEPER], ids=["1000-deep", "20000-deep"])
def test_nested_json_is_a_400_on_the_unauthenticated_token_endpoint(body: bytes) -> None:
    response = APIClient().post("/api/accounts/token/", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"] or response.json()["error"]["code"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/trading/orders/buy/"),
        ("post", "/api/trading/orders/limit/"),
        ("post", "/api/trading/scheduled-orders/"),
        ("post", "/api/trading/auto/start/"),
        ("put", "/api/trading/mode/"),
        ("put", "/api/trading/risk-limits/"),
        ("put", "/api/accounts/me/exchange-keys/"),
    ],
)
def test_nested_json_is_a_400_for_a_logged_in_user(method: str, path: str) -> None:
    user = get_user_model().objects.create_user(username="nest", password="pw-long-enough-1")
    client = APIClient()
    client.force_authenticate(user)
    response = getattr(client, method)(path, data=NESTED, content_type="application/json")
    assert response.status_code == 400, response.content[:200]

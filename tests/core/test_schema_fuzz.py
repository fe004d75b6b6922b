"""The whole OpenAPI schema under a bounded schemathesis run: every operation, authenticated by token, then
the stateful links between them. No request may get a 5xx, and every answer must match the schema (status
code, content type, body)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone

from tests.trading.conftest import d, other_user, sim, user  # noqa: F401 - fixtures
from trading import services

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(900)]

# Small enough for ~1-2 min on a loaded CI box; derandomized so a failure reproduces. Each operation gets
# schema-valid requests (positive) and requests that break the schema (negative: wrong types, values out of
# range, missing fields), which must be refused with a documented 4xx.
MAX_EXAMPLES = 6
NEGATIVE_EXAMPLES = 4
STATEFUL_STEPS = 12
STATEFUL_EXAMPLES = 8


@pytest.fixture
def wsgi_app(settings: Any) -> Iterator[Any]:
    """The Django WSGI app, keeping the test's connection (and transaction) open between requests like the
    test client does; throttles off so rate limits do not hide what a request would do."""
    from django.core.wsgi import get_wsgi_application

    rates = dict(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"])
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(rates, "100000/min"),
    }
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


class TokenAuth:
    """The test user's API token; DELETE /api/accounts/token/ revokes it, so ``restore`` puts it back before
    the next request (later requests stay authenticated)."""

    def __init__(self, owner: Any) -> None:
        from rest_framework.authtoken.models import Token

        self.user = owner
        self.key = Token.objects.create(user=owner).key
        self.headers = {"Authorization": f"Token {self.key}"}

    def restore(self) -> None:
        from rest_framework.authtoken.models import Token

        if not Token.objects.filter(key=self.key).exists():
            Token.objects.filter(user=self.user).delete()
            Token.objects.create(user=self.user, key=self.key)


@pytest.fixture
def token(user: Any, other_user: Any, sim: Any) -> TokenAuth:  # noqa: F811
    services.order_place(
        user=user, market="KRW-BTC", side="bid", ord_type="limit", price=d(90_000_000), volume=d("0.001")
    )
    services.scheduled_order_create(
        user=other_user,
        market="KRW-BTC",
        side="bid",
        ord_type="price",
        price=d(10_000),
        trigger_type="time",
        trigger_at=timezone.now() + dt.timedelta(hours=1),
    )
    return TokenAuth(user)


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]


def _describe(case: Any, response: Any, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{case.method.upper()} {case.formatted_path} -> {response.status_code}: {first[:300]}"


def test_every_operation_answers_without_a_server_error_and_as_documented(
    wsgi_app: Any,
    token: TokenAuth,
    other_user: Any,  # noqa: F811
) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.core.failures import FailureGroup

    from trading.models import ScheduledOrder

    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 35, len(operations)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    checks = _checks()

    def fuzz(op: Any, mode: Any, examples: int) -> None:
        @hsettings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.data())
        def run(data: Any) -> None:
            case = data.draw(op.as_strategy(mode))
            response = case.call(headers=token.headers)
            token.restore()
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=checks, headers=token.headers)
            except (AssertionError, FailureGroup) as exc:  # FailureGroup is a BaseExceptionGroup
                failures.append(_describe(case, response, exc))

        run()

    for op in operations:
        fuzz(op, GenerationMode.POSITIVE, MAX_EXAMPLES)
        try:
            fuzz(op, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)
        except Unsatisfiable:  # nothing to break: no parameters and no body
            pass

    total = sum(statuses.values())
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    print(
        f"schemathesis: {len(operations)} operations, {total} requests, {server_errors} 5xx, {dict(statuses)}"
    )
    assert server_errors == 0, failures
    assert not failures, sorted(set(failures))
    # Another user's scheduled order survived every request made with this user's token.
    assert ScheduledOrder.objects.filter(user=other_user, state="pending").count() == 1


def test_stateful_links_find_no_server_error(wsgi_app: Any, token: TokenAuth) -> None:
    """Schemathesis' state machine over the links it infers (a created order's id reused by detail, cancel,
    ...)."""
    import schemathesis
    from hypothesis import HealthCheck
    from hypothesis import settings as hsettings

    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    machine = schema.as_state_machine()
    statuses: Counter[int] = Counter()
    checks = _checks()

    class Machine(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            token.restore()
            return {"headers": token.headers}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            statuses[response.status_code] += 1
            case.validate_response(response, checks=checks, headers=token.headers)

    Machine.run(
        settings=hsettings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    print(f"schemathesis stateful: {sum(statuses.values())} requests, {dict(statuses)}")
    assert sum(n for code, n in statuses.items() if code >= 500) == 0

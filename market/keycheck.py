"""Checks a user's Upbit keys with one read-only call (GET /v1/accounts) against settings.UPBIT_REST_URL.

Registered as settings.EXCHANGE_KEY_CHECK: the accounts app calls it before storing keys (accounts cannot
import the market app). The keys go only into the request's JWT; they are never logged or returned.
"""

from __future__ import annotations

import httpx
from django.conf import settings

from accounts.keycheck import KeyCheckResult, KeyCheckStatus
from market.upbit.client import UpbitClient
from market.upbit.errors import UpbitAuthError, UpbitError, UpbitUnavailable

# A person waits for the answer: one short try, no retries.
CHECK_TIMEOUT_S = 5.0


def upbit_keys_check(*, access_key: str, secret_key: str) -> KeyCheckResult:
    client = UpbitClient(
        base_url=settings.UPBIT_REST_URL,
        access_key=access_key,
        secret_key=secret_key,
        timeout=CHECK_TIMEOUT_S,
        max_retries=0,
    )
    try:
        client.accounts()
    except UpbitAuthError as exc:
        return KeyCheckResult(KeyCheckStatus.INVALID, error_name=str(exc.name))
    except (UpbitUnavailable, httpx.HTTPError, OSError):
        return KeyCheckResult(KeyCheckStatus.UNREACHABLE)
    except UpbitError as exc:  # 429 and other refusals that say nothing about the keys themselves
        return KeyCheckResult(KeyCheckStatus.UNREACHABLE, error_name=str(exc.name))
    finally:
        client.close()
    return KeyCheckResult(KeyCheckStatus.VALID)

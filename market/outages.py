"""Outside sources (exchange tickers, FX, news feeds) that go down and come back.

Offline, every source fails on every refresh; a warning each time would fill the console. A source is
reported once when it goes down and once when it is back (the repeats at DEBUG), across the processes that
share the ``shared`` cache (files without Redis: the web server and each worker pool process are
processes of their own).
"""

from __future__ import annotations

import logging

from django.core.cache import caches

# How long a "down" mark is remembered without a success (a week: the outage outlives any refresh period).
DOWN_TTL = 7 * 24 * 3600


def source_down_note(*, key: str, reason: object, logger: logging.Logger) -> None:
    """Record a failed fetch of ``key``: a warning if the source was up, else a debug line."""
    if caches["shared"].add(f"{key}:down", str(reason), DOWN_TTL):
        logger.warning("feed %s unavailable: %s (logged again when it is back)", key, reason)
    else:
        logger.debug("feed %s still unavailable: %s", key, reason)


def source_up_note(*, key: str, logger: logging.Logger) -> None:
    """Record a successful fetch of ``key``: a warning (the pair of the "unavailable" one) if it was down."""
    if caches["shared"].delete(f"{key}:down"):
        logger.warning("feed %s is back", key)

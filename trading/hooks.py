"""Hooks through which trading tells the apps above it what happened, without knowing them: each is a list
of dotted paths in settings (as ``PROFILE_SECTIONS`` is for the profile page), called in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string


def _hooks(name: str) -> list[Callable[..., Any]]:
    return [import_string(path) for path in getattr(settings, name)]  # declared in observator/settings


def auto_trading_halted_notify(*, user: Any | None, reason: str) -> None:
    """Auto-trading was halted for ``user`` (daily loss limit) or for everyone (``user=None``: the kill
    switch): ``settings.AUTO_TRADING_HALT_HOOKS`` stop what trades automatically and cancel its orders. A
    failing hook raises, as the halt must not pass unnoticed."""
    for hook in _hooks("AUTO_TRADING_HALT_HOOKS"):
        hook(user=user, reason=reason)

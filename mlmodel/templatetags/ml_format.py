"""Number formats for model reports (scientific MSE, percentages, KRW)."""

from __future__ import annotations

import math
from typing import Any

from django import template

register = template.Library()


def _f(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@register.filter
def sci(value: Any) -> str:
    f = _f(value)
    return "–" if f is None else f"{f:.3e}"


@register.filter
def pct(value: Any, digits: int = 1) -> str:
    f = _f(value)
    return "–" if f is None else f"{f * 100:.{int(digits)}f}%"


@register.filter
def bps(value: Any) -> str:
    f = _f(value)
    return "–" if f is None else f"{f * 1e4:+.2f} bps"


@register.filter
def krw(value: Any) -> str:
    f = _f(value)
    return "–" if f is None else f"{f:,.0f}"


@register.filter
def num(value: Any, digits: int = 3) -> str:
    f = _f(value)
    return "–" if f is None else f"{f:.{int(digits)}f}"


@register.filter
def ci(value: Any, digits: int = 3) -> str:
    """A bootstrap interval ``[lo, hi]`` as "[0.012, 0.051]"; empty when there is none."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return ""
    lo, hi = _f(value[0]), _f(value[1])
    if lo is None or hi is None:
        return ""
    return f"[{lo:.{int(digits)}f}, {hi:.{int(digits)}f}]"

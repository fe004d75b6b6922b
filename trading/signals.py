"""Signals other parts (the auto-trading sessions) listen to."""

from django.dispatch import Signal

# Sent with ``user`` (one user) or ``user=None`` (everyone: kill switch) and ``reason`` when auto-trading
# must stop. Auto-trading sessions connect here to stop themselves and cancel their open orders.
auto_trading_halted = Signal()

"""``manage.py trading_reconcile``: settle pending/open orders with their exchanges now (what the worker does
at start-up and every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from trading.services import orders_reconcile


class Command(BaseCommand):
    help = "Reconcile pending and open orders with the exchange (state, fills, fees)."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = orders_reconcile()
        self.stdout.write("checked {checked}, changed {changed}, errors {errors}".format(**counts))

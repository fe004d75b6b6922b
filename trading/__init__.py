"""The trading app: manual, scheduled (and, from mlmodel's predictions, automatic) orders on Upbit or the
paper exchange, portfolio and P&L, risk limits and the kill switch, the e-mail report.

Entry points for other code: ``trading.services`` (``order_place``, ``order_cancel``, ``kill_switch_engage``,
...), ``trading.selectors`` (``portfolio_get``, ``order_list``, ...), ``trading.exchanges.exchange_for``.
"""

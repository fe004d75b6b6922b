"""REST API of auto-trading (under /api/trading/auto/)."""

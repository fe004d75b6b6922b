"""Auto-trading: per user and market sessions that trade on the ML worker's predictions (the top app)."""

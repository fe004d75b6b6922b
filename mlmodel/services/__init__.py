"""ML writes, by concern: params, data, train, registry, runs, predictions (import from the module)."""

"""OBservator project package: settings, ASGI and URL roots."""

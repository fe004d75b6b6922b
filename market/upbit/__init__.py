"""Upbit Open API support: the shared wire protocol (``protocol``), used by the real client and the simulator."""

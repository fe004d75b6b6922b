"""Upbit Open API support: the shared wire protocol (``protocol``) used by the client and the simulator."""

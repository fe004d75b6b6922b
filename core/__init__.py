"""Shared pieces: application errors, the DRF exception handler, realtime push, logging, the launcher."""

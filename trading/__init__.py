"""The trading app."""

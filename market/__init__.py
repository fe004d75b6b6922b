"""The market app."""

"""Bare settings for running ``makemessages`` over a copy of the tree (tests/core/test_catalogue_complete.py):
the command reads only its locale options, so nothing of the project's apps is imported."""

SECRET_KEY = "makemessages-only"
USE_I18N = True
INSTALLED_APPS: list[str] = []
LOCALE_PATHS: list[str] = []

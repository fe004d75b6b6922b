"""Base settings shared by every environment, one module per concern (each reads its part from the
environment and holds its defaults; no setting is defined in two of them); local.py, test.py and
production.py start from this."""

from observator.settings.celery import *  # noqa: F403
from observator.settings.core import *  # noqa: F403
from observator.settings.hooks import *  # noqa: F403
from observator.settings.market import *  # noqa: F403
from observator.settings.ml import *  # noqa: F403
from observator.settings.trading import *  # noqa: F403

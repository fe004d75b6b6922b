"""Local/embedded settings: the default. Secrets are generated into var/ on first run."""

from observator.env import load_local_secrets

load_local_secrets()

from observator.settings.base import *  # noqa: E402,F403

DEBUG = env.bool("DEBUG", default=True)  # noqa: F405

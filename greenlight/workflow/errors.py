"""Temporary: `greenlight.errors` under its old name, for branches that still import it here."""

from greenlight.errors import *  # noqa: F403

"""Temporary: `greenlight.clock` under its old name, for branches that still import it here."""

from greenlight.clock import now

__all__ = ["now"]

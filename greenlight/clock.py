"""The one source of "now", for every layer."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)

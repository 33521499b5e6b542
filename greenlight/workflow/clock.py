"""The one source of "now" for the workflow."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)

"""Connecting to the database (greenlight.db)."""

from __future__ import annotations

import pytest
from tortoise import connections

from greenlight import db


async def test_sqlite_keeps_more_pages_than_its_default_unless_the_url_says(database, tmp_path):
    """SQLite's page cache (2 MiB by default) is SQLITE_CACHE_KIB on the one
    connection of a process; a `cache_size` in GREENLIGHT_DATABASE_URL wins."""
    if database != "sqlite":
        pytest.skip("SQLite only")
    _, rows = await connections.get("default").execute_query("PRAGMA cache_size")
    assert rows[0][0] == -db.SQLITE_CACHE_KIB
    chosen = db.tortoise_config(f"sqlite://{tmp_path}/other.sqlite3?cache_size=-1000")
    assert chosen["connections"]["default"]["credentials"]["cache_size"] == "-1000"

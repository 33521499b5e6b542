"""Migrations as a step of their own: `greenlight serve --no-migrate` (or
GREENLIGHT_MIGRATE_ON_START=false) leaves migrating to `greenlight migrate` (a Kubernetes Job,
a Helm hook) and refuses to serve on a schema with migrations pending; plain `serve` still
applies them first. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from greenlight import db
from tests.conftest import POSTGRES_URL, RUN_ID, _pg_admin, _pg_server_url
from tests.support import free_port, start_serve


@pytest.fixture
def fresh_database_url(backend, tmp_path) -> Iterator[str]:
    """A database no migration has touched."""
    if backend == "sqlite":
        yield f"sqlite://{tmp_path / 'fresh.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("GREENLIGHT_TEST_POSTGRES_URL is not set")
    name = f"greenlight_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _pg_server_url(name)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env["GREENLIGHT_DATABASE_URL"] = database_url
    env["GREENLIGHT_LOG_FORMAT"] = "text"
    env.update(extra)
    return env


def _serve(cwd: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "greenlight", "serve", "--port", str(free_port()), *flags],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _tables(database_url: str) -> set[str]:
    async def read() -> set[str]:
        if database_url.startswith("sqlite://"):
            import sqlite3

            path = database_url.removeprefix("sqlite://")
            if not Path(path).exists():
                return set()
            with sqlite3.connect(path) as conn:
                return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await conn.close()
        return {r["tablename"] for r in rows}

    return asyncio.run(read())


def _wait_healthy(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within 60 s:\n{log.read_text()}")


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()


def test_serve_no_migrate_refuses_a_database_with_pending_migrations(fresh_database_url, tmp_path):
    """With --no-migrate and every migration pending, serve exits 2 naming the pending
    migrations and `greenlight migrate`, and creates no table."""
    result = _serve(tmp_path, _env(fresh_database_url), "--no-migrate")
    assert result.returncode == 2, result.stderr
    assert "refusing to start" in result.stderr
    assert "models.0001_initial" in result.stderr
    assert "greenlight migrate" in result.stderr
    assert not {"users", "applications", "tortoise_migrations"} & _tables(fresh_database_url)


def test_migrate_on_start_false_refuses_a_database_with_pending_migrations(fresh_database_url, tmp_path):
    """GREENLIGHT_MIGRATE_ON_START=false does what --no-migrate does."""
    result = _serve(tmp_path, _env(fresh_database_url, GREENLIGHT_MIGRATE_ON_START="false"))
    assert result.returncode == 2, result.stderr
    assert "refusing to start" in result.stderr
    assert "users" not in _tables(fresh_database_url)


def test_serve_no_migrate_refuses_when_one_migration_is_pending(fresh_database_url, tmp_path):
    """A database migrated by an older release (the last migration not applied) is refused
    too, naming only that migration."""
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate

    names = sorted(
        p.stem for p in (Path(db.__file__).parent / "migrations").glob("[0-9][0-9][0-9][0-9]_*.py")
    )

    async def migrate_all_but_last() -> str:
        await migrate(config=db.tortoise_config(fresh_database_url), target=f"models.{names[-2]}")
        await Tortoise.close_connections()
        return (await db.pending_migrations(fresh_database_url))[-1]

    last = asyncio.run(migrate_all_but_last())
    result = _serve(tmp_path, _env(fresh_database_url), "--no-migrate")
    assert result.returncode == 2, result.stderr
    assert f"1 migration(s) not applied ({last})" in result.stderr


def test_serve_no_migrate_serves_a_migrated_database(fresh_database_url, tmp_path):
    """After `greenlight migrate` (the Job's step), serve --no-migrate starts and answers."""
    env = _env(fresh_database_url)
    migrated = subprocess.run(
        [sys.executable, "-m", "greenlight", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert asyncio.run(db.pending_migrations(fresh_database_url)) == []
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "greenlight", "serve", "--port", str(port), "--no-migrate"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(process, port, log)
    finally:
        assert _stop(process) == 0, log.read_text()


def test_serve_without_the_flag_still_migrates_first(fresh_database_url, tmp_path):
    """Today's behaviour is kept: plain `serve` applies the migrations, then serves."""
    port, log = free_port(), tmp_path / "serve.log"
    process = start_serve(tmp_path, _env(fresh_database_url), port, log)
    try:
        _wait_healthy(process, port, log)
    finally:
        assert _stop(process) == 0, log.read_text()
    assert {"users", "applications"} <= _tables(fresh_database_url)
    assert asyncio.run(db.pending_migrations(fresh_database_url)) == []


def test_migrate_on_start_rejects_a_value_that_is_not_a_boolean(tmp_path):
    """A typo in GREENLIGHT_MIGRATE_ON_START stops serve with the variable named, rather than
    guessing."""
    result = _serve(tmp_path, _env(f"sqlite://{tmp_path / 'x.sqlite3'}", GREENLIGHT_MIGRATE_ON_START="nope"))
    assert result.returncode == 2
    assert "GREENLIGHT_MIGRATE_ON_START" in result.stderr

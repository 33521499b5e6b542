"""Starting on a database that cannot be used, with real `greenlight` subprocesses: one line
on stderr saying what is wrong and what to do, a non-zero exit within seconds, never a hang
nor a traceback; and one serving process per SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import POSTGRES_URL, _pg_server_url
from tests.hardening import test_faults as faults
from tests.hardening.test_faults import bootstrap, environment, post, wait_ready
from tests.support import free_port

servers = faults.servers  # a fixture, found by pytest under this name

SECONDS = 30  # far more than any of these needs; a hang is what is refused


def run(
    args: list[str], env: dict[str, str], cwd: Path, user: int | None = None
) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [sys.executable, "-m", "greenlight", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=SECONDS,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"greenlight {' '.join(args)} still running after {SECONDS} s (it must fail at once)")


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result
    # `serve` logs (JSON, one record a line) from the start; informational records aside,
    # what it says is the one line.
    lines = [line for line in result.stderr.splitlines() if line.strip() and '"level": "INFO"' not in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


SERVE = ["serve", "--host", "127.0.0.1"]
CREATE_APPLICATION = 'mutation { createApplication(name: "shop") { id } }'


# --- SQLite -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[*SERVE, "--port", str(free_port())], ["migrate"], ["bootstrap", "a@example.com"]]
)
def test_sqlite_folder_that_does_not_exist_fails_at_once_naming_the_path(command, tmp_path):
    path = tmp_path / "missing" / "g.sqlite3"
    line = one_line(run(command, environment(f"sqlite://{path}"), tmp_path))
    assert str(path) in line and "does not exist" in line
    assert not path.parent.exists()


@pytest.fixture
def read_only(tmp_path) -> Iterator[Path]:
    """A migrated SQLite file this user cannot write: mode 444, and for root (who may write
    anything) the immutable attribute too, removed at teardown."""
    path = tmp_path / "g.sqlite3"
    run(["migrate"], environment(f"sqlite://{path}"), tmp_path)
    path.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and chattr +i is not available to make a file read-only")
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("command", [[*SERVE, "--port", str(free_port())], ["migrate"]])
def test_sqlite_read_only_file_fails_at_once_naming_the_path(command, read_only, tmp_path):
    before = read_only.read_bytes()
    line = one_line(run(command, environment(f"sqlite://{read_only}"), tmp_path))
    assert str(read_only) in line and "writable" in line
    assert read_only.read_bytes() == before


def test_sqlite_several_workers_are_refused_clearly(tmp_path):
    line = one_line(
        run(
            [*SERVE, "--port", str(free_port()), "--workers", "2"],
            environment(f"sqlite://{tmp_path / 'g'}"),
            tmp_path,
        )
    )
    assert "PostgreSQL" in line


async def test_sqlite_second_serve_on_the_same_file_is_refused(servers, tmp_path):
    """One serving process per SQLite file: a second one is refused at start, with one line
    naming the file, and the first one goes on serving."""
    database = f"sqlite://{tmp_path / 'g.sqlite3'}"
    admin = await bootstrap(database, tmp_path)
    first = servers.start(environment(database))
    await wait_ready(first)
    second = await asyncio.to_thread(
        run, [*SERVE, "--port", str(free_port())], environment(database), tmp_path
    )
    line = one_line(second)
    assert str(tmp_path / "g.sqlite3") in line and "already served" in line
    assert str(first.popen.pid) in line
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        response = await post(http, admin, CREATE_APPLICATION)
        assert not response.json().get("errors"), response.text


async def test_sqlite_lock_left_by_a_killed_serve_does_not_refuse_the_next(servers, tmp_path):
    """The lock is the process's own: a lock file left behind by a SIGKILLed server holds
    no one off."""
    database = f"sqlite://{tmp_path / 'g.sqlite3'}"
    await bootstrap(database, tmp_path)
    first = servers.start(environment(database))
    await wait_ready(first)
    os.killpg(first.popen.pid, signal.SIGKILL)
    first.popen.wait(timeout=10)
    assert (tmp_path / "g.sqlite3.lock").exists()
    second = servers.start(environment(database), "after-kill")
    await wait_ready(second)


async def test_sqlite_lock_timeout_is_unavailable(servers, tmp_path):
    """Another program holding the file's write lock past SQLite's busy timeout: the mutation
    answers UNAVAILABLE (retry), never INTERNAL, and writes nothing."""
    path = tmp_path / "g.sqlite3"
    database = f"sqlite://{path}"
    admin = await bootstrap(database, tmp_path)
    server = servers.start(environment(database))
    await wait_ready(server)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            response = await post(http, admin, CREATE_APPLICATION)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["UNAVAILABLE"], response.text
    check = sqlite3.connect(path)
    try:
        assert check.execute("SELECT count(*) FROM applications").fetchone() == (0,)
    finally:
        check.close()


# --- PostgreSQL ---------------------------------------------------------------------------------

needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="GREENLIGHT_TEST_POSTGRES_URL is not set")


@needs_postgres
@pytest.mark.parametrize(
    "command", [[*SERVE, "--port", str(free_port())], ["migrate"], ["bootstrap", "a@example.com"]]
)
def test_postgres_database_that_does_not_exist_says_create_it(command, tmp_path):
    name = "greenlight_no_such_database"
    line = one_line(run(command, environment(_pg_server_url(name)), tmp_path))
    assert f'"{name}" does not exist' in line and "createdb" in line and "CREATE DATABASE" in line


@pytest.mark.parametrize("command", [[*SERVE, "--port", str(free_port())], ["migrate"]])
def test_postgres_nothing_listening_asks_whether_it_runs(command, tmp_path):
    port = free_port()  # bound and released: nothing listens there
    line = one_line(run(command, environment(f"postgres://postgres@127.0.0.1:{port}/x"), tmp_path))
    assert f"nothing is listening on 127.0.0.1:{port}" in line and "running" in line


@needs_postgres
def test_postgres_unknown_user_names_the_user(tmp_path):
    url = _pg_server_url("postgres").replace("postgres://postgres@", "postgres://greenlight_nobody@", 1)
    if "greenlight_nobody@" not in url:
        pytest.skip("the test PostgreSQL URL names no user")
    line = one_line(run(["migrate"], environment(url), tmp_path))
    assert 'refused user "greenlight_nobody"' in line

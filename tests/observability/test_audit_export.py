"""The audit log leaves the building (the issue's item): `greenlight audit export --since
CURSOR` writes JSON lines from a cursor, and the audit sink delivers every event to a
signed webhook once, in order, even when the receiver fails for a while (a real HTTP
receiver on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook

from greenlight import jobs
from greenlight.config import Settings
from greenlight.models import AuditCursor, AuditEvent
from greenlight.notifications import audit_stream
from tests.rollout.test_webhook import Receiver

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + "c2llbS1zZWNyZXQtc2hhcmVkLXdpdGgtdGhlLXJlY2VpdmVy"


async def exported(since: int = 0) -> list[dict]:
    lines: list[str] = []
    await audit_stream.export(since, lines.append)
    assert all(line.endswith("\n") for line in lines)
    return [json.loads(line) for line in lines]


async def test_audit_export_from_a_cursor_resumes_exactly_where_it_left(world):
    """Audit export: every event once, in commit order, each with a cursor; an export from
    any line's cursor gives exactly the lines after it, and new events follow the last."""
    everything = await exported()
    assert len(everything) == await AuditEvent.all().count() > 5
    assert [int(r["cursor"]) for r in everything] == sorted(int(r["cursor"]) for r in everything)
    first = everything[0]
    assert set(first) == {
        "cursor", "id", "at", "action", "actor", "objectType", "objectId",
        "application", "environment", "before", "after",
    }  # fmt: skip
    for k in (0, 3, len(everything) - 1):
        assert await exported(int(everything[k]["cursor"])) == everything[k + 1 :]

    request = await world.request_approval(await world.register_image())
    await world.approve(request, "approver1")
    newer = await exported(int(everything[-1]["cursor"]))
    assert [r["action"] for r in newer] == ["register_image", "request_approval", "approve"]
    assert newer[1]["objectId"] == request and newer[2]["actor"]["email"] == world["approver1"].email
    assert await exported() == everything + newer


async def test_audit_export_keeps_commit_order_when_ids_commit_out_of_order(world, backend, database_url):
    """Audit export: an event whose transaction commits after a later-numbered one's is
    still exported after the cursor the later one gave (ids are handed out at insert, not
    at commit: "ids after the last one seen" would skip it for good)."""
    if backend != "postgres":
        pytest.skip("SQLite runs one writer at a time: its events commit in id order")
    before = await exported()
    slow = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        transaction = slow.transaction()
        await transaction.start()
        slow_id = await slow.fetchval(
            "INSERT INTO audit_events (at, action, object_type, object_id) "
            "VALUES (now(), 'slow_action', 'User', 1) RETURNING id"
        )
        await world.register_image()  # commits an event with a higher id first
        seen = await exported(int(before[-1]["cursor"]))
        assert [r["action"] for r in seen] == ["register_image"]
        assert int(seen[0]["id"].split(":")[1]) > slow_id
        await transaction.commit()
    finally:
        await slow.close()
    later = await exported(int(seen[-1]["cursor"]))
    assert [(r["action"], r["id"]) for r in later] == [("slow_action", f"AuditEvent:{slow_id}")]


def _cli(database_url: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    environment |= {"GREENLIGHT_DATABASE_URL": database_url, "GREENLIGHT_ENV_FILE": str(tmp_path / "no.env")}
    return subprocess.run(
        [sys.executable, "-m", "greenlight", "audit", "export", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_audit_export_command_writes_json_lines_from_its_since_cursor(world, database_url, tmp_path):
    """Audit export: `greenlight audit export` reads the database from the usual settings
    and writes JSON lines; `--since` a line's cursor resumes after it; a cursor that is not
    one is refused with exit code 2."""
    everything = await exported()
    result = _cli(database_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == everything
    middle = everything[len(everything) // 2]["cursor"]
    result = _cli(database_url, tmp_path, "--since", middle)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == everything[len(everything) // 2 + 1 :]
    refused = _cli(database_url, tmp_path, "--since", "AuditEvent:3")
    assert refused.returncode == 2 and "--since" in refused.stderr and refused.stdout == ""


# --- the sink ---------------------------------------------------------------------------------


@pytest.fixture
async def receiver():
    found = Receiver()
    await found.start()
    try:
        yield found
    finally:
        await found.stop()


@pytest.fixture
def settings(database_url, receiver) -> Settings:
    return Settings(
        database_url=database_url,
        background_jobs=False,
        mutations_per_minute=0,
        audit_webhook_url=receiver.url,
        audit_webhook_secret=SECRET,
        webhook_backoff_seconds=60.0,
        webhook_timeout_seconds=5.0,
    )


async def sink(settings: Settings) -> int:
    await audit_stream.sequence()
    async with httpx.AsyncClient(trust_env=False) as client:
        return await audit_stream.deliver_sink(settings, client)


async def make_due() -> None:
    await AuditCursor.filter(name="sink").update(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))


async def test_audit_sink_receives_every_event_once_and_in_order_through_failures(world, settings, receiver):
    """Audit sink: while the receiver fails, the same event is retried (same webhook-id,
    later, with backoff) and nothing after it is sent; once it answers, every event arrives,
    in commit order, signed, and each is accepted once; new events follow."""
    everything = await exported()
    receiver.fail_next = 2

    assert await sink(settings) == 0
    cursor = await AuditCursor.get(name="sink")
    assert cursor.position == 0 and cursor.attempts == 1 and cursor.last_error == "HTTP 500"
    assert cursor.next_attempt_at > datetime.now(UTC)
    assert await sink(settings) == 0 and len(receiver.requests) == 1  # not due yet
    await make_due()
    assert await sink(settings) == 0
    await make_due()
    assert await sink(settings) == len(everything)

    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids[:3] == [everything[0]["id"]] * 3  # the first, three times: nothing else before it
    accepted = ids[2:]
    assert accepted == [r["id"] for r in everything]  # then each once, in order
    for request in receiver.requests:
        record = Webhook(SECRET).verify(request.body, request.headers)
        assert record["id"] == request.headers["webhook-id"]
    assert [json.loads(r.body) for r in receiver.requests[2:]] == everything

    await world.register_image()
    assert await sink(settings) == 1
    assert json.loads(receiver.requests[-1].body)["action"] == "register_image"
    assert await sink(settings) == 0  # nothing twice
    assert (await AuditCursor.get(name="sink")).position == int(
        json.loads(receiver.requests[-1].body)["cursor"]
    )


async def test_audit_sink_runs_in_the_background_jobs_when_configured(world, settings, receiver):
    """Audit sink: a server's periodic jobs feed it when GREENLIGHT_AUDIT_WEBHOOK_URL is
    set, and not otherwise."""
    unset = Settings(database_url=settings.database_url, background_jobs=False)
    async with httpx.AsyncClient(trust_env=False) as client:
        await jobs.run_once(unset, client)
        assert receiver.requests == []
        await jobs.run_once(settings, client)
    assert len(receiver.requests) == await AuditEvent.all().count()

"""Peers that hang rather than fail, against real `greenlight serve` processes.

- An SMTP server that accepts and never greets holds up only the sending of emails: a
  rollout still ends on time.
- PostgreSQL behind a partition (a proxy of this module's own that stops forwarding without
  closing anything, so the machine's PostgreSQL is never touched): /readyz answers 503 within
  seconds, and operations answer UNAVAILABLE in bounded time.
- A connection cut while COMMIT is on the wire: the mutation did commit, and the client is
  told OUTCOME_UNKNOWN (read back before retrying), never UNAVAILABLE ("nothing changed").
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.hardening import test_faults as faults
from tests.hardening.test_faults import (
    DEPLOY,
    REGISTER,
    REQUEST,
    bootstrap,
    build_world,
    environment,
    new_digest,
    ok,
    register_variables,
    wait_ready,
)
from tests.support import free_port

servers = faults.servers  # fixtures, found by pytest under these names
pg_database = faults.pg_database

APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
READ_DEPLOYMENT = "query($id: ID!) { deployment(id: $id) { id status } }"


class SilentSmtp:
    """A TCP server that accepts connections and never says a word (no 220 greeting)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SilentSmtp:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        await reader.read()  # until the client gives up


def email_environment(database: str, smtp_port: int, **extra: str) -> dict[str, str]:
    return environment(
        database,
        GREENLIGHT_SMTP_HOST="127.0.0.1",
        GREENLIGHT_SMTP_PORT=str(smtp_port),
        GREENLIGHT_SMTP_SECURITY="none",
        GREENLIGHT_SMTP_FROM="greenlight@example.com",
        GREENLIGHT_SECRET_KEY="k" * 40,
        GREENLIGHT_EMAIL_BACKOFF_SECONDS="0",  # a failed email is due again at once: always sending
        **extra,
    )


async def test_jobs_a_hung_smtp_server_does_not_hold_up_a_rollout(servers, tmp_path):
    """Each kind of background work runs on its own: with emails stuck on an SMTP server that
    accepts and never greets, a 1 s rollout still ends HEALTHY soon after its time (the
    email sender's own time limit is 30 s here, so waiting for it would take far longer)."""
    database = f"sqlite://{tmp_path / 'g.sqlite3'}"
    async with SilentSmtp() as smtp:
        admin = await bootstrap(database, tmp_path)
        server = servers.start(email_environment(database, smtp.port, GREENLIGHT_SMTP_TIMEOUT_SECONDS="30"))
        await wait_ready(server)
        world = await build_world(server.url, admin)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            image = (await ok(http, world.tokens["dev"], REGISTER, register_variables(new_digest())))[
                "registerImage"
            ]
            request = (
                await ok(
                    http,
                    world.tokens["dev"],
                    REQUEST,
                    {
                        "i": {
                            "pipelineId": world.pipeline,
                            "imageId": image["id"],
                            "approverIds": [world.user_ids["approver"]],
                        }
                    },
                )
            )["requestApproval"]
            deadline = time.monotonic() + 30
            while smtp.accepted == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert smtp.accepted >= 1, "the email to the named approver is being sent"
            await ok(http, world.tokens["approver"], APPROVE, {"id": request["id"]})
            deployed = (
                await ok(
                    http,
                    world.tokens["dev"],
                    DEPLOY,
                    {"i": {"pipelineId": world.pipeline, "imageId": image["id"]}},
                )
            )["deployImage"]
            status = None
            deadline = time.monotonic() + 15  # the rollout takes 1 s; the SMTP timeout is 30 s
            while time.monotonic() < deadline:
                status = (await ok(http, admin, READ_DEPLOYMENT, {"id": deployed["id"]}))["deployment"][
                    "status"
                ]
                if status != "PROGRESSING":
                    break
                await asyncio.sleep(0.2)
            assert status == "HEALTHY", f"still {status}: the rollout waited for the SMTP server"
            assert smtp.accepted >= 1

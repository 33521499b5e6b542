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
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.hardening import test_faults as faults
from tests.hardening.test_faults import (
    DEPLOY,
    READ_PIPELINE,
    bootstrap,
    build_world,
    environment,
    ok,
    post,
    requested_image,
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
            image, request = await requested_image(http, world, (world.user_ids["approver"],))
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


# --- PostgreSQL behind a partition, and a COMMIT cut on the wire ----------------------------------


class Partition:
    """A TCP proxy between the server and PostgreSQL. `stall()` is a partition: nothing is
    forwarded any more either way and nothing is closed (packets dropped, no reset); new
    connections are accepted and get no answer. `heal()` forwards again. `cut_commit_after`
    arms a cut: on the next connection that sends an SQL text containing the marker, the
    next COMMIT is forwarded to PostgreSQL, and the server's side of the link is then cut
    before any answer reaches it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.marker: bytes | None = None
        self.cuts = 0
        self.server: asyncio.AbstractServer | None = None
        self.links: set[asyncio.Task] = set()
        self.transports: set[asyncio.BaseTransport] = set()

    def url(self, direct_url: str) -> str:
        parts = urlsplit(direct_url)
        credentials, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{credentials}{at}127.0.0.1:{self.port}"))

    def stall(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def cut_commit_after(self, marker: bytes) -> None:
        self.marker = marker

    async def __aenter__(self) -> Partition:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        self.flowing.set()
        for transport in list(self.transports):
            transport.abort()
        for task in list(self.links):
            task.cancel()
        await asyncio.gather(*self.links, return_exceptions=True)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.links.add(asyncio.current_task())
        self.transports.add(writer.transport)
        try:
            await self.flowing.wait()
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self.transports.add(up_writer.transport)
            state = {"marked": False, "cut": False}
            await asyncio.gather(
                self._client_to_server(reader, up_writer, writer, state),
                self._server_to_client(up_reader, writer, state),
                return_exceptions=True,
            )
        finally:
            self.links.discard(asyncio.current_task())

    async def _client_to_server(self, source, sink, client_writer, state) -> None:
        try:
            while data := await source.read(65536):
                await self.flowing.wait()
                if self.marker is not None and self.marker in data:
                    state["marked"] = True
                if state["marked"] and self.marker is not None and b"COMMIT" in data:
                    self.marker = None
                    sink.write(data)
                    await sink.drain()
                    state["cut"] = True
                    self.cuts += 1
                    client_writer.transport.abort()  # the COMMIT is on its way; its answer is lost
                    return
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not state["cut"]:
                sink.transport.abort()

    async def _server_to_client(self, source, sink, state) -> None:
        try:
            while data := await source.read(65536):
                await self.flowing.wait()
                if state["cut"]:
                    break  # PostgreSQL has answered the COMMIT: end its side gracefully
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if state["cut"]:
                await asyncio.sleep(0.2)
            sink.transport.abort()


async def _timed(awaitable) -> tuple[float, object]:
    started = time.monotonic()
    result = await awaitable
    return time.monotonic() - started, result


@faults.needs_postgres
async def test_partition_readyz_and_operations_answer_within_their_time_limits(servers, pg_database):
    """With PostgreSQL behind a partition (nothing forwarded, nothing closed), /readyz says 503
    within its own time limit (2 s here) and an operation answers UNAVAILABLE once the
    statement time limit (3 s here) is up, instead of hanging for the whole outage; healed,
    the same process answers again."""
    direct_url = await asyncio.to_thread(pg_database)
    async with Partition("127.0.0.1", urlsplit(direct_url).port or 5432) as partition:
        admin = await bootstrap(direct_url, servers.folder)
        server = servers.start(
            environment(
                partition.url(direct_url),
                GREENLIGHT_READY_TIMEOUT_SECONDS="2",
                GREENLIGHT_DATABASE_STATEMENT_TIMEOUT_SECONDS="3",
                GREENLIGHT_DATABASE_CONNECT_TIMEOUT_SECONDS="2",
                GREENLIGHT_ROLLOUT_POLL_SECONDS="3600",
            )
        )
        await wait_ready(server)
        async with httpx.AsyncClient(base_url=server.url, timeout=40) as http:
            assert not (await post(http, admin, "{ me { id } }")).json().get("errors")
            partition.stall()
            seconds, ready = await _timed(http.get("/readyz"))
            assert ready.status_code == 503 and seconds < 15, (ready.status_code, seconds)
            seconds, query = await _timed(post(http, admin, "{ me { id } }"))
            codes = [e["extensions"]["code"] for e in query.json()["errors"]]
            assert codes == ["UNAVAILABLE"] and seconds < 30, (query.text, seconds)
            seconds, mutation = await _timed(
                post(http, admin, 'mutation { createApplication(name: "shop") { id } }')
            )
            codes = [e["extensions"]["code"] for e in mutation.json()["errors"]]
            assert codes in (["UNAVAILABLE"], ["OUTCOME_UNKNOWN"]) and seconds < 30, (mutation.text, seconds)
            assert (await http.get("/healthz")).status_code == 200
            partition.heal()
            deadline = time.monotonic() + 30
            while (await http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "not ready again after the partition healed"
                await asyncio.sleep(0.2)
            assert not (await post(http, admin, "{ me { id } }")).json().get("errors")


@faults.needs_postgres
async def test_outcome_unknown_when_the_connection_is_cut_during_commit(servers, pg_database):
    """A deployImage whose COMMIT reached PostgreSQL, with the connection cut before the
    answer came back: it did commit, so the client must not hear UNAVAILABLE ("nothing
    changed") but OUTCOME_UNKNOWN; reading back shows the deployment, and deploying again is
    refused (CONFLICT: already active) rather than deploying twice."""
    direct_url = await asyncio.to_thread(pg_database)
    async with Partition("127.0.0.1", urlsplit(direct_url).port or 5432) as partition:
        admin = await bootstrap(direct_url, servers.folder)
        server = servers.start(
            environment(
                partition.url(direct_url),
                GREENLIGHT_ROLLOUT_SECONDS="3600",
                GREENLIGHT_ROLLOUT_POLL_SECONDS="3600",
            )
        )
        await wait_ready(server)
        world = await build_world(server.url, admin)
        async with httpx.AsyncClient(base_url=server.url, timeout=40) as http:
            image, request = await requested_image(http, world)
            await ok(http, world.tokens["approver"], APPROVE, {"id": request["id"]})
            deploy = {"i": {"pipelineId": world.pipeline, "imageId": image["id"]}}
            partition.cut_commit_after(b'INSERT INTO "deployments"')
            cut = await post(http, world.tokens["dev"], DEPLOY, deploy)
            assert partition.cuts == 1
            errors = cut.json()["errors"]
            assert [e["extensions"]["code"] for e in errors] == ["OUTCOME_UNKNOWN"], cut.text
            assert "read it back" in errors[0]["message"]
            read = await ok(http, admin, READ_PIPELINE, {"id": world.pipeline})
            assert read["pipeline"]["activeImage"] == {"id": image["id"]}, "the deploy did commit"
            again = await post(http, world.tokens["dev"], DEPLOY, deploy)
            assert [e["extensions"]["code"] for e in again.json()["errors"]] == ["CONFLICT"]
        held = await faults.snapshot(direct_url)
        assert held.problems == []
        assert [s for s, r, _ in held.deployments.values()] == ["PROGRESSING"]
        assert held.requests[faults.pk(request["id"])][0] == "CONSUMED"

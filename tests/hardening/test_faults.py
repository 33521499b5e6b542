"""Faults against real `greenlight serve` processes.

(a) The database goes away under load and comes back (PostgreSQL, through a small TCP proxy
    written here, so the machine's PostgreSQL is never stopped): /readyz 503 and UNAVAILABLE
    while it is away, never INTERNAL nor a 5xx; the same process recovers by itself.
(b) SIGTERM with requests in flight (SQLite): new connections are refused, the requests in
    flight are answered 200, the process exits 0 within GREENLIGHT_SHUTDOWN_GRACE_SECONDS.
(c) SIGKILL in the middle of a stream of mutations (SQLite and PostgreSQL): restarted on the
    same database, every mutation the client saw succeed is there, nothing is half-written.

After every fault the database passes tests/integrity.py (run in a subprocess, so this
module never touches the test process's Tortoise connections). Every database is this
module's own (PostgreSQL ones are created and dropped here); every subprocess is killed at
teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.conftest import POSTGRES_URL, _pg_server_url
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0
RECOVERY_TIMEOUT = 30.0
GRACE = 5.0

needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="GREENLIGHT_TEST_POSTGRES_URL is not set")


def environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env.update(
        GREENLIGHT_DATABASE_URL=database_url,
        GREENLIGHT_ROLLOUT_SECONDS="1",
        GREENLIGHT_ROLLOUT_POLL_SECONDS="0.2",
        GREENLIGHT_MUTATIONS_PER_MINUTE="0",  # the load here is far above the default limit
        GREENLIGHT_SHUTDOWN_GRACE_SECONDS=str(GRACE),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# --- server processes -----------------------------------------------------------------------------


@dataclass
class Server:
    popen: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return self.log.read_text()[-4000:]


class Servers:
    """Starts `greenlight serve` processes; `kill_all` SIGKILLs each one's process group."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Server] = []

    def start(self, env: dict[str, str], name: str = "serve") -> Server:
        port = free_port()
        log = self.folder / f"{name}-{len(self.started)}.log"
        with log.open("w") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "greenlight", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.folder,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(popen, port, log)
        self.started.append(server)
        return server

    def kill_all(self) -> None:
        for server in self.started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.popen.wait(timeout=10)


@pytest.fixture
def servers(tmp_path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


async def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    async with httpx.AsyncClient(base_url=server.url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if server.popen.poll() is not None:
                pytest.fail(f"greenlight serve exited with {server.popen.returncode}:\n{server.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    pytest.fail(f"greenlight serve was not ready in {STARTUP_TIMEOUT} s:\n{server.tail()}")


async def run_python(args: list[str], env: dict[str, str], cwd: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode()[-3000:]
    return stdout.decode()


async def bootstrap(database_url: str, folder: Path) -> str:
    out = await run_python(
        ["-m", "greenlight", "bootstrap", "admin@example.com"], environment(database_url), folder
    )
    return out.strip().splitlines()[-1].strip()


# What the database holds, read by a separate process: tests/integrity.py's problems() and the
# rows the assertions below need.
SNAPSHOT = """
import asyncio, json, sys
from greenlight import db
from greenlight.models import Approval, ApprovalRequest, Deployment, Image
from tests.integrity import problems

async def main():
    await db.connect(sys.argv[1])
    try:
        out = {
            "problems": await problems(),
            "images": {str(d): i for i, d in await Image.all().values_list("id", "digest")},
            "requests": {
                i: [str(s), image] for i, s, image in await ApprovalRequest.all().values_list("id", "state", "image_id")
            },
            "approvals": [[r, u] for r, u in await Approval.all().values_list("request_id", "user_id")],
            "deployments": {
                i: [str(s), r, image]
                for i, s, r, image in await Deployment.all().values_list(
                    "id", "status", "approval_request_id", "image_id"
                )
            },
        }
    finally:
        await db.close()
    print(json.dumps(out))

asyncio.run(main())
"""


@dataclass
class Snapshot:
    problems: list[str]
    images: dict[str, int]  # digest -> pk
    requests: dict[int, tuple[str, int]]  # pk -> (state, image pk)
    approvals: set[tuple[int, int]]  # (request pk, user pk)
    deployments: dict[int, tuple[str, int | None, int]]  # pk -> (status, request pk, image pk)


async def snapshot(database_url: str) -> Snapshot:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    data = json.loads(await run_python(["-c", SNAPSHOT, database_url], env, ROOT))
    return Snapshot(
        problems=data["problems"],
        images=data["images"],
        requests={int(k): tuple(v) for k, v in data["requests"].items()},
        approvals={tuple(pair) for pair in data["approvals"]},
        deployments={int(k): tuple(v) for k, v in data["deployments"].items()},
    )


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


# --- PostgreSQL databases of this module's own ---------------------------------------------------


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(_pg_server_url("postgres").replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_database() -> Iterator[Callable[[], str]]:
    """Makes empty PostgreSQL databases on demand; drops them at teardown."""
    if not POSTGRES_URL:
        pytest.skip("GREENLIGHT_TEST_POSTGRES_URL is not set")
    made: list[str] = []

    def make() -> str:
        name = f"greenlight_faults_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return _pg_server_url(name)

    try:
        yield make
    finally:
        for name in made:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- speaking GraphQL -----------------------------------------------------------------------------

REGISTER = "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }"
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id state } }"
# Clients race on one pipeline: a request may go stale when a newer image is deployed first.
# These tests are about faults, so every approval and deploy acknowledges it.
APPROVE = "mutation($id: ID!) { approveRequest(id: $id, acknowledgeStale: true) { id state } }"
CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
DEPLOY = (
    "mutation($i: DeployImageInput!) { deployImage(input: $i) { id status approvalRequest { id state } } }"
)
READ_REQUEST = "query($id: ID!) { approvalRequest(id: $id) { id state approvals { user { id } } } }"
READ_DEPLOYMENT = "query($id: ID!) { deployment(id: $id) { id image { id } approvalRequest { id state } } }"
READ_PIPELINE = "query($id: ID!) { pipeline(id: $id) { id deployableImages { id } activeImage { id } } }"


def new_digest() -> str:
    return "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex


def register_variables(digest: str) -> dict:
    return {
        "i": {
            "application": "shop",
            "repository": "registry.example.com/acme/shop",
            "tag": f"build-{digest[7:15]}",
            "digest": digest,
        }
    }


@dataclass
class World:
    url: str
    admin: str
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)
    pipeline: str = ""


async def post(
    http: httpx.AsyncClient, token: str, query: str, variables: dict | None = None
) -> httpx.Response:
    return await http.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
    )


async def ok(http: httpx.AsyncClient, token: str, query: str, variables: dict | None = None) -> dict:
    response = await post(http, token, query, variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


async def requested_image(
    http: httpx.AsyncClient, world, approver_ids: tuple[str, ...] = ()
) -> tuple[dict, dict]:
    """dev registers a new image and asks for its approval on the world's pipeline, naming
    `approver_ids`: the image and the request, as the API answered them."""
    image = (await ok(http, world.tokens["dev"], REGISTER, register_variables(new_digest())))["registerImage"]
    variables = {
        "i": {"pipelineId": world.pipeline, "imageId": image["id"], "approverIds": list(approver_ids)}
    }
    request = (await ok(http, world.tokens["dev"], REQUEST, variables))["requestApproval"]
    return image, request


async def build_world(url: str, admin: str) -> World:
    """shop/prod needs one approval (no expiry); dev builds, requests and deploys; approver approves."""
    world = World(url, admin)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        shop = (await ok(http, admin, 'mutation { createApplication(name: "shop") { id } }'))[
            "createApplication"
        ]["id"]
        prod = (await ok(http, admin, 'mutation { createEnvironment(name: "prod") { id } }'))[
            "createEnvironment"
        ]["id"]
        world.pipeline = (
            await ok(
                http,
                admin,
                "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }",
                {"i": {"applicationId": shop, "environmentId": prod, "requiredApprovals": 1}},
            )
        )["createPipeline"]["id"]
        for name, role in (("dev", "BUILD_AND_DEPLOY"), ("approver", "IMAGE_APPROVER")):
            user = (
                await ok(
                    http,
                    admin,
                    "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                    {"i": {"email": f"{name}@example.com", "name": name}},
                )
            )["createUser"]["id"]
            await ok(
                http,
                admin,
                "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
                {"i": {"userId": user, "role": role, "application": "shop", "environment": "*"}},
            )
            world.user_ids[name] = user
            world.tokens[name] = (
                await ok(
                    http,
                    admin,
                    "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
                    {"i": {"userId": user, "name": "faults"}},
                )
            )["issueApiToken"]["token"]
    return world


# --- (a) the database goes away and comes back ------------------------------------------------------


class PostgresProxy:
    """A TCP proxy between the server and PostgreSQL. `down()` is the database stopping: every
    open connection is cut and the port is closed (new connections are refused); `up()` is it
    starting again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.server: asyncio.AbstractServer | None = None
        self.transports: set[asyncio.BaseTransport] = set()
        self.links: set[asyncio.Task] = set()

    @property
    def is_up(self) -> bool:
        return self.server is not None

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        server, self.server = self.server, None
        assert server is not None
        server.close()
        for transport in list(self.transports):
            transport.abort()
        self.transports.clear()

    async def close(self) -> None:
        if self.server is not None:
            await self.down()
        for task in list(self.links):
            task.cancel()
        await asyncio.gather(*self.links, return_exceptions=True)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.links.add(asyncio.current_task())
        self.transports.add(writer.transport)
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            if not self.is_up:  # went down while this one was connecting
                writer.transport.abort()
                upstream_writer.transport.abort()
                return
            self.transports.add(upstream_writer.transport)
            await asyncio.gather(
                self._pipe(reader, upstream_writer),
                self._pipe(upstream_reader, writer),
                return_exceptions=True,
            )
        finally:
            self.links.discard(asyncio.current_task())

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()
            self.transports.discard(sink.transport)


@dataclass
class Answer:
    """One response the load saw."""

    phase: str  # "up", "down" or "back": where the proxy was when the request was sent
    operation: str
    status: int | None  # None: no HTTP response at all (the text says why)
    codes: list[str]
    text: str


class Load:
    """Workers that register images, ask for approval, read, approve or cancel, over and over,
    recording every answer."""

    def __init__(self, world: World, phase: Callable[[], str]) -> None:
        self.world = world
        self.phase = phase
        self.answers: list[Answer] = []
        self.stopping = False
        self.registered: list[str] = []  # digests whose registerImage succeeded
        self.requested: list[str] = []  # ids of requests whose requestApproval succeeded

    def count(self, phase: str, outcome: str) -> int:
        return sum(
            1
            for a in self.answers
            if a.phase == phase and (a.codes == [] if outcome == "OK" else outcome in a.codes)
        )

    async def _call(
        self, http: httpx.AsyncClient, who: str, operation: str, query: str, variables: dict
    ) -> Any:
        phase = self.phase()
        try:
            response = await post(http, self.world.tokens[who], query, variables)
        except httpx.HTTPError as error:
            self.answers.append(Answer(phase, operation, None, [], f"{type(error).__name__}: {error}"))
            return None
        codes: list[str] = []
        data = None
        try:
            body = response.json()
            codes = [str((e.get("extensions") or {}).get("code")) for e in body.get("errors") or []]
            data = body.get("data")
        except ValueError:
            codes = ["<not JSON>"]
        # A request sent while the database was away may wait (for a pool connection) until it
        # is back and then succeed: such an answer belongs to no single phase.
        if self.phase() != phase:
            phase = f"{phase}->{self.phase()}"
        self.answers.append(Answer(phase, operation, response.status_code, codes, response.text[:500]))
        if response.status_code != 200 or codes or not data:
            return None
        return data[operation]

    async def worker(self, n: int) -> None:
        async with httpx.AsyncClient(base_url=self.world.url, timeout=15) as http:
            while not self.stopping:
                digest = new_digest()
                image = await self._call(http, "dev", "registerImage", REGISTER, register_variables(digest))
                if image is None:
                    await asyncio.sleep(0.05)
                    continue
                self.registered.append(digest)
                request = await self._call(
                    http,
                    "dev",
                    "requestApproval",
                    REQUEST,
                    {"i": {"pipelineId": self.world.pipeline, "imageId": image["id"], "approverIds": []}},
                )
                if request is None:
                    continue
                self.requested.append(request["id"])
                await self._call(http, "approver", "approvalRequest", READ_REQUEST, {"id": request["id"]})
                if n % 2:
                    await self._call(http, "approver", "approveRequest", APPROVE, {"id": request["id"]})
                else:
                    await self._call(http, "dev", "cancelApprovalRequest", CANCEL, {"id": request["id"]})
                await self._call(http, "dev", "pipeline", READ_PIPELINE, {"id": self.world.pipeline})


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"not within {timeout} s: {what}")


@needs_postgres
async def test_database_unreachable_then_back_under_load_unavailable_then_recovers(servers, pg_database):
    """Faults: while the database is unreachable /readyz is 503 and every operation
    answers UNAVAILABLE (never INTERNAL, never a 5xx); when it is back the same process
    recovers by itself; nothing the load saw succeed is lost and the database is sound."""
    direct_url = await asyncio.to_thread(pg_database)
    parts = urlsplit(direct_url)
    proxy = PostgresProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.up()
    netloc = parts.netloc.rpartition("@")
    proxied_url = urlunsplit(parts._replace(netloc=f"{netloc[0]}{netloc[1]}127.0.0.1:{proxy.port}"))
    phase = "up"
    load: Load | None = None
    workers: list[asyncio.Task] = []
    try:
        admin = await bootstrap(direct_url, servers.folder)
        server = servers.start(environment(proxied_url))
        await wait_ready(server)
        world = await build_world(server.url, admin)

        load = Load(world, lambda: phase)
        workers = [asyncio.create_task(load.worker(n)) for n in range(4)]
        await until(lambda: _true(load.count("up", "OK") >= 20), 30, "20 operations succeed under load")

        phase = "down"
        await proxy.down()
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
            await until(lambda: _status_is(http, "/readyz", 503), RECOVERY_TIMEOUT, "/readyz answers 503")
            query = await post(http, admin, "{ me { id email } }")
            assert query.status_code == 200, query.text
            assert [e["extensions"]["code"] for e in query.json()["errors"]] == ["UNAVAILABLE"], query.text
            mutation = await post(http, world.tokens["dev"], REGISTER, register_variables(new_digest()))
            assert mutation.status_code == 200, mutation.text
            assert [e["extensions"]["code"] for e in mutation.json()["errors"]] == ["UNAVAILABLE"]
            assert "Traceback" not in mutation.text and "asyncpg" not in mutation.text
            assert (await http.get("/healthz")).status_code == 200  # the process itself is fine
            await until(
                lambda: _true(load.count("down", "UNAVAILABLE") >= 10),
                RECOVERY_TIMEOUT,
                "the load sees UNAVAILABLE while the database is away",
            )

            phase = "back"
            await proxy.up()
            await until(
                lambda: _status_is(http, "/readyz", 200), RECOVERY_TIMEOUT, "/readyz answers 200 again"
            )

            async def works() -> bool:
                query = await post(http, admin, "{ me { email } }")
                mutation = await post(http, world.tokens["dev"], REGISTER, register_variables(new_digest()))
                return not query.json().get("errors") and not mutation.json().get("errors")

            await until(works, RECOVERY_TIMEOUT, "a query and a mutation succeed again")
        await until(
            lambda: _true(load.count("back", "OK") >= 20), RECOVERY_TIMEOUT, "the load succeeds again"
        )
        load.stopping = True
        await asyncio.wait_for(asyncio.gather(*workers), 30)
        assert server.popen.poll() is None, (
            "the server was never restarted: it must still be the same process"
        )
    finally:
        if load is not None:
            load.stopping = True
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await proxy.close()

    bad = [a for a in load.answers if a.status is None or a.status >= 500 or "INTERNAL" in a.codes]
    assert not bad, bad[:5]
    # A mutation whose COMMIT was on the wire as the database went away may have landed:
    # it says OUTCOME_UNKNOWN, never that it changed nothing; only as the database goes away.
    unknown = [a for a in load.answers if "OUTCOME_UNKNOWN" in a.codes]
    assert all("down" in a.phase for a in unknown), unknown[:5]
    unexpected = [a for a in load.answers if set(a.codes) - {"UNAVAILABLE", "OUTCOME_UNKNOWN"}]
    assert not unexpected, unexpected[:5]
    assert all(a.status == 200 for a in load.answers), {a.status for a in load.answers}
    assert load.count("down", "OK") == 0, "nothing can succeed without a database"

    held = await snapshot(direct_url)
    assert held.problems == []
    assert set(load.registered) <= set(held.images)
    assert {pk(r) for r in load.requested} <= set(held.requests)


async def _true(value: bool) -> bool:
    return value


async def _status_is(http: httpx.AsyncClient, path: str, status: int) -> bool:
    try:
        return (await http.get(path)).status_code == status
    except httpx.TransportError:
        return False


# --- (b) SIGTERM with requests in flight -----------------------------------------------------------


def http_request(port: int, token: str, query: str, variables: dict) -> tuple[socket.socket, bytes]:
    """Opens a connection and sends a POST /graphql whose last bytes are held back: the request
    is in flight until `finish` sends them. Returns the socket and the held bytes."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(head + body[:-8])
    return sock, body[-8:]


def finish(sock: socket.socket, rest: bytes) -> tuple[int, dict | None, str]:
    """Sends the held bytes and reads the whole response: (status, JSON body, raw text)."""
    with sock:
        sock.sendall(rest)
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head:
            return 0, None, "connection closed without a response"
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        while length is not None and len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body), raw.decode(errors="replace")
    except ValueError:
        return status, None, raw.decode(errors="replace")


@dataclass
class SigtermRun:
    digests: list[str]
    answers: list[tuple[int, dict | None, str]]
    refused_while_alive: bool
    returncode: int | None
    exited_within_grace: bool
    held: Snapshot
    log: str


@pytest.fixture(scope="module")
def sigterm_run(tmp_path_factory) -> Iterator[SigtermRun]:
    """One server on SQLite gets twelve registerImage mutations whose bodies are held back,
    then SIGTERM; once it refuses new connections the bodies are completed."""
    folder = tmp_path_factory.mktemp("sigterm")
    database = f"sqlite://{folder / 'g.sqlite3'}"
    started = Servers(folder)
    try:
        yield asyncio.run(_sigterm_scenario(started, database))
    finally:
        started.kill_all()


async def _sigterm_scenario(started: Servers, database: str) -> SigtermRun:
    admin = await bootstrap(database, started.folder)
    server = started.start(environment(database))
    await wait_ready(server)
    world = await build_world(server.url, admin)

    digests = [new_digest() for _ in range(12)]
    in_flight = [
        http_request(server.port, world.tokens["dev"], REGISTER, register_variables(d)) for d in digests
    ]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200  # the held requests have been read
    await asyncio.sleep(0.3)

    terminated = time.monotonic()
    server.popen.send_signal(signal.SIGTERM)
    refused_while_alive = False
    deadline = time.monotonic() + GRACE / 2
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                pass
        except ConnectionRefusedError:
            refused_while_alive = server.popen.poll() is None
            break
        await asyncio.sleep(0.05)

    answers = await asyncio.gather(*(asyncio.to_thread(finish, sock, rest) for sock, rest in in_flight))
    try:
        returncode = await asyncio.to_thread(
            server.popen.wait, max(0.1, terminated + GRACE - time.monotonic())
        )
        exited_within_grace = True
    except subprocess.TimeoutExpired:
        exited_within_grace = False
        returncode = await asyncio.to_thread(server.popen.wait, 30)
    return SigtermRun(
        digests,
        list(answers),
        refused_while_alive,
        returncode,
        exited_within_grace,
        await snapshot(database),
        server.tail(),
    )


def test_sigterm_stops_accepting_new_connections(sigterm_run):
    """Faults: after SIGTERM, new connections are refused while the requests in
    flight are still being served."""
    assert sigterm_run.refused_while_alive, sigterm_run.log


def test_sigterm_in_flight_mutations_complete_with_200_and_are_stored(sigterm_run):
    """Faults: every request in flight at SIGTERM is answered 200 with its data,
    and what it wrote is in the database."""
    statuses = [status for status, _, _ in sigterm_run.answers]
    assert statuses == [200] * len(sigterm_run.digests), [text[:300] for _, _, text in sigterm_run.answers]
    for (_, body, text), digest in zip(sigterm_run.answers, sigterm_run.digests, strict=True):
        assert body is not None and not body.get("errors"), text
        assert body["data"]["registerImage"]["id"] == f"Image:{sigterm_run.held.images[digest]}"
    assert set(sigterm_run.digests) <= set(sigterm_run.held.images)
    assert sigterm_run.held.problems == []


def test_sigterm_process_exits_within_the_grace_period(sigterm_run):
    assert sigterm_run.exited_within_grace, sigterm_run.log


def test_sigterm_process_exits_0(sigterm_run):
    """Faults: SIGTERM is a clean stop: exit status 0."""
    assert sigterm_run.returncode == 0, sigterm_run.log


async def test_sigterm_does_not_wait_past_the_grace_period_for_a_stuck_request(servers, tmp_path):
    """A client that never finishes its request cannot hold the process: it stops once the
    grace period (2 s here) is over."""
    database = f"sqlite://{tmp_path / 'g.sqlite3'}"
    admin = await bootstrap(database, tmp_path)
    server = servers.start(environment(database, GREENLIGHT_SHUTDOWN_GRACE_SECONDS="2"))
    await wait_ready(server)
    sock, _ = http_request(server.port, admin, REGISTER, register_variables(new_digest()))
    with sock:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
        await asyncio.sleep(0.3)
        server.popen.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        assert server.popen.poll() is None, "it waits for the request in flight during the grace period"
        try:
            await asyncio.to_thread(server.popen.wait, 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 11 s after SIGTERM with a 2 s grace period:\n{server.tail()}")
    assert server.popen.returncode != -signal.SIGKILL


# --- (c) SIGKILL in the middle of a stream of mutations -------------------------------------------


@dataclass
class Chain:
    """What one client saw of one image's way: each mutation that succeeded, and the one it had
    sent without an answer when the server died (None if it was between calls)."""

    digest: str
    image: str | None = None
    request: str | None = None
    states: list[str] = field(default_factory=list)  # request states after each success
    approved_by_approver: bool = False
    deployment: str | None = None
    in_flight: tuple[str, str | None] | None = None  # (operation, request state it would leave)


class Stream:
    def __init__(self, world: World) -> None:
        self.world = world
        self.chains: list[Chain] = []
        self.successes = 0
        self.dead = False

    async def _call(
        self,
        http: httpx.AsyncClient,
        chain: Chain,
        who: str,
        op: str,
        query: str,
        variables: dict,
        after: str | None,
    ) -> Any:
        chain.in_flight = (op, after)
        try:
            response = await post(http, self.world.tokens[who], query, variables)
        except httpx.HTTPError:
            self.dead = True
            return None
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body["errors"]
        chain.in_flight = None
        self.successes += 1
        return body["data"][op]

    async def client(self, n: int) -> None:
        async with httpx.AsyncClient(base_url=self.world.url, timeout=30) as http:
            turn = 0
            while not self.dead:
                turn += 1
                chain = Chain(new_digest())
                self.chains.append(chain)
                image = await self._call(
                    http, chain, "dev", "registerImage", REGISTER, register_variables(chain.digest), None
                )
                if image is None:
                    return
                chain.image = image["id"]
                request = await self._call(
                    http,
                    chain,
                    "dev",
                    "requestApproval",
                    REQUEST,
                    {"i": {"pipelineId": self.world.pipeline, "imageId": chain.image, "approverIds": []}},
                    "PENDING",
                )
                if request is None:
                    return
                chain.request = request["id"]
                chain.states.append(request["state"])
                if (n + turn) % 3 == 0:  # withdrawn before anyone approves
                    done = await self._call(
                        http,
                        chain,
                        "dev",
                        "cancelApprovalRequest",
                        CANCEL,
                        {"id": chain.request},
                        "CANCELLED",
                    )
                    if done is None:
                        return
                    chain.states.append(done["state"])
                    continue
                done = await self._call(
                    http, chain, "approver", "approveRequest", APPROVE, {"id": chain.request}, "APPROVED"
                )
                if done is None:
                    return
                chain.states.append(done["state"])
                chain.approved_by_approver = True
                if (n + turn) % 3 == 1:
                    deployed = await self._call(
                        http,
                        chain,
                        "dev",
                        "deployImage",
                        DEPLOY,
                        {
                            "i": {
                                "pipelineId": self.world.pipeline,
                                "imageId": chain.image,
                                "acknowledgeStale": True,
                            }
                        },
                        "CONSUMED",
                    )
                    if deployed is None:
                        return
                    chain.deployment = deployed["id"]
                    chain.states.append(deployed["approvalRequest"]["state"])
                else:  # approved, then withdrawn
                    done = await self._call(
                        http,
                        chain,
                        "dev",
                        "cancelApprovalRequest",
                        CANCEL,
                        {"id": chain.request},
                        "CANCELLED",
                    )
                    if done is None:
                        return
                    chain.states.append(done["state"])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_sigkill_during_a_stream_of_mutations_loses_nothing_and_half_writes_nothing(
    kind, servers, tmp_path, request
):
    """Faults: a server killed with SIGKILL in the middle of a stream of
    registerImage / requestApproval / approveRequest / deployImage / cancelApprovalRequest
    leaves the database as before or after each mutation: restarted on the same database,
    every mutation the clients saw succeed is there (R20: a deployment and its CONSUMED
    request together), the one in flight is wholly there or wholly absent, and the
    integrity check passes."""
    if kind == "postgres":
        if not POSTGRES_URL:
            pytest.skip("GREENLIGHT_TEST_POSTGRES_URL is not set")
        database = await asyncio.to_thread(request.getfixturevalue("pg_database"))
    else:
        database = f"sqlite://{tmp_path / 'g.sqlite3'}"
    admin = await bootstrap(database, tmp_path)
    env = environment(database, GREENLIGHT_ROLLOUT_SECONDS="3600")
    server = servers.start(env)
    await wait_ready(server)
    world = await build_world(server.url, admin)

    stream = Stream(world)
    clients = [asyncio.create_task(stream.client(n)) for n in range(4)]
    try:
        await until(lambda: _true(stream.successes >= 40), 60, "40 mutations succeed")
        await asyncio.sleep(random.uniform(0, 0.05))
        os.killpg(server.popen.pid, signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*clients), 30)
    finally:
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    assert server.popen.wait(timeout=10) == -signal.SIGKILL

    after_kill = await snapshot(database)
    assert after_kill.problems == []

    restarted = servers.start(env, "restarted")
    await wait_ready(restarted)
    held = await snapshot(database)
    assert held.problems == []
    approver = pk(world.user_ids["approver"])
    checked = 0
    async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as http:
        for chain in stream.chains:
            if chain.image is None:  # its registerImage was the one cut off: wholly or not at all
                continue
            assert held.images.get(chain.digest) == pk(chain.image), chain
            if chain.request is None:
                requests = [r for r, (_, image) in held.requests.items() if image == pk(chain.image)]
                assert len(requests) <= 1 and all(held.requests[r][0] == "PENDING" for r in requests), chain
                continue
            state, image = held.requests[pk(chain.request)]
            allowed = {chain.states[-1]} | ({chain.in_flight[1]} if chain.in_flight else set())
            assert image == pk(chain.image) and state in allowed, (chain, state)
            if chain.approved_by_approver:
                assert (pk(chain.request), approver) in held.approvals, chain
            deployments = [d for d, (_, r, _) in held.deployments.items() if r == pk(chain.request)]
            if chain.deployment is not None:
                assert deployments == [pk(chain.deployment)], chain
                assert held.deployments[pk(chain.deployment)][2] == pk(chain.image)
            assert len(deployments) == (1 if state == "CONSUMED" else 0), (chain, state, deployments)
            seen = await ok(http, admin, READ_REQUEST, {"id": chain.request})
            assert seen["approvalRequest"]["state"] == state
            checked += 1
    assert checked >= 10

    # The restarted server takes mutations again on the same database.
    async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as http:
        image, made = await requested_image(http, world)
        assert (await ok(http, world.tokens["approver"], APPROVE, {"id": made["id"]}))["approveRequest"][
            "state"
        ] == "APPROVED"
        deployed = (
            await ok(
                http,
                world.tokens["dev"],
                DEPLOY,
                {"i": {"pipelineId": world.pipeline, "imageId": image["id"]}},
            )
        )["deployImage"]
        assert deployed["approvalRequest"] == {"id": made["id"], "state": "CONSUMED"}
    assert (await snapshot(database)).problems == []

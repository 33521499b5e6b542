"""Several `greenlight serve` processes on one PostgreSQL behave as one server.

Two processes, A and B, on loopback ports share a database of this module's own (created
and dropped here, so the module runs once, not once per backend): events reach a
subscriber on either (LISTEN/NOTIFY, R25), a role binding changed through one is enforced
by the other on its next request (R5), a rollout is finished exactly once even with both
running, and a process killed mid-rollout leaves it to the others (R23). Then
`serve --workers 2`, and its refusal on SQLite. PostgreSQL only: skipped without
GREENLIGHT_TEST_POSTGRES_URL (except the SQLite refusal). Every subprocess is killed at
teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.conftest import POSTGRES_URL, _pg_server_url
from tests.support import bootstrap_token, free_port

STARTUP_TIMEOUT = 30.0
ROLLOUT_TIMEOUT = 20.0
WS_TIMEOUT = 10.0

needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="GREENLIGHT_TEST_POSTGRES_URL is not set")

# The same defect as in tests/e2e/test_websocket.py: no WebSocket is ever authenticated.


def _environment(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env.update(
        GREENLIGHT_DATABASE_URL=database_url,
        GREENLIGHT_ROLLOUT_SECONDS="2",
        GREENLIGHT_ROLLOUT_POLL_SECONDS="0.2",
        PYTHONUNBUFFERED="1",
    )
    return env


# --- processes ------------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    port: int
    log: Path
    http: httpx.Client

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def tail(self) -> str:
        return self.log.read_text()[-3000:]


class Processes:
    """Starts `greenlight serve` processes and kills every one of them (and its children)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.started: list[Process] = []

    def start(self, name: str, *extra: str) -> Process:
        port = free_port()
        log = self.folder / f"{name}.log"
        with log.open("w") as out:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "greenlight",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    *extra,
                ],
                cwd=self.folder,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so its workers can be killed with it
            )
        process = Process(
            name, popen, port, log, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        )
        self.started.append(process)
        return process

    def wait_ready(self, process: Process) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                pytest.fail(f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}")
            try:
                if process.http.get("/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{process.name} did not become ready in {STARTUP_TIMEOUT} s:\n{process.tail()}")

    def kill_all(self) -> None:
        for process in self.started:
            process.http.close()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=10)


@dataclass
class Api:
    """Speaks GraphQL over HTTP to one process as one user."""

    process: Process
    token: str
    user_id: str | None = None

    def on(self, process: Process) -> Api:
        return Api(process, self.token, self.user_id)

    def execute(self, query: str, variables: dict | None = None) -> dict:
        response = self.process.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 200, response.text
        return response.json()

    def ok(self, query: str, variables: dict | None = None) -> dict:
        body = self.execute(query, variables)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def code(self, query: str, variables: dict | None = None) -> str:
        body = self.execute(query, variables)
        assert body.get("errors"), f"expected an error, got {body}"
        return body["errors"][0]["extensions"]["code"]


REGISTER = "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }"
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id state } }"
APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
DEPLOY = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id status } }"
DEPLOYMENT = "query($id: ID!) { deployment(id: $id) { id status } }"
GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }"
REVOKE = "mutation($id: ID!) { revokeRole(id: $id) { id } }"
AUDIT = """query($f: AuditEventFilter) {
  auditEvents(filter: $f, first: 100) { edges { node { action objectId actor { email } } } }
}"""


@dataclass
class Cluster:
    a: Process
    b: Process
    processes: Processes
    database_url: str
    admin: Api
    ids: dict[str, str] = field(default_factory=dict)
    users: dict[str, Api] = field(default_factory=dict)

    def user(self, name: str, process: Process) -> Api:
        return (self.admin if name == "admin" else self.users[name]).on(process)

    def register_image(self, application: str, process: Process, who: str = "dev") -> str:
        digest = "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex
        return self.user(who, process).ok(
            REGISTER,
            {
                "i": {
                    "application": application,
                    "repository": f"registry.example.com/acme/{application}",
                    "tag": f"build-{digest[7:15]}",
                    "digest": digest,
                }
            },
        )["registerImage"]["id"]

    def deploy(self, pipeline: str, image: str, process: Process) -> dict:
        return self.user("dev", process).ok(
            DEPLOY, {"i": {"pipelineId": self.ids[pipeline], "imageId": image}}
        )["deployImage"]

    def wait_for_status(self, deployment: str, process: Process, status: str = "HEALTHY") -> None:
        deadline = time.monotonic() + ROLLOUT_TIMEOUT
        seen = None
        while time.monotonic() < deadline:
            seen = self.admin.on(process).ok(DEPLOYMENT, {"id": deployment})["deployment"]["status"]
            if seen == status:
                return
            time.sleep(0.2)
        pytest.fail(
            f"{deployment} is {seen}, not {status}, after {ROLLOUT_TIMEOUT} s:\n"
            f"{self.a.tail()}\n---\n{self.b.tail()}"
        )

    async def audit_rows(self, action: str) -> list[tuple[int, int | None]]:
        """(object_id, actor_id) of every audit event with `action`, read from the table."""
        conn = await asyncpg.connect(self.database_url.replace("postgres://", "postgresql://", 1))
        try:
            rows = await conn.fetch(
                "SELECT object_id, actor_id FROM audit_events WHERE action = $1 ORDER BY id", action
            )
        finally:
            await conn.close()
        return [(r["object_id"], r["actor_id"]) for r in rows]


# Applications with a production pipeline each; "shop" needs one approval, the others none.
APPLICATIONS = ("shop", "kill", "d1", "d2", "d3", "d4", "d5", "d6")
ROLES = {
    "dev": [("BUILD_AND_DEPLOY", "*", "*")],
    "approver": [("IMAGE_APPROVER", "shop", "*")],
    "viewer": [("VIEWER", "shop", "*")],
    "ops": [],
}


async def _admin_sql(sql: str) -> None:
    conn = await asyncpg.connect(_pg_server_url("postgres").replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("GREENLIGHT_TEST_POSTGRES_URL is not set")
    name = f"greenlight_procs_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield _pg_server_url(name)
    finally:
        asyncio.run(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def cluster(pg_database, tmp_path_factory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("processes")
    env = _environment(pg_database)
    token = bootstrap_token(folder, env, "admin@example.com")

    processes = Processes(folder, env)
    try:
        a, b = processes.start("A"), processes.start("B")
        processes.wait_ready(a)
        processes.wait_ready(b)
        admin = Api(a, token)
        admin.user_id = admin.ok("{ me { id } }")["me"]["id"]
        cluster = Cluster(a, b, processes, pg_database, admin)
        prod = admin.ok('mutation { createEnvironment(name: "prod") { id } }')["createEnvironment"]["id"]
        for name in APPLICATIONS:
            app_id = admin.ok("mutation($n: String!) { createApplication(name: $n) { id } }", {"n": name})[
                "createApplication"
            ]["id"]
            cluster.ids[name] = admin.ok(
                "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }",
                {
                    "i": {
                        "applicationId": app_id,
                        "environmentId": prod,
                        "requiredApprovals": 1 if name == "shop" else 0,
                    }
                },
            )["createPipeline"]["id"]
        for name, bindings in ROLES.items():
            user_id = admin.ok(
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                {"i": {"email": f"{name}@example.com", "name": name}},
            )["createUser"]["id"]
            for role, app, environment in bindings:
                admin.ok(
                    GRANT,
                    {"i": {"userId": user_id, "role": role, "application": app, "environment": environment}},
                )
            issued = admin.ok(
                "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
                {"i": {"userId": user_id, "name": "processes"}},
            )["issueApiToken"]["token"]
            cluster.users[name] = Api(a, issued, user_id)
        yield cluster
    finally:
        processes.kill_all()


# --- a minimal graphql-transport-ws client --------------------------------------------------------


@contextlib.asynccontextmanager
async def ws_session(url: str, token: str):
    async with connect(
        url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=WS_TIMEOUT, close_timeout=2
    ) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        ack = await receive(ws)
        assert ack["type"] == "connection_ack", ack
        yield ws


async def receive(ws: ClientConnection, timeout: float = WS_TIMEOUT) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        return message


async def ws_subscribe(ws: ClientConnection, op_id: str, query: str, variables: dict | None = None) -> None:
    """Starts an operation, then a ping's pong shows the server has taken it in."""
    await ws.send(
        json.dumps(
            {"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}}
        )
    )
    await ws.send(json.dumps({"type": "ping"}))
    assert (await receive(ws))["type"] == "pong"


def next_data(message: dict[str, Any], field_name: str) -> Any:
    assert message["type"] == "next", message
    assert not message["payload"].get("errors"), message
    return message["payload"]["data"][field_name]


# --- the tests ------------------------------------------------------------------------------------


@needs_postgres
async def test_r25_subscriber_on_a_sees_request_and_deployment_made_through_b(cluster):
    """Events of B's transactions reach a subscriber connected to A (LISTEN/NOTIFY)."""
    a, b = cluster.a, cluster.b
    query = "subscription($p: ID) { approvalRequestEvents(pipelineId: $p) { id state } }"
    async with ws_session(a.ws_url, cluster.users["viewer"].token) as ws:
        await ws_subscribe(ws, "requests", query, {"p": cluster.ids["shop"]})
        image = cluster.register_image("shop", b)
        request = cluster.user("dev", b).ok(
            REQUEST, {"i": {"pipelineId": cluster.ids["shop"], "imageId": image, "approverIds": []}}
        )["requestApproval"]["id"]
        event = next_data(await receive(ws), "approvalRequestEvents")
        assert event == {"id": request, "state": "PENDING"}
        assert (
            cluster.user("approver", b).ok(APPROVE, {"id": request})["approveRequest"]["state"] == "APPROVED"
        )
        assert next_data(await receive(ws), "approvalRequestEvents") == {"id": request, "state": "APPROVED"}

        deployment = cluster.deploy("shop", image, b)
        assert next_data(await receive(ws), "approvalRequestEvents") == {"id": request, "state": "CONSUMED"}
    async with ws_session(a.ws_url, cluster.users["viewer"].token) as ws:
        await ws_subscribe(
            ws,
            "status",
            "subscription($id: ID!) { deploymentStatus(deploymentId: $id) { id status } }",
            {"id": deployment["id"]},
        )
        statuses = []
        while True:
            message = await receive(ws)
            if message["type"] == "complete":
                break
            statuses.append(next_data(message, "deploymentStatus")["status"])
    assert statuses in (["PROGRESSING", "HEALTHY"], ["HEALTHY"])
    assert statuses[-1] == "HEALTHY"


@needs_postgres
def test_r5_grant_and_revoke_through_a_are_enforced_by_b_on_its_next_request(cluster):
    a, b = cluster.a, cluster.b
    ops = cluster.users["ops"]
    digest = lambda: "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex  # noqa: E731

    def register_on_b() -> dict:
        return ops.on(b).execute(
            REGISTER,
            {
                "i": {
                    "application": "shop",
                    "repository": "r.example.com/shop",
                    "tag": "t",
                    "digest": digest(),
                }
            },
        )

    def code(body: dict) -> str | None:
        return body["errors"][0]["extensions"]["code"] if body.get("errors") else None

    assert code(register_on_b()) == "NOT_FOUND"  # R1: no role, shop is invisible to ops
    binding = cluster.admin.on(a).ok(
        GRANT,
        {"i": {"userId": ops.user_id, "role": "BUILD_AND_DEPLOY", "application": "shop", "environment": "*"}},
    )["grantRole"]["id"]
    granted = register_on_b()
    assert code(granted) is None, granted
    assert granted["data"]["registerImage"]["id"].startswith("Image:")

    cluster.admin.on(a).ok(REVOKE, {"id": binding})
    assert code(register_on_b()) == "NOT_FOUND"
    assert ops.on(b).ok("{ me { roleBindings { id } } }")["me"]["roleBindings"] == []

    # A read role granted through B is honoured by A at once, too.
    viewer_binding = cluster.admin.on(b).ok(
        GRANT, {"i": {"userId": ops.user_id, "role": "VIEWER", "application": "shop", "environment": "prod"}}
    )["grantRole"]["id"]
    pipeline = ops.on(a).ok("query($id: ID!) { pipeline(id: $id) { id } }", {"id": cluster.ids["shop"]})
    assert pipeline == {"pipeline": {"id": cluster.ids["shop"]}}
    cluster.admin.on(b).ok(REVOKE, {"id": viewer_binding})
    assert (
        ops.on(a).code("query($id: ID!) { pipeline(id: $id) { id } }", {"id": cluster.ids["shop"]})
        == "NOT_FOUND"
    )


@needs_postgres
async def test_r23_process_killed_mid_rollout_leaves_it_to_another(cluster):
    """A third process C starts a deployment and is killed with SIGKILL at once, long
    before the 2 s rollout is due; the surviving processes finish it, exactly once."""
    c = cluster.processes.start("C")
    cluster.processes.wait_ready(c)
    image = cluster.register_image("kill", c)
    deployment = cluster.deploy("kill", image, c)
    c.popen.kill()
    assert c.popen.wait(timeout=10) == -signal.SIGKILL
    assert deployment["status"] == "PROGRESSING"

    cluster.wait_for_status(deployment["id"], cluster.b)
    deployment_pk = int(deployment["id"].split(":")[1])
    assert [pk for pk, _ in await cluster.audit_rows("deployment_healthy")].count(deployment_pk) == 1
    assert (deployment_pk, None) in await cluster.audit_rows("deployment_healthy")  # the system acted


@needs_postgres
async def test_r23_no_rollout_is_driven_twice_with_two_processes(cluster):
    """Six deployments, started through A and B alternately and due at about the same
    time, are each ended once: one deployment_healthy event apiece, and no other ending."""
    started = []
    for i, name in enumerate(("d1", "d2", "d3", "d4", "d5", "d6")):
        process = cluster.a if i % 2 == 0 else cluster.b
        started.append(cluster.deploy(name, cluster.register_image(name, process), process))
    assert {d["status"] for d in started} == {"PROGRESSING"}
    for deployment in started:
        cluster.wait_for_status(deployment["id"], cluster.a)
    await asyncio.sleep(1.0)  # five more polling rounds of each process, to let a duplicate show

    pks = [int(d["id"].split(":")[1]) for d in started]
    healthy = [pk for pk, _ in await cluster.audit_rows("deployment_healthy")]
    assert {pk: healthy.count(pk) for pk in pks} == {pk: 1 for pk in pks}
    for other in ("deployment_degraded", "deployment_failed", "deployment_superseded"):
        assert not set(pks) & {pk for pk, _ in await cluster.audit_rows(other)}, other

    # The same, as a super-admin reads it through auditEvents on B.
    for name, deployment in zip(("d1", "d2", "d3", "d4", "d5", "d6"), started, strict=True):
        nodes = cluster.admin.on(cluster.b).ok(
            AUDIT, {"f": {"application": name, "action": "deployment_healthy"}}
        )["auditEvents"]["edges"]
        assert [edge["node"] for edge in nodes] == [
            {"action": "deployment_healthy", "objectId": deployment["id"], "actor": None}
        ]


def _children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@needs_postgres
def test_serve_with_two_workers_answers_and_stops_cleanly_on_sigterm(cluster):
    server = cluster.processes.start("workers", "--workers", "2")
    cluster.processes.wait_ready(server)
    assert server.http.get("/healthz").status_code == 200
    admin = cluster.admin.on(server)
    assert admin.ok("{ me { email isSuperAdmin } }") == {
        "me": {"email": "admin@example.com", "isSuperAdmin": True}
    }
    pipeline = admin.ok("query($id: ID!) { pipeline(id: $id) { id } }", {"id": cluster.ids["shop"]})
    assert pipeline == {"pipeline": {"id": cluster.ids["shop"]}}
    workers = _children(server.popen.pid)
    assert len(workers) >= 2, workers  # two workers (and possibly a resource tracker)
    server.http.close()

    server.popen.send_signal(signal.SIGTERM)
    try:
        returncode = server.popen.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve --workers 2 did not stop within 30 s of SIGTERM:\n{server.tail()}")
    assert returncode == 0, server.tail()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), server.tail()


def test_serve_with_two_workers_on_sqlite_is_refused(tmp_path):
    database = tmp_path / "greenlight.sqlite3"
    popen = subprocess.Popen(
        [sys.executable, "-m", "greenlight", "serve", "--port", str(free_port()), "--workers", "2"],
        cwd=tmp_path,
        env=_environment(f"sqlite://{database}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = popen.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("serve --workers 2 on SQLite kept running instead of refusing")
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=10)
    assert popen.returncode not in (0, None)
    assert "PostgreSQL" in stderr
    assert not database.exists()  # refused before anything was done

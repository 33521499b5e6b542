"""Test fixtures: a fresh database per test (SQLite always, PostgreSQL when configured),
the ASGI app, GraphQL clients per user, and a small world built in one line."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from tortoise import connections

from greenlight import db
from greenlight.app import create_app
from greenlight.config import Settings
from greenlight.policies import Action, Authorizer, Scope

POSTGRES_URL = os.environ.get("GREENLIGHT_TEST_POSTGRES_URL")
TABLES = (
    "audit_events",
    "image_checks",
    "image_labels",
    "audit_cursors",
    "chat_deliveries",
    "chat_channels",
    "deploy_freezes",
    "policy_approvers",
    "group_quorums",
    "approval_exceptions",
    "webhook_deliveries",
    "email_outbox",
    "rejections",
    "approvals",
    "named_approvers",
    "deployments",
    "approval_requests",
    "images",
    "pipelines",
    "role_bindings",
    "group_members",
    "groups",
    "api_tokens",
    "users",
    "applications",
    "environments",
    "policy_version",
)


def _pg_server_url(database: str) -> str:
    base = POSTGRES_URL.rstrip("/")
    prefix, _, _ = base.rpartition("/")
    return f"{prefix}/{database}"


async def _build_world_into(database_url: str) -> WorldData:
    """Connects to an empty migrated database, builds the world in it, and disconnects."""
    await db.connect(database_url)
    try:
        app = create_app(Settings(database_url=database_url, background_jobs=False), manage_database=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://greenlight.test") as http:
            world = await build_world(http)
        return WorldData(
            clients={n: (c.token, c.user_id, c.email) for n, c in world.clients.items()},
            ids=dict(world.ids),
        )
    finally:
        await db.close()


@dataclass
class Templates:
    """Migrated databases to copy for each test: empty, and holding the world."""

    empty: str
    world: str
    world_data: WorldData


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory) -> Templates:
    folder = tmp_path_factory.mktemp("templates")
    empty, world = folder / "empty.sqlite3", folder / "world.sqlite3"
    asyncio.run(db.migrate(f"sqlite://{empty}"))
    shutil.copy(empty, world)
    data = asyncio.run(_build_world_into(f"sqlite://{world}"))
    return Templates(str(empty), str(world), data)


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(_pg_server_url("postgres").replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def postgres_templates() -> AsyncIterator[Templates]:
    """Template databases of this test run's own, dropped at the end with every copy."""
    if not POSTGRES_URL:
        pytest.skip("GREENLIGHT_TEST_POSTGRES_URL is not set")
    empty, world = f"greenlight_test_{RUN_ID}_empty", f"greenlight_test_{RUN_ID}_world"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{empty}"'))
        asyncio.run(db.migrate(_pg_server_url(empty)))
        asyncio.run(_pg_admin(f'CREATE DATABASE "{world}" TEMPLATE "{empty}"'))
        data = asyncio.run(_build_world_into(_pg_server_url(world)))
        yield Templates(empty, world, data)
    finally:
        for name in (world, empty):
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def templates(request, backend) -> Templates:
    return request.getfixturevalue(f"{backend}_templates")


@pytest.fixture
def database_url(request, backend, templates, tmp_path) -> AsyncIterator[str]:
    """A database of the test's own: a copy of the world template if the test uses `world`,
    else of the empty one."""
    template = templates.world if "world" in request.fixturenames else templates.empty
    if backend == "sqlite":
        path = tmp_path / "greenlight.sqlite3"
        shutil.copy(template, path)
        yield f"sqlite://{path}"
        return
    name = f"greenlight_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield _pg_server_url(name)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database(database_url, backend) -> AsyncIterator[str]:
    await db.connect(database_url)
    try:
        yield backend
    finally:
        await db.close()


@pytest.fixture
def settings(database_url) -> Settings:
    # No mutation rate limit in tests (tests of the limit set their own).
    return Settings(
        database_url=database_url, background_jobs=False, rollout_seconds=90, mutations_per_minute=0
    )


@pytest.fixture
async def app(database, settings):
    return create_app(settings, manage_database=False)


class GraphQLError(AssertionError):
    pass


@dataclass
class Client:
    """Speaks GraphQL to the ASGI app as one user (or anonymously)."""

    http: httpx.AsyncClient
    token: str | None
    user_id: str | None = None
    email: str | None = None

    async def execute(self, query: str, variables: dict | None = None, **headers) -> dict:
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def ok(self, query: str, variables: dict | None = None) -> dict:
        """The data of a query that must succeed."""
        body = await self.execute(query, variables)
        if body.get("errors"):
            raise GraphQLError(f"unexpected errors: {body['errors']}")
        return body["data"]

    async def fails(self, query: str, variables: dict | None = None) -> dict:
        """The first error of a query that must fail; it has message and extensions.code."""
        body = await self.execute(query, variables)
        assert body.get("errors"), f"expected an error, got {body}"
        return body["errors"][0]

    async def code(self, query: str, variables: dict | None = None) -> str:
        return (await self.fails(query, variables))["extensions"]["code"]


@dataclass
class WorldData:
    clients: dict[str, tuple[str, str, str]]
    ids: dict[str, str]


@dataclass
class World:
    """Users per role, two applications, two environments, three pipelines.

    - applications `shop` and `billing`; environments `staging` and `prod`
    - pipelines: shop/staging (no approval), shop/prod (2 approvals, 24 h),
      billing/prod (1 approval)
    - users: admin, admin2 (super-admins); dev, dev2 (build-and-deploy on shop/*);
      approver1..3 (image-approver on shop/*); prod_approver (image-approver on shop/prod);
      viewer (viewer on shop/*); billing_dev (build-and-deploy on billing/*);
      billing_approver (image-approver on billing/*); nobody (no role)
    """

    http: httpx.AsyncClient
    clients: dict[str, Client] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Client:
        return self.clients[name]

    @property
    def anonymous(self) -> Client:
        return Client(self.http, None)

    async def register_image(
        self, who: str = "dev", application: str = "shop", tag: str | None = None
    ) -> str:
        """Registers a fresh image as `who`; returns its id."""
        digest = "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex
        data = await self[who].ok(
            """mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }""",
            {
                "i": {
                    "application": application,
                    "repository": f"registry.example.com/acme/{application}",
                    "tag": tag or f"v-{digest[7:15]}",
                    "digest": digest,
                }
            },
        )
        return data["registerImage"]["id"]

    async def request_approval(
        self, image_id: str, pipeline: str = "shop/prod", who: str = "dev", approvers: list[str] = ()
    ) -> str:
        data = await self[who].ok(
            """mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }""",
            {
                "i": {
                    "pipelineId": self.ids[pipeline],
                    "imageId": image_id,
                    "approverIds": [self[a].user_id for a in approvers],
                }
            },
        )
        return data["requestApproval"]["id"]

    async def approve(self, request_id: str, who: str, acknowledge_stale: bool = False) -> dict:
        data = await self[who].ok(
            "mutation($id: ID!, $ack: Boolean) { approveRequest(id: $id, acknowledgeStale: $ack) { id state } }",
            {"id": request_id, "ack": acknowledge_stale},
        )
        return data["approveRequest"]

    async def approved_image(self, pipeline: str = "shop/prod") -> tuple[str, str]:
        """An image registered (by dev, or admin for billing), requested by dev2 (billing_dev)
        and fully approved; returns (image, request)."""
        shop = pipeline.startswith("shop")
        image = await self.register_image("dev" if shop else "admin", pipeline.split("/")[0])
        requester = "dev2" if shop else "billing_dev"
        request = await self.request_approval(image, pipeline, who=requester)
        approvers = ["approver1", "approver2"] if shop else ["billing_approver"]
        for approver in approvers:
            await self.approve(request, approver)
        return image, request

    async def deploy(
        self, image_id: str, pipeline: str = "shop/prod", who: str = "dev", acknowledge_stale: bool = False
    ) -> dict:
        data = await self[who].ok(
            """mutation($i: DeployImageInput!) {
                 deployImage(input: $i) { id status image { id } }
               }""",
            {
                "i": {
                    "pipelineId": self.ids[pipeline],
                    "imageId": image_id,
                    "acknowledgeStale": acknowledge_stale,
                }
            },
        )
        return data["deployImage"]


ROLES = {
    "admin2": [("SUPER_ADMIN", "*", "*")],
    "dev": [("BUILD_AND_DEPLOY", "shop", "*")],
    "dev2": [("BUILD_AND_DEPLOY", "shop", "*")],
    "approver1": [("IMAGE_APPROVER", "shop", "*")],
    "approver2": [("IMAGE_APPROVER", "shop", "*")],
    "approver3": [("IMAGE_APPROVER", "shop", "*")],
    "prod_approver": [("IMAGE_APPROVER", "shop", "prod")],
    "viewer": [("VIEWER", "shop", "*")],
    "billing_dev": [("BUILD_AND_DEPLOY", "billing", "*")],
    "billing_approver": [("IMAGE_APPROVER", "billing", "*")],
    "nobody": [],
}


async def build_world(http: httpx.AsyncClient) -> World:
    from greenlight.workflow.identity import bootstrap

    world = World(http)
    admin_user, admin_token = await bootstrap("admin@example.com")
    admin = Client(http, admin_token, f"User:{admin_user.id}", admin_user.email)
    world.clients["admin"] = admin
    for name in ("shop", "billing"):
        data = await admin.ok("mutation($n: String!) { createApplication(name: $n) { id } }", {"n": name})
        world.ids[name] = data["createApplication"]["id"]
    for name in ("staging", "prod"):
        data = await admin.ok("mutation($n: String!) { createEnvironment(name: $n) { id } }", {"n": name})
        world.ids[name] = data["createEnvironment"]["id"]
    for app, env, required, ttl in (
        ("shop", "staging", 0, None),
        ("shop", "prod", 2, 24),
        ("billing", "prod", 1, None),
    ):
        data = await admin.ok(
            """mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }""",
            {
                "i": {
                    "applicationId": world.ids[app],
                    "environmentId": world.ids[env],
                    "requiredApprovals": required,
                    "ttlHours": ttl,
                }
            },
        )
        world.ids[f"{app}/{env}"] = data["createPipeline"]["id"]
    for name, bindings in ROLES.items():
        email = f"{name}@example.com"
        data = await admin.ok(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            {"i": {"email": email, "name": name}},
        )
        user_id = data["createUser"]["id"]
        for role, app, env in bindings:
            await admin.ok(
                "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
                {"i": {"userId": user_id, "role": role, "application": app, "environment": env}},
            )
        data = await admin.ok(
            "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
            {"i": {"userId": user_id, "name": "tests"}},
        )
        world.clients[name] = Client(http, data["issueApiToken"]["token"], user_id, email)
    return world


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://greenlight.test") as client:
        yield client


@pytest.fixture
async def world(http, templates) -> World:
    """The world of `build_world`, copied from a template database built once per run."""
    data = templates.world_data
    clients = {
        name: Client(http, token, user_id, email) for name, (token, user_id, email) in data.clients.items()
    }
    return World(http, clients=clients, ids=dict(data.ids))


@dataclass
class Cluster:
    """Two apps sharing one database, as two server processes do: the world's clients
    speak to process A; `on_b` gives the same user on process B."""

    world: object
    a: Authorizer
    b: Authorizer
    http_b: httpx.AsyncClient

    def on_a(self, who: str) -> Client:
        return self.world[who]

    def on_b(self, who: str) -> Client:
        client = self.world[who]
        return Client(self.http_b, client.token, client.user_id, client.email)

    def clients(self, who: str) -> dict[str, Client]:
        return {"A": self.on_a(who), "B": self.on_b(who)}

    def cached(
        self, who: str, action: Action, scope: Scope = Scope("shop", "prod")
    ) -> dict[str, bool | None]:
        user = int(self.world[who].user_id.split(":")[1])
        return {"A": self.a.cached(user, action, scope), "B": self.b.cached(user, action, scope)}


@pytest.fixture
async def cluster(world, app, settings) -> AsyncIterator[Cluster]:
    app_b = create_app(settings, manage_database=False)
    transport = httpx.ASGITransport(app=app_b)
    async with httpx.AsyncClient(transport=transport, base_url="http://b.greenlight.test") as http_b:
        yield Cluster(world, app.state.authorizer, app_b.state.authorizer, http_b)


class Clock:
    """The workflow's "now": real time until `set`."""

    def __init__(self, real) -> None:
        self.real = real
        self.at: datetime | None = None

    def set(self, at: str | datetime) -> None:
        if isinstance(at, str):
            at = datetime.fromisoformat(at.replace("Z", "+00:00"))
        self.at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self.at if self.at is not None else self.real()


@pytest.fixture
def clock(world, monkeypatch) -> Clock:
    """Sets the "now" of greenlight.clock in every greenlight module that reads it."""
    from greenlight import clock as clock_module

    real = clock_module.now
    fake = Clock(real)
    for name, module in list(sys.modules.items()):
        if name.startswith("greenlight") and getattr(module, "now", None) is real:
            monkeypatch.setattr(module, "now", fake.now)
    return fake


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, to assert that a refused mutation changed nothing.

    A token's `last_used_at` is bookkeeping of authentication, not state a mutation
    changes, so it is left out."""
    conn = connections.get("default")
    result = {}
    for table in TABLES:
        rows = await conn.execute_query_dict(f"SELECT * FROM {table} ORDER BY id")
        result[table] = [{k: v for k, v in row.items() if k != "last_used_at"} for row in rows]
    return result


@pytest.fixture
def unchanged():
    """`async with unchanged(): ...` asserts the database is the same afterwards."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def check():
        before = await snapshot()
        yield
        after = await snapshot()
        for table in TABLES:
            assert after[table] == before[table], f"{table} changed"

    return check

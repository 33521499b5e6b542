"""The whole story, end to end: a real `greenlight serve` process spoken to over HTTP.

`greenlight bootstrap` makes the first super-admin; that admin sets up an application, an
environment, a pipeline needing two approvals, users, roles and tokens; CI registers an
image; a developer asks for approval; approvers approve; the image is deployed and the
built-in simulator rolls it out to HEALTHY. Then the other ends of a request: cancelled,
rejected, let expire. Runs on SQLite, and on PostgreSQL too when
GREENLIGHT_TEST_POSTGRES_URL is set (in a database of its own, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import POSTGRES_URL, _pg_server_url
from tests.support import bootstrap_token, free_port, start_serve

STARTUP_TIMEOUT = 30.0
ROLLOUT_TIMEOUT = 20.0


# --- the server process -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path_factory.mktemp('e2e') / 'g.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("GREENLIGHT_TEST_POSTGRES_URL is not set")
    name = f"greenlight_e2e_{uuid.uuid4().hex[:12]}"
    admin_url = _pg_server_url("postgres").replace("postgres://", "postgresql://", 1)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _pg_server_url(name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Server:
    url: str
    admin_token: str
    log: Path
    http: httpx.Client


def _environment(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env.update(
        GREENLIGHT_DATABASE_URL=database_url,
        GREENLIGHT_ROLLOUT_SECONDS="1",
        GREENLIGHT_ROLLOUT_POLL_SECONDS="0.2",
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_until_ready(http: httpx.Client, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    ready = set()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"greenlight serve exited with {process.returncode}:\n{log.read_text()}")
        for path in ("/healthz", "/readyz"):
            try:
                if http.get(path, timeout=1.0).status_code == 200:
                    ready.add(path)
            except httpx.TransportError:
                pass
        if ready == {"/healthz", "/readyz"}:
            return
        time.sleep(0.1)
    pytest.fail(f"greenlight serve did not become ready in {STARTUP_TIMEOUT} s:\n{log.read_text()}")


@contextlib.contextmanager
def serving(cwd: Path, env: dict[str, str], token: str, port: int | None = None) -> Iterator[Server]:
    """`greenlight serve` in `cwd` with `env`, ready (healthz and readyz), until the block ends;
    on `port` when given (a free one otherwise)."""
    port = port or free_port()
    log = cwd / "serve.log"
    process = start_serve(cwd, env, port, log)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30.0) as http:
            _wait_until_ready(http, process, log)
            yield Server(url, token, log, http)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory) -> Iterator[Server]:
    cwd = tmp_path_factory.mktemp("serve")
    env = _environment(database_url)
    token = bootstrap_token(cwd, env, "admin@example.com")
    with serving(cwd, env, token) as server:
        yield server


# --- speaking GraphQL over HTTP -----------------------------------------------------------------


@dataclass
class Api:
    """Speaks GraphQL over HTTP as one user."""

    http: httpx.Client
    token: str
    user_id: str | None = None

    def execute(self, query: str, variables: dict | None = None) -> dict:
        response = self.http.post(
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


REGISTER = """mutation($i: RegisterImageInput!) {
  registerImage(input: $i) { id digest builtBy { id } application { name } }
}"""
REQUEST = """mutation($i: RequestApprovalInput!) {
  requestApproval(input: $i) {
    id state requiredApprovals requestedBy { id } notifiedApprovers { id } expiresAt
  }
}"""
APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state approvals { user { id } } } }"
REJECT = """mutation($id: ID!, $r: String!) {
  rejectRequest(id: $id, reason: $r) { id state rejection { user { id } comment } }
}"""
CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
EXPIRE = "mutation($id: ID!) { expireApproval(id: $id) { id state } }"
DEPLOY = """mutation($i: DeployImageInput!) {
  deployImage(input: $i) { id status image { id } approvalRequest { id state } }
}"""
PIPELINE = """query($id: ID!) {
  pipeline(id: $id) {
    deployableImages { id }
    activeImage { id }
    activeDeployment { id status }
  }
}"""
ELIGIBLE = "query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { id } }"
IMAGE_STATE = """query($r: ID!, $p: ID!) {
  approvalRequest(id: $r) { state image { approvalState(pipelineId: $p) activeOn { name } } }
}"""


@dataclass
class Story:
    server: Server
    admin: Api
    ids: dict[str, str] = field(default_factory=dict)
    users: dict[str, Api] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Api:
        return self.admin if name == "admin" else self.users[name]

    def register_image(self, who: str = "ci") -> str:
        digest = "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex
        data = self[who].ok(
            REGISTER,
            {
                "i": {
                    "application": "shop",
                    "repository": "registry.example.com/acme/shop",
                    "tag": f"build-{digest[7:15]}",
                    "digest": digest,
                }
            },
        )["registerImage"]
        assert data["digest"] == digest
        assert data["builtBy"]["id"] == self[who].user_id
        assert data["application"]["name"] == "shop"
        return data["id"]

    def request(self, image: str, approvers: tuple[str, ...] = (), who: str = "dev") -> dict:
        return self[who].ok(
            REQUEST,
            {
                "i": {
                    "pipelineId": self.ids["pipeline"],
                    "imageId": image,
                    "approverIds": [self[a].user_id for a in approvers],
                    "comment": "ship it",
                }
            },
        )["requestApproval"]

    def deploy_code(self, image: str, who: str = "dev") -> str:
        return self[who].code(DEPLOY, {"i": {"pipelineId": self.ids["pipeline"], "imageId": image}})

    def pipeline(self) -> dict:
        return self.admin.ok(PIPELINE, {"id": self.ids["pipeline"]})["pipeline"]

    def deployable(self) -> list[str]:
        return [i["id"] for i in self.pipeline()["deployableImages"]]

    def image_state(self, request: str) -> dict:
        return self.admin.ok(IMAGE_STATE, {"r": request, "p": self.ids["pipeline"]})["approvalRequest"]


# Who does what. ci and dev hold IMAGE_APPROVER too, so that what refuses their approvals
# is the self-approval rule (R10), not a missing role.
ROLES = {
    "ci": [("BUILD_AND_DEPLOY", "shop", "*"), ("IMAGE_APPROVER", "shop", "*")],
    "dev": [("BUILD_AND_DEPLOY", "shop", "*"), ("IMAGE_APPROVER", "shop", "*")],
    "alice": [("IMAGE_APPROVER", "shop", "prod")],
    "bob": [("IMAGE_APPROVER", "shop", "prod")],
    "viewer": [("VIEWER", "shop", "*")],
}


@pytest.fixture(scope="module")
def story(server) -> Story:
    """The admin's set-up: application, environment, pipeline (2 approvals), users, roles, tokens."""
    admin = Api(server.http, server.admin_token)
    me = admin.ok("{ me { id email isSuperAdmin } }")["me"]
    assert me["email"] == "admin@example.com" and me["isSuperAdmin"] is True
    admin.user_id = me["id"]
    story = Story(server, admin)

    story.ids["shop"] = admin.ok('mutation { createApplication(name: "shop") { id } }')["createApplication"][
        "id"
    ]
    story.ids["prod"] = admin.ok('mutation { createEnvironment(name: "prod") { id } }')["createEnvironment"][
        "id"
    ]
    pipeline = admin.ok(
        """mutation($i: CreatePipelineInput!) {
             createPipeline(input: $i) {
               id application { name } environment { name } strategy triggerType
               approvalPolicy { requiredApprovals ttlHours approversCanDeploy }
             }
           }""",
        {
            "i": {
                "applicationId": story.ids["shop"],
                "environmentId": story.ids["prod"],
                "requiredApprovals": 2,
                "ttlHours": 24,
            }
        },
    )["createPipeline"]
    assert pipeline["application"]["name"] == "shop" and pipeline["environment"]["name"] == "prod"
    assert (pipeline["strategy"], pipeline["triggerType"]) == ("ROLLING", "MANUAL")
    assert pipeline["approvalPolicy"] == {"requiredApprovals": 2, "ttlHours": 24, "approversCanDeploy": False}
    story.ids["pipeline"] = pipeline["id"]

    for name, bindings in ROLES.items():
        user_id = admin.ok(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            {"i": {"email": f"{name}@example.com", "name": name}},
        )["createUser"]["id"]
        for role, app, env in bindings:
            binding = admin.ok(
                """mutation($i: RoleBindingInput!) {
                     grantRole(input: $i) { role application environment user { id } }
                   }""",
                {"i": {"userId": user_id, "role": role, "application": app, "environment": env}},
            )["grantRole"]
            assert binding == {"role": role, "application": app, "environment": env, "user": {"id": user_id}}
        issued = admin.ok(
            """mutation($i: IssueApiTokenInput!) {
                 issueApiToken(input: $i) { token apiToken { name user { id } } }
               }""",
            {"i": {"userId": user_id, "name": "e2e"}},
        )["issueApiToken"]
        assert issued["apiToken"] == {"name": "e2e", "user": {"id": user_id}}
        story.users[name] = Api(server.http, issued["token"], user_id)
        assert story.users[name].ok("{ me { email } }")["me"]["email"] == f"{name}@example.com"
    return story


# --- the story ----------------------------------------------------------------------------------


def test_story_server_answers_health_and_refuses_anonymous(server):
    assert server.http.get("/healthz").status_code == 200
    assert server.http.get("/readyz").status_code == 200
    assert Api(server.http, "not-a-token").code("{ me { id } }") == "UNAUTHENTICATED"
    body = server.http.post("/graphql", json={"query": "{ me { id } }"}).json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_story_approve_deploy_and_roll_out(story):
    """R3, R6, R8 to R12, R19 to R23: from a CI build to a HEALTHY deployment."""
    pipeline_id = story.ids["pipeline"]
    image = story.register_image("ci")
    assert (
        story["viewer"].code(
            REGISTER,
            {"i": {"application": "shop", "repository": "r/x", "tag": "t", "digest": "sha256:" + "b" * 64}},
        )
        == "FORBIDDEN"
    )

    # R8, R9: the developer sees who may approve (not the builder, not themself), names
    # two of them, and may not name the builder.
    eligible = story["dev"].ok(ELIGIBLE, {"p": pipeline_id, "i": image})["eligibleApprovers"]
    assert {u["id"] for u in eligible} == {story[n].user_id for n in ("admin", "alice", "bob")}
    naming_builder = {"pipelineId": pipeline_id, "imageId": image, "approverIds": [story["ci"].user_id]}
    assert story["dev"].code(REQUEST, {"i": naming_builder}) == "BAD_USER_INPUT"

    request = story.request(image, approvers=("alice", "bob"))
    assert request["state"] == "PENDING"
    assert {u["id"] for u in request["notifiedApprovers"]} == {story["alice"].user_id, story["bob"].user_id}
    assert request["requiredApprovals"] == 2
    assert request["requestedBy"]["id"] == story["dev"].user_id
    assert request["expiresAt"] is not None
    rid = request["id"]

    # R10: neither the builder nor the requester may decide it, though both hold the role.
    assert story["ci"].code(APPROVE, {"id": rid}) == "SELF_APPROVAL"
    assert story["dev"].code(APPROVE, {"id": rid}) == "SELF_APPROVAL"
    assert story["ci"].code(REJECT, {"id": rid, "r": "mine"}) == "SELF_APPROVAL"
    assert story["viewer"].code(APPROVE, {"id": rid}) == "FORBIDDEN"

    # R12: one of two approvals is no approval.
    first = story["alice"].ok(APPROVE, {"id": rid})["approveRequest"]
    assert first["state"] == "PENDING"
    assert [a["user"]["id"] for a in first["approvals"]] == [story["alice"].user_id]
    assert story["alice"].code(APPROVE, {"id": rid}) == "INVALID_STATE"  # R11
    assert story.deploy_code(image) == "NOT_APPROVED"
    assert image not in story.deployable()
    assert story.image_state(rid)["image"]["approvalState"] == "PENDING"

    second = story["bob"].ok(APPROVE, {"id": rid})["approveRequest"]
    assert second["state"] == "APPROVED"
    assert story.deployable() == [image]
    assert story.image_state(rid)["image"]["approvalState"] == "APPROVED"
    assert story.deploy_code(image, who="alice") == "FORBIDDEN"  # R3: approving is not deploying

    deployment = story["dev"].ok(DEPLOY, {"i": {"pipelineId": pipeline_id, "imageId": image}})["deployImage"]
    assert deployment["status"] == "PROGRESSING"
    assert deployment["image"]["id"] == image
    assert deployment["approvalRequest"] == {"id": rid, "state": "CONSUMED"}

    status = "PROGRESSING"
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    while status == "PROGRESSING" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = story["viewer"].ok(
            "query($id: ID!) { deployment(id: $id) { status } }", {"id": deployment["id"]}
        )["deployment"]["status"]
    assert status == "HEALTHY", story.server.log.read_text()[-3000:]

    after = story.pipeline()
    assert after["activeImage"] == {"id": image}
    assert after["activeDeployment"] == {"id": deployment["id"], "status": "HEALTHY"}
    assert image not in [i["id"] for i in after["deployableImages"]]
    assert after["deployableImages"] == []
    state = story.image_state(rid)
    assert state["state"] == "CONSUMED"
    assert state["image"] == {"approvalState": "CONSUMED", "activeOn": [{"name": "prod"}]}
    assert story.deploy_code(image) == "CONFLICT"  # R22
    # R20: the approval was used; a new request is refused while the image is active (R6).
    assert (
        story["dev"].code(REQUEST, {"i": {"pipelineId": pipeline_id, "imageId": image, "approverIds": []}})
        == "CONFLICT"
    )


def test_story_super_admin_builder_cannot_approve_own_image(story):
    """R10, super-admins included: the admin built it, so the admin may not decide it."""
    image = story.register_image("admin")
    rid = story.request(image)["id"]
    assert story.admin.code(APPROVE, {"id": rid}) == "SELF_APPROVAL"
    assert story.admin.code(REJECT, {"id": rid, "r": "mine"}) == "SELF_APPROVAL"
    assert story.image_state(rid)["state"] == "PENDING"


def test_story_super_admin_requester_cannot_approve_own_request(story):
    image = story.register_image("ci")
    rid = story.request(image, who="admin")["id"]
    assert story.admin.code(APPROVE, {"id": rid}) == "SELF_APPROVAL"
    assert story.image_state(rid)["state"] == "PENDING"


def test_story_cancel(story):
    """R14, R16: the requester withdraws a request; nothing can be done with it afterwards."""
    image = story.register_image("ci")
    rid = story.request(image)["id"]
    story["alice"].ok(APPROVE, {"id": rid})
    assert story["alice"].code(CANCEL, {"id": rid}) == "FORBIDDEN"
    assert story["dev"].ok(CANCEL, {"id": rid})["cancelApprovalRequest"]["state"] == "CANCELLED"
    assert story["bob"].code(APPROVE, {"id": rid}) == "INVALID_STATE"
    assert story["dev"].code(CANCEL, {"id": rid}) == "INVALID_STATE"
    assert story.deploy_code(image) == "NOT_APPROVED"
    assert image not in story.deployable()
    assert story.image_state(rid)["image"]["approvalState"] == "CANCELLED"


def test_story_reject(story):
    """R13: an approver rejects with a reason; the request is over."""
    image = story.register_image("ci")
    rid = story.request(image)["id"]
    assert story["alice"].code(REJECT, {"id": rid, "r": "  "}) == "BAD_USER_INPUT"
    rejected = story["alice"].ok(REJECT, {"id": rid, "r": "fails the smoke test"})["rejectRequest"]
    assert rejected["state"] == "REJECTED"
    assert rejected["rejection"] == {
        "user": {"id": story["alice"].user_id},
        "comment": "fails the smoke test",
    }
    assert story["bob"].code(APPROVE, {"id": rid}) == "INVALID_STATE"
    assert story.deploy_code(image) == "NOT_APPROVED"
    assert story.image_state(rid)["image"]["approvalState"] == "REJECTED"


def test_story_expire(story):
    """R15: the requester lets an approved request expire; it can no longer be deployed."""
    image = story.register_image("ci")
    rid = story.request(image)["id"]
    assert story["dev"].code(EXPIRE, {"id": rid}) == "INVALID_STATE"  # only an APPROVED one
    story["alice"].ok(APPROVE, {"id": rid})
    assert story["bob"].ok(APPROVE, {"id": rid})["approveRequest"]["state"] == "APPROVED"
    assert image in story.deployable()
    assert story["alice"].code(EXPIRE, {"id": rid}) == "FORBIDDEN"
    assert story["dev"].ok(EXPIRE, {"id": rid})["expireApproval"]["state"] == "EXPIRED"
    assert image not in story.deployable()
    assert story.deploy_code(image) == "NOT_APPROVED"
    assert story.image_state(rid)["image"]["approvalState"] == "EXPIRED"
    # A fresh request may follow the expired one (R6: it is no longer live).
    assert story.request(image)["state"] == "PENDING"

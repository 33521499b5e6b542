"""The authorization matrix: every role x scope kind x operation x object, the
expected outcome computed here from RULES.md by a small table of our own (not from
greenlight.policies), compared with what the API answers.

- Roles: SUPER_ADMIN (global), BUILD_AND_DEPLOY, IMAGE_APPROVER, VIEWER, DEPLOY_AGENT; scope
  kinds: exact "shop/prod", "shop/*", "*/prod", "*/*", and none at all; and anonymous.
- Objects: the four pipelines shop/staging, shop/prod, billing/staging, billing/prod (each
  requiring one approval) and the objects on them, plus ids that name nothing.
- Outcomes: ALLOWED; FORBIDDEN (the caller sees the object but lacks the permission);
  NOT_FOUND (the caller cannot see it, answered exactly as for an object that does not exist,
  R1); UNAUTHENTICATED.

Each case starts from a state where only authorization decides: the objects it acts on are
made by an admin (so the subject is neither builder nor requester nor approver), fresh once
a case has used them; a refused case must leave its object as it was (checked after every
refusal). Failures are reported as one list per test."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from greenlight.config import Settings
from greenlight.models import (
    ApiToken,
    Approval,
    ApprovalRequest,
    ApprovalState,
    Deployment,
    DeploymentStatus,
    Pipeline,
    Rejection,
    RoleBinding,
)
from tests.conftest import Client, World

# --- the expected outcomes, from RULES.md ---------------------------------------------------

# What each role lets its holder do on the scopes it is granted on: R1 (any role sees its
# scopes), R2 (super-admins administer), R3 (build-and-deploy registers images, requests
# approval, deploys), R4 (image-approvers and super-admins approve and reject), R14/R15
# (super-admins close anyone's request), and the README's deploy-agent: the only role that
# reports rollout status, "not even super-admins".
ROLE_ACTIONS = {
    "SUPER_ADMIN": {"view", "register", "request", "deploy", "approve", "close-any", "administer"},
    "BUILD_AND_DEPLOY": {"view", "register", "request", "deploy"},
    "IMAGE_APPROVER": {"view", "approve"},
    "VIEWER": {"view"},
    "DEPLOY_AGENT": {"view", "report"},
}
SCOPE_KINDS = {"exact": ("shop", "prod"), "app/*": ("shop", "*"), "*/env": ("*", "prod"), "*/*": ("*", "*")}
PIPELINES = ("shop/staging", "shop/prod", "billing/staging", "billing/prod")
MISSING = "missing"  # an object that does not exist
ALLOWED, FORBIDDEN, NOT_FOUND, UNAUTHENTICATED = "ALLOWED", "FORBIDDEN", "NOT_FOUND", "UNAUTHENTICATED"


@dataclass
class Subject:
    name: str
    bindings: list[tuple[str, str, str]]  # (role, application, environment)
    client: Client
    user_id: str | None = None

    def may(self, action: str, application: str, environment: str | None = None) -> bool:
        """`environment` None: on any environment of the application (images)."""
        return any(
            action in ROLE_ACTIONS[role]
            and app in ("*", application)
            and (environment is None or env in ("*", environment))
            for role, app, env in self.bindings
        )

    @property
    def anonymous(self) -> bool:
        return self.client.token is None


# Operation -> the action it needs on the object's scope. "pipeline" operations act on a
# pipeline or an object on it; "application" ones on the application (images belong to an
# application, visible and registered through any environment of it, R1 and R3).
PIPELINE_ACTIONS = {
    "view pipeline": "view",
    "view request": "view",
    "list requests": "view",
    "view deployment": "view",
    "request approval": "request",
    "approve": "approve",
    "reject": "approve",
    "cancel someone else's request": "close-any",
    "expire someone else's approval": "close-any",
    "deploy": "deploy",
    "report deployment status": "report",
}
APPLICATION_ACTIONS = {"list images": "view", "register image": "register"}
# R2: only super-admins administer; the check needs no object, so nothing is revealed by it and
# every other caller gets FORBIDDEN, whatever the target.
ADMIN_OPERATIONS = (
    "update approval policy",
    "update pipeline",
    "create application",
    "create environment",
    "create user",
    "create pipeline",
    "grant role",
    "revoke role",
    "issue API token",
    "create group",
)


def expected(operation: str, subject: Subject, target: str) -> str:
    if subject.anonymous:
        return UNAUTHENTICATED
    if operation in ADMIN_OPERATIONS:
        if not subject.may("administer", "*", "*"):
            return FORBIDDEN
        return NOT_FOUND if target == MISSING else ALLOWED
    if operation == "revoke someone else's API token":
        # Tokens are seen by their owner and super-admins only (apiTokens): to anyone else
        # another user's token is invisible, like one that does not exist.
        return ALLOWED if subject.may("administer", "*", "*") and target != MISSING else NOT_FOUND
    if target == MISSING:
        return NOT_FOUND
    application, environment = target.split("/")
    if operation in APPLICATION_ACTIONS:
        if not subject.may("view", application):
            return NOT_FOUND
        return ALLOWED if subject.may(APPLICATION_ACTIONS[operation], application) else FORBIDDEN
    if not subject.may("view", application, environment):
        return NOT_FOUND
    return ALLOWED if subject.may(PIPELINE_ACTIONS[operation], application, environment) else FORBIDDEN


# --- the world of the matrix ------------------------------------------------------------------


@pytest.fixture
def settings(database_url) -> Settings:
    """Rollouts through the webhook driver (deliveries are queued, never sent: no background
    jobs), so that a deploy-agent's report is decided by authorization only."""
    return Settings(
        database_url=database_url,
        background_jobs=False,
        mutations_per_minute=0,
        deployer="webhook",
        deploy_webhook_url="http://127.0.0.1:9/greenlight",
        deploy_webhook_secret="matrix",
    )


def digest() -> str:
    return "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex


@dataclass
class Matrix:
    world: World
    subjects: list[Subject] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cases: int = 0
    # (operation, target) -> the objects the next case acts on (ids)
    objects: dict[tuple[str, str], dict] = field(default_factory=dict)

    @property
    def admin(self) -> Client:
        return self.world["admin"]

    # objects made by the admin (requested by admin, approved by admin2) ------------------

    async def image(self, pipeline: str) -> str:
        application = pipeline.split("/")[0]
        data = await self.admin.ok(
            "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }",
            {
                "i": {
                    "application": application,
                    "repository": f"registry.example.com/acme/{application}",
                    "tag": "v1",
                    "digest": digest(),
                }
            },
        )
        return data["registerImage"]["id"]

    async def request(self, pipeline: str, image: str | None = None) -> dict:
        image = image or await self.image(pipeline)
        request = await self.world.request_approval(image, pipeline, who="admin")
        return {"image": image, "request": request, "pipeline": self.world.ids[pipeline]}

    async def approved(self, pipeline: str) -> dict:
        made = await self.request(pipeline)
        assert (await self.world.approve(made["request"], "admin2"))["state"] == "APPROVED"
        return made

    async def deployment(self, pipeline: str) -> dict:
        made = await self.approved(pipeline)
        made["deployment"] = (await self.world.deploy(made["image"], pipeline, who="admin"))["id"]
        return made


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


async def request_is(made: dict, state: ApprovalState, approvals: int) -> bool:
    request = await ApprovalRequest.get(id=pk(made["request"]))
    return (
        request.state == state
        and await Approval.filter(request_id=request.id).count() == approvals
        and not await Rejection.exists(request_id=request.id)
        and not await Deployment.exists(approval_request_id=request.id)
    )


async def never_requested(made: dict) -> bool:
    return not await ApprovalRequest.exists(image_id=pk(made["image"]), pipeline_id=pk(made["pipeline"]))


async def pending(made: dict) -> bool:
    return await request_is(made, ApprovalState.PENDING, 0)


async def approved(made: dict) -> bool:
    return await request_is(made, ApprovalState.APPROVED, 1)


async def progressing(made: dict) -> bool:
    deployment = await Deployment.get(id=pk(made["deployment"]))
    return deployment.status == DeploymentStatus.PROGRESSING and deployment.message is None


async def always(made: dict) -> bool:
    return True


async def token_live(made: dict) -> bool:
    return (await ApiToken.get(id=pk(made["token"]))).revoked_at is None


async def binding_exists(made: dict) -> bool:
    return await RoleBinding.exists(id=pk(made["binding"]))


async def build_matrix(world: World) -> Matrix:
    """Four pipelines needing one approval each, and a user per role and scope kind."""
    matrix = Matrix(world)
    admin = matrix.admin
    policy = """mutation($p: ID!) {
      updateApprovalPolicy(pipelineId: $p, input: {requiredApprovals: 1, ttlHours: null}) { id }
    }"""
    for pipeline in ("shop/staging", "shop/prod", "billing/prod"):
        await admin.ok(policy, {"p": world.ids[pipeline]})
    data = await admin.ok(
        """mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }""",
        {
            "i": {
                "applicationId": world.ids["billing"],
                "environmentId": world.ids["staging"],
                "requiredApprovals": 1,
            }
        },
    )
    world.ids["billing/staging"] = data["createPipeline"]["id"]

    async def subject(name: str, bindings: list[tuple[str, str, str]]) -> Subject:
        email = f"m{len(matrix.subjects)}@example.com"
        user = (
            await admin.ok(
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                {"i": {"email": email, "name": name}},
            )
        )["createUser"]["id"]
        for role, app, env in bindings:
            await admin.ok(
                "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
                {"i": {"userId": user, "role": role, "application": app, "environment": env}},
            )
        token = (
            await admin.ok(
                "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
                {"i": {"userId": user, "name": "matrix"}},
            )
        )["issueApiToken"]["token"]
        made = Subject(name, bindings, Client(world.http, token, user, email), user)
        matrix.subjects.append(made)
        return made

    await subject("SUPER_ADMIN on */*", [("SUPER_ADMIN", "*", "*")])
    for role in ("BUILD_AND_DEPLOY", "IMAGE_APPROVER", "VIEWER", "DEPLOY_AGENT"):
        for kind, (app, env) in SCOPE_KINDS.items():
            await subject(f"{role} on {app}/{env} ({kind})", [(role, app, env)])
    await subject("no role", [])
    matrix.subjects.append(Subject("anonymous", [], Client(world.http, None)))
    return matrix


# --- the operations: (subject, object) -> outcome ----------------------------------------------

ANY = "-"  # administration that acts on no existing object
MISSING_REQUEST = {"request": "ApprovalRequest:999999"}


async def call(subject: Subject, query: str, variables: dict, succeeded: Callable[[dict], bool]) -> str:
    """ALLOWED, or the error codes the API answered."""
    body = await subject.client.execute(query, variables)
    if body.get("errors"):
        codes = sorted({str((e.get("extensions") or {}).get("code")) for e in body["errors"]})
        return "/".join(codes)
    return ALLOWED if succeeded(body["data"]) else f"unexpected data {body['data']}"


@dataclass
class Operation:
    name: str
    make: Callable[[Matrix, str], Awaitable[dict]]  # the object for a target (or MISSING)
    run: Callable[[Matrix, Subject, dict], Awaitable[str]]
    intact: Callable[[dict], Awaitable[bool]] = always  # still as made (usable again)?
    targets: tuple[str, ...] = PIPELINES + (MISSING,)


def returns(root: str, **expected_fields) -> Callable[[dict], bool]:
    def check(data: dict) -> bool:
        found = data.get(root) or {}
        return bool(found) and all(found.get(k) == v for k, v in expected_fields.items())

    return check


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# reads (R1)


async def make_pipeline(m: Matrix, target: str) -> dict:
    return {"pipeline": "Pipeline:999999" if target == MISSING else m.world.ids[target]}


async def view_pipeline(m: Matrix, s: Subject, o: dict) -> str:
    q = "query($id: ID!) { pipeline(id: $id) { id } }"
    return await call(s, q, {"id": o["pipeline"]}, returns("pipeline", id=o["pipeline"]))


async def make_request(m: Matrix, target: str) -> dict:
    return dict(MISSING_REQUEST) if target == MISSING else await m.request(target)


async def make_approved(m: Matrix, target: str) -> dict:
    return dict(MISSING_REQUEST) if target == MISSING else await m.approved(target)


async def make_deployment(m: Matrix, target: str) -> dict:
    return {"deployment": "Deployment:999999"} if target == MISSING else await m.deployment(target)


async def view_request(m: Matrix, s: Subject, o: dict) -> str:
    q = "query($id: ID!) { approvalRequest(id: $id) { id } }"
    return await call(s, q, {"id": o["request"]}, returns("approvalRequest", id=o["request"]))


async def view_deployment(m: Matrix, s: Subject, o: dict) -> str:
    q = "query($id: ID!) { deployment(id: $id) { id } }"
    return await call(s, q, {"id": o["deployment"]}, returns("deployment", id=o["deployment"]))


async def make_listed_image(m: Matrix, target: str) -> dict:
    if target == MISSING:
        return {"application": "Application:999999", "image": None}
    return {"application": m.world.ids[target.split("/")[0]], "image": await m.image(target)}


async def list_images(m: Matrix, s: Subject, o: dict) -> str:
    q = "query($a: ID!) { images(applicationId: $a, first: 100) { edges { node { id } } } }"

    def lists_it(data: dict) -> bool:
        return o["image"] in [e["node"]["id"] for e in data["images"]["edges"]]

    return await call(s, q, {"a": o["application"]}, lists_it)


async def list_requests(m: Matrix, s: Subject, o: dict) -> str:
    """ALLOWED when the list holds the request, NOT_FOUND when it leaves it out (R1)."""
    q = """{ approvalRequests(filter: {states: [PENDING]}, first: 100) {
      totalCount edges { node { id } }
    } }"""
    body = await s.client.execute(q)
    if body.get("errors"):
        return "/".join(sorted({str(e.get("extensions", {}).get("code")) for e in body["errors"]}))
    page = body["data"]["approvalRequests"]
    assert page["totalCount"] <= 100, "the page must hold every visible request"
    return ALLOWED if o["request"] in [e["node"]["id"] for e in page["edges"]] else NOT_FOUND


# building and deploying (R3)


async def make_application(m: Matrix, target: str) -> dict:
    return {"application": "nosuchapp" if target == MISSING else target.split("/")[0]}


async def register_image(m: Matrix, s: Subject, o: dict) -> str:
    q = "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id digest } }"
    d = digest()
    i = {
        "application": o["application"],
        "repository": "registry.example.com/acme/x",
        "tag": "v1",
        "digest": d,
    }
    return await call(s, q, {"i": i}, returns("registerImage", digest=d))


async def make_unrequested(m: Matrix, target: str) -> dict:
    if target == MISSING:
        return {"image": await m.image("shop/prod"), "pipeline": "Pipeline:999999"}
    return {"image": await m.image(target), "pipeline": m.world.ids[target]}


async def unrequested(o: dict) -> bool:
    return o["pipeline"] == "Pipeline:999999" or await never_requested(o)


async def request_approval(m: Matrix, s: Subject, o: dict) -> str:
    q = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id state } }"
    i = {"pipelineId": o["pipeline"], "imageId": o["image"]}
    return await call(s, q, {"i": i}, returns("requestApproval", state="PENDING"))


async def make_deployable(m: Matrix, target: str) -> dict:
    if target == MISSING:
        return {"image": await m.image("shop/prod"), "pipeline": "Pipeline:999999"}
    return await m.approved(target)


async def deployable(o: dict) -> bool:
    return o["pipeline"] == "Pipeline:999999" or await approved(o)


async def deploy(m: Matrix, s: Subject, o: dict) -> str:
    q = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id status } }"
    i = {"pipelineId": o["pipeline"], "imageId": o["image"]}
    return await call(s, q, {"i": i}, returns("deployImage", status="PROGRESSING"))


# approving, rejecting, closing (R4, R14, R15)


def missing_or(check: Callable[[dict], Awaitable[bool]]) -> Callable[[dict], Awaitable[bool]]:
    async def intact(o: dict) -> bool:
        return o == MISSING_REQUEST or await check(o)

    return intact


def on_request(
    mutation: str, state: str, extra: str = ""
) -> Callable[[Matrix, Subject, dict], Awaitable[str]]:
    async def run(m: Matrix, s: Subject, o: dict) -> str:
        q = f"mutation($id: ID!) {{ {mutation}(id: $id{extra}) {{ id state }} }}"
        return await call(s, q, {"id": o["request"]}, returns(mutation, state=state))

    return run


# reporting rollouts (deploy-agents) and administration (R2)


async def unreported(o: dict) -> bool:
    return o["deployment"] == "Deployment:999999" or await progressing(o)


async def report_status(m: Matrix, s: Subject, o: dict) -> str:
    q = """mutation($id: ID!, $m: String) {
      reportDeploymentStatus(deploymentId: $id, status: PROGRESSING, message: $m) { id message }
    }"""
    message = fresh("rolling")
    v = {"id": o["deployment"], "m": message}
    return await call(s, q, v, returns("reportDeploymentStatus", message=message))


async def update_policy(m: Matrix, s: Subject, o: dict) -> str:
    q = """mutation($p: ID!) {
      updateApprovalPolicy(pipelineId: $p, input: {requiredApprovals: 1, ttlHours: null}) { id }
    }"""
    return await call(s, q, {"p": o["pipeline"]}, returns("updateApprovalPolicy", id=o["pipeline"]))


async def update_pipeline(m: Matrix, s: Subject, o: dict) -> str:
    q = """mutation($p: ID!) { updatePipeline(id: $p, input: {requiredApprovals: 1, clearTtlHours: true}) { id } }"""
    return await call(s, q, {"p": o["pipeline"]}, returns("updatePipeline", id=o["pipeline"]))


async def make_none(m: Matrix, target: str) -> dict:
    return {}


def create_named(mutation: str) -> Callable[[Matrix, Subject, dict], Awaitable[str]]:
    async def run(m: Matrix, s: Subject, o: dict) -> str:
        name = fresh("m")
        q = f"mutation($n: String!) {{ {mutation}(name: $n) {{ id name }} }}"
        return await call(s, q, {"n": name}, returns(mutation, name=name))

    return run


async def create_user(m: Matrix, s: Subject, o: dict) -> str:
    email = f"{fresh('u')}@example.com"
    q = "mutation($i: CreateUserInput!) { createUser(input: $i) { id email } }"
    return await call(s, q, {"i": {"email": email, "name": "u"}}, returns("createUser", email=email))


async def make_unpiped_application(m: Matrix, target: str) -> dict:
    if target == MISSING:
        return {"application": "Application:999999"}
    data = await m.admin.ok(
        "mutation($n: String!) { createApplication(name: $n) { id } }", {"n": fresh("app")}
    )
    return {"application": data["createApplication"]["id"]}


async def unpiped(o: dict) -> bool:
    return o["application"] == "Application:999999" or not await Pipeline.exists(
        application_id=pk(o["application"])
    )


async def create_pipeline(m: Matrix, s: Subject, o: dict) -> str:
    q = "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }"
    i = {"applicationId": o["application"], "environmentId": m.world.ids["prod"], "requiredApprovals": 1}
    return await call(s, q, {"i": i}, returns("createPipeline"))


async def make_user(m: Matrix, target: str) -> dict:
    if target == MISSING:
        return {"user": "User:999999"}
    email = f"{fresh('t')}@example.com"
    data = await m.admin.ok(
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        {"i": {"email": email, "name": "t"}},
    )
    return {"user": data["createUser"]["id"]}


async def unbound(o: dict) -> bool:
    return o["user"] == "User:999999" or not await RoleBinding.exists(user_id=pk(o["user"]))


async def grant_role(m: Matrix, s: Subject, o: dict) -> str:
    q = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id role } }"
    i = {"userId": o["user"], "role": "VIEWER", "application": "billing", "environment": "staging"}
    return await call(s, q, {"i": i}, returns("grantRole", role="VIEWER"))


async def make_binding(m: Matrix, target: str) -> dict:
    if target == MISSING:
        return {"binding": "RoleBinding:999999"}
    user = (await make_user(m, target))["user"]
    data = await m.admin.ok(
        "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
        {"i": {"userId": user, "role": "VIEWER", "application": "billing", "environment": "prod"}},
    )
    return {"binding": data["grantRole"]["id"]}


async def bound(o: dict) -> bool:
    return o["binding"] == "RoleBinding:999999" or await binding_exists(o)


async def revoke_role(m: Matrix, s: Subject, o: dict) -> str:
    q = "mutation($id: ID!) { revokeRole(id: $id) { id } }"
    return await call(s, q, {"id": o["binding"]}, returns("revokeRole", id=o["binding"]))


async def make_token_owner(m: Matrix, target: str) -> dict:
    return {"user": "User:999999" if target == MISSING else m.world["nobody"].user_id}


async def issue_token(m: Matrix, s: Subject, o: dict) -> str:
    q = "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }"
    return await call(s, q, {"i": {"userId": o["user"], "name": "x"}}, returns("issueApiToken"))


async def make_token(m: Matrix, target: str) -> dict:
    if target == MISSING:
        return {"token": "ApiToken:999999"}
    data = await m.admin.ok(
        "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { apiToken { id } } }",
        {"i": {"userId": m.world["nobody"].user_id, "name": "someone else's"}},
    )
    return {"token": data["issueApiToken"]["apiToken"]["id"]}


async def live_token(o: dict) -> bool:
    return o["token"] == "ApiToken:999999" or await token_live(o)


async def revoke_token(m: Matrix, s: Subject, o: dict) -> str:
    q = "mutation($id: ID!) { revokeApiToken(id: $id) { id } }"
    return await call(s, q, {"id": o["token"]}, returns("revokeApiToken", id=o["token"]))


READS = [
    Operation("view pipeline", make_pipeline, view_pipeline),
    Operation("view request", make_request, view_request),
    Operation("list requests", make_request, list_requests, pending, PIPELINES),
    Operation("view deployment", make_deployment, view_deployment),
    Operation("list images", make_listed_image, list_images),
]
BUILDS = [
    Operation("register image", make_application, register_image),
    Operation("request approval", make_unrequested, request_approval, unrequested),
    Operation("deploy", make_deployable, deploy, deployable),
]
DECISIONS = [
    Operation("approve", make_request, on_request("approveRequest", "APPROVED"), missing_or(pending)),
    Operation(
        "reject",
        make_request,
        on_request("rejectRequest", "REJECTED", ', reason: "not this one"'),
        missing_or(pending),
    ),
    Operation(
        "cancel someone else's request",
        make_request,
        on_request("cancelApprovalRequest", "CANCELLED"),
        missing_or(pending),
    ),
    Operation(
        "expire someone else's approval",
        make_approved,
        on_request("expireApproval", "EXPIRED"),
        missing_or(approved),
    ),
]
ADMINISTRATION = [
    Operation("report deployment status", make_deployment, report_status, unreported),
    Operation("update approval policy", make_pipeline, update_policy),
    Operation("update pipeline", make_pipeline, update_pipeline),
    Operation("create application", make_none, create_named("createApplication"), targets=(ANY,)),
    Operation("create environment", make_none, create_named("createEnvironment"), targets=(ANY,)),
    Operation("create group", make_none, create_named("createGroup"), targets=(ANY,)),
    Operation("create user", make_none, create_user, targets=(ANY,)),
    Operation("create pipeline", make_unpiped_application, create_pipeline, unpiped, (ANY, MISSING)),
    Operation("grant role", make_user, grant_role, unbound, (ANY, MISSING)),
    Operation("revoke role", make_binding, revoke_role, bound, (ANY, MISSING)),
    Operation("issue API token", make_token_owner, issue_token, targets=(ANY, MISSING)),
    Operation("revoke someone else's API token", make_token, revoke_token, live_token, (ANY, MISSING)),
]


async def run_matrix(world: World, operations: list[Operation]) -> Matrix:
    """Every subject x operation x target; mismatches and refusals that changed something go
    to `matrix.failures`."""
    matrix = await build_matrix(world)
    for operation, subject in itertools.product(operations, matrix.subjects):
        for target in operation.targets:
            key = (operation.name, target)
            made = matrix.objects.get(key)
            if made is None or not await operation.intact(made):
                made = await operation.make(matrix, target)
                matrix.objects[key] = made
            want = expected(operation.name, subject, target)
            got = await operation.run(matrix, subject, made)
            matrix.cases += 1
            where = f"{operation.name} on {target} as {subject.name}"
            if got != want:
                matrix.failures.append(f"{where}: expected {want}, got {got}")
            if got != ALLOWED and not await operation.intact(made):
                matrix.failures.append(f"{where}: refused ({got}) but changed {made}")
    return matrix


def check(matrix: Matrix, operations: list[Operation]) -> None:
    assert matrix.cases == len(matrix.subjects) * sum(len(o.targets) for o in operations)
    failures = matrix.failures
    assert not failures, f"{len(failures)} of {matrix.cases} cases:\n" + "\n".join(failures)


async def test_r1_reads_matrix(world):
    """R1: any role on a scope sees its pipelines, requests, deployments and (through any
    environment of the application) its images; everything else is NOT_FOUND, exactly as
    for an id that names nothing."""
    operations = READS
    check(await run_matrix(world, operations), operations)


async def test_r3_build_and_deploy_matrix(world):
    """R3: registering images (any environment of the application), requesting approval and
    deploying need build-and-deploy (or super-admin) on the scope; R1 for the rest."""
    operations = BUILDS
    check(await run_matrix(world, operations), operations)


async def test_r4_r14_r15_decisions_matrix(world):
    """R4: approving and rejecting need image-approver (or super-admin) on the scope; R14,
    R15: only the requester or a super-admin cancels a request or lets an approval expire."""
    operations = DECISIONS
    check(await run_matrix(world, operations), operations)


async def test_r2_administration_and_rollout_reports_matrix(world):
    """R2: only super-admins administer (FORBIDDEN to anyone else, whatever the target);
    deploy-agents alone report rollout status on their scopes (README)."""
    operations = ADMINISTRATION
    check(await run_matrix(world, operations), operations)

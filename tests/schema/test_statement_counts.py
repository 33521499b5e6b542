"""The SQL statements a request sends do not grow with the size of the
lists it reads. Every list field and nested relation of the API is read here with a list
of 1 and a list of 50, and both must cost the same number of statements.

Statements are counted at Tortoise's database client (its `tortoise.db_client` logger
sees every statement Greenlight sends). Rows are seeded straight into the database, so
the test stays quick; the reads go through the API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from tortoise.log import db_client_logger

from greenlight import models
from greenlight.clock import now
from greenlight.models import ApprovalState, DeploymentStatus, DeploymentStrategy, Role
from tests.conftest import World


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


class StatementCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.args[0] if record.msg == "%s: %s" else record.msg
        if str(text).lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
            self.count += 1


async def statements(client, query: str, variables: dict | None = None, must_succeed: bool = True) -> int:
    """How many statements one request sends (after a warm-up that writes the token's
    last use and loads the role bindings)."""
    ask = client.ok if must_succeed else client.execute
    await ask(query, variables)
    counter = StatementCounter()
    level = db_client_logger.level
    db_client_logger.addHandler(counter)
    db_client_logger.setLevel(logging.DEBUG)
    try:
        data = await ask(query, variables)
    finally:
        db_client_logger.removeHandler(counter)
        db_client_logger.setLevel(level)
    assert data is not None
    return counter.count


SLACK = 2
_serial = iter(range(1, 1_000_000))


def _digest() -> str:
    return "sha256:" + f"{next(_serial):064x}"


async def _user(world: World, name: str) -> models.User:
    return await models.User.get(id=pk(world[name].user_id))


async def _image(world: World, application: str = "shop", builder: str = "dev") -> models.Image:
    return await models.Image.create(
        application_id=pk(world.ids[application]),
        repository="registry.example.com/shop",
        tag=f"t{next(_serial)}",
        digest=_digest(),
        built_by=await _user(world, builder),
    )


async def _request(world: World, image: models.Image, state: ApprovalState, pipeline: str = "shop/prod"):
    live = state in (ApprovalState.PENDING, ApprovalState.APPROVED)
    request = await models.ApprovalRequest.create(
        image=image,
        pipeline_id=pk(world.ids[pipeline]),
        requested_by=await _user(world, "dev2"),
        state=state,
        live_key=f"{image.id}:{pk(world.ids[pipeline])}" if live else None,
        required_approvals=2,
        expires_at=now() + timedelta(hours=1),
        policy={"kind": "ANY", "users": [], "groups": [], "countOncePerPerson": True},
    )
    await models.Approval.create(request=request, user=await _user(world, "approver2"))
    await models.NamedApprover.create(request=request, user=await _user(world, "approver3"))
    return request


async def _deployment(world: World, image: models.Image, pipeline_id: int, request=None) -> models.Deployment:
    return await models.Deployment.create(
        pipeline_id=pipeline_id,
        image=image,
        status=DeploymentStatus.HEALTHY,
        strategy=DeploymentStrategy.ROLLING,
        triggered_by=await _user(world, "dev"),
        approval_request=request,
    )


# --- what each list grows by ------------------------------------------------------------------


async def approved_images(world: World, n: int) -> None:
    for _ in range(n):
        await _request(world, await _image(world), ApprovalState.APPROVED)


async def open_images(world: World, n: int) -> None:
    for _ in range(n):
        image = await _image(world)
        await _deployment(world, image, pk(world.ids["shop/prod"]))  # each active somewhere once


async def pending_requests(world: World, n: int) -> None:
    for _ in range(n):
        await _request(world, await _image(world), ApprovalState.PENDING)


async def rejected_requests(world: World, n: int) -> None:
    for _ in range(n):
        request = await _request(world, await _image(world), ApprovalState.REJECTED)
        await models.Rejection.create(request=request, user=await _user(world, "approver1"), reason="no")


async def applications(world: World, n: int) -> None:
    staging = pk(world.ids["staging"])
    group = await models.Group.create(name=f"team-{next(_serial)}")
    for _ in range(n):
        app = await models.Application.create(name=f"app-{next(_serial)}")
        pipeline = await models.Pipeline.create(
            application=app,
            environment_id=staging,
            strategy=DeploymentStrategy.ROLLING,
            trigger_type="MANUAL",
            required_approvals=1,
        )
        image = await models.Image.create(
            application=app,
            repository="registry.example.com/app",
            tag="v1",
            digest=_digest(),
            built_by=await _user(world, "dev"),
        )
        await _deployment(world, image, pipeline.id)
        await models.PolicyApprover.create(pipeline=pipeline, user=await _user(world, "approver1"))
        await models.GroupQuorum.create(pipeline=pipeline, group=group, min_approvals=1)
        await models.ApprovalException.create(pipeline=pipeline, user=await _user(world, "dev"))
        await models.ApprovalException.create(pipeline=pipeline, group=group)
        await models.DeployFreeze.create(
            name="quiet",
            pipeline=pipeline,
            starts_at=now() - timedelta(hours=1),
            ends_at=now() + timedelta(hours=1),
            created_by=await _user(world, "admin"),
        )


async def deployments(world: World, n: int) -> None:
    for _ in range(n):
        image = await _image(world)
        request = await _request(world, image, ApprovalState.CONSUMED)
        await _deployment(world, image, pk(world.ids["shop/prod"]), request)


async def audit_events(world: World, n: int) -> None:
    for i in range(n):
        who = await _user(world, ("dev", "dev2", "approver1")[i % 3])
        await models.AuditEvent.create(action="test", object_type="Image", object_id=1, actor=who)


async def users(world: World, n: int) -> None:
    for _ in range(n):
        user = await models.User.create(email=f"u{next(_serial)}@example.com", name="u")
        await models.RoleBinding.create(user=user, role=Role.VIEWER, application="shop", environment="*")


async def groups(world: World, n: int) -> None:
    member = await _user(world, "viewer")
    for _ in range(n):
        group = await models.Group.create(name=f"g-{next(_serial)}")
        await models.GroupMember.create(group=group, user=member)
        await models.RoleBinding.create(group=group, role=Role.VIEWER, application="shop", environment="*")


async def freezes(world: World, n: int) -> None:
    for _ in range(n):
        await models.DeployFreeze.create(
            name="quiet",
            environment_id=pk(world.ids["prod"]),
            starts_at=now() + timedelta(days=1),
            ends_at=now() + timedelta(days=2),
            created_by=await _user(world, "admin"),
        )


async def tokens(world: World, n: int) -> None:
    dev = await _user(world, "dev")
    for _ in range(n):
        await models.ApiToken.create(user=dev, name="ci", token_hash=f"{next(_serial):064x}")


async def emails(world: World, n: int) -> None:
    dev = await _user(world, "dev")
    for _ in range(n):
        await models.EmailOutbox.create(
            message_id=f"<{next(_serial)}@greenlight>",
            kind="approval_requested",
            recipient=dev,
            to_address=dev.email,
            subject="s",
            text_body="t",
            html_body="h",
            next_attempt_at=now(),
        )


IMAGE_FIELDS = """
  id tag digest createdAt builtBy { email } application { name }
  approvalState(pipelineId: $p) activeOn { name }
"""

PIPELINE_FIELDS = """
  id environment { name } application { name } activeImage { tag } activeDeployment { status }
  deployableImages { tag }
  approvalPolicy {
    kind requiredApprovals approvers { email } groupQuorums { group { name } minApprovals }
    exceptionUsers { email } exceptionGroups { name }
  }
  deployFreezes { name pipeline { id } environment { name } createdBy { email } }
  frozenUntil
  deployments(first: 5) { totalCount edges { node { id image { tag } triggeredBy { email } } } }
"""

REQUEST_FIELDS = """
  id state stale progress policyKind expiresAt requiredApprovals viewerCanApprove
  viewerCan { approve { allowed code reason } reject { code } cancel { code } expire { code } }
  requirements { description required approved met user { email } group { name } }
  image { tag builtBy { email } activeOn { name } }
  pipeline { application { name } environment { name } approvalPolicy { requiredApprovals } }
  requestedBy { email } approvals { user { email } decidedAt } notifiedApprovers { email }
  rejection { user { email } comment }
"""


@dataclass
class Case:
    name: str
    who: str
    query: str
    grow: Callable[[World, int], Awaitable[None]]
    variables: Callable[[World], dict] = lambda world: {}


CASES = [
    Case(
        "Select Image (approval required)",
        "dev",
        f"query($p: ID!) {{ pipeline(id: $p) {{ {PIPELINE_FIELDS} deployableImages {{ {IMAGE_FIELDS} }} }} }}",
        approved_images,
        lambda world: {"p": world.ids["shop/prod"]},
    ),
    Case(
        "Select Image (no approval)",
        "dev",
        f"query($p: ID!) {{ pipeline(id: $p) {{ deployableImages {{ {IMAGE_FIELDS} }} }} }}",
        open_images,
        lambda world: {"p": world.ids["shop/staging"]},
    ),
    Case(
        "Approval pending",
        "approver1",
        "query { approvalRequests(filter: {states: [PENDING]}, first: 50) "
        f"{{ totalCount edges {{ node {{ {REQUEST_FIELDS} }} }} }} }}",
        pending_requests,
    ),
    Case(
        "Awaiting my approval",
        "approver1",
        "query { approvalRequests(filter: {awaitingMyApproval: true}, first: 50) "
        f"{{ edges {{ node {{ {REQUEST_FIELDS} }} }} }} }}",
        pending_requests,
    ),
    Case(
        "Rejected requests",
        "dev",
        "query { approvalRequests(filter: {states: [REJECTED]}, first: 50) "
        f"{{ edges {{ node {{ {REQUEST_FIELDS} }} }} }} }}",
        rejected_requests,
    ),
    Case(
        "images",
        "dev",
        f"query($a: ID!, $p: ID!) {{ images(applicationId: $a, first: 50) {{ edges {{ node {{ {IMAGE_FIELDS} }} }} }} }}",
        open_images,
        lambda world: {"a": world.ids["shop"], "p": world.ids["shop/prod"]},
    ),
    Case(
        "applications with their pipelines",
        "admin",
        f"query {{ applications {{ name pipelines {{ {PIPELINE_FIELDS} }} }} }}",
        applications,
    ),
    Case(
        "a pipeline's deployments",
        "dev",
        "query($p: ID!) { pipeline(id: $p) { deployments(first: 50) { totalCount edges { node { "
        "id status image { tag } triggeredBy { email } pipeline { id } "
        "approvalRequest { id approvals { user { email } } } } } } } }",
        deployments,
        lambda world: {"p": world.ids["shop/prod"]},
    ),
    Case(
        "auditEvents",
        "admin",
        "query { auditEvents(first: 50) { edges { node { id action actor { email } } } } }",
        audit_events,
    ),
    Case(
        "users with their role bindings",
        "admin",
        "query { users { email isSuperAdmin roleBindings { role user { email } } } }",
        users,
    ),
    Case(
        "userConnection",
        "admin",
        "query { userConnection(first: 50) { edges { node { email roleBindings { role } } } } }",
        users,
    ),
    Case(
        "roleBindingConnection",
        "admin",
        "query { roleBindingConnection(first: 50) { edges { node { role user { email } } } } }",
        users,
    ),
    Case(
        "groups with members and bindings",
        "admin",
        "query { groups(first: 50) { edges { node { name members(first: 5) { totalCount "
        "edges { node { email } } } roleBindings { role group { name } } } } } }",
        groups,
    ),
    Case(
        "deployFreezes",
        "dev",
        "query { deployFreezes { name environment { name } pipeline { id } createdBy { email } } }",
        freezes,
    ),
    Case(
        "apiTokens",
        "dev",
        "query { apiTokens(first: 50) { edges { node { name user { email } } } } }",
        tokens,
    ),
    Case(
        "notificationOutbox",
        "admin",
        "query { notificationOutbox(first: 50) { edges { node { kind toAddress attempts } } } }",
        emails,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_statements_do_not_grow_with_the_list(world, case: Case):
    """The same number of SQL statements for a list of 1 and a list of 50."""
    client = world[case.who]
    variables = case.variables(world)
    await case.grow(world, 1)
    one = await statements(client, case.query, variables)
    await case.grow(world, 49)
    fifty = await statements(client, case.query, variables)
    assert one > 0, "the counter sees the statements"
    # A DataLoader sends one batch per turn of the event loop; over a network (PostgreSQL)
    # the resolvers reach a loader in one turn or two, so the same request may cost one
    # statement more or less. A statement per item would cost 49 more.
    assert fifty <= one + SLACK, f"{case.name}: {one} statements for 1 item, {fifty} for 50"

"""Query resolvers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import strawberry

from greenlight import notifications
from greenlight.errors import BadUserInput
from greenlight.models import ApprovalState
from greenlight.policies import Action, Actor
from greenlight.schema import ids
from greenlight.schema.arguments import After, First, described
from greenlight.schema.audit import AuditEvent
from greenlight.schema.catalog import Application, ApprovalPolicy, DeployFreeze, Environment, Pipeline
from greenlight.schema.chat import ChatChannel, ChatDelivery
from greenlight.schema.context import Info
from greenlight.schema.deployments import Deployment
from greenlight.schema.emails import OutboxEmail
from greenlight.schema.identity import (
    ActionEnum,
    ApiToken,
    Decision,
    Group,
    GroupRoleBinding,
    RoleBinding,
    User,
)
from greenlight.schema.images import Image, ImageCheck, ImageFilter, image_filter
from greenlight.schema.inputs import ApprovalRequestFilter, AuditEventFilter
from greenlight.schema.loaders import Selected
from greenlight.schema.nodes import Connection, Node, connection
from greenlight.schema.requests import ApprovalRequest
from greenlight.workflow import (
    access,
    approvals,
    chat,
    checks,
    freezes,
    guards,
    identity,
    outbox,
    reads,
    teams,
)
from greenlight.workflow.guards import visible_deployment, visible_request

# node(id) reads each type with the workflow function of its own query or list, so it sees
# exactly what they show (R1): NOT_FOUND for what is missing or invisible.
NODES: dict[str, tuple[Callable[[Actor, int], Awaitable[Any]], Callable[[Any], Node]]] = {
    "Application": (guards.visible_application, lambda m: Application.from_model(m)),
    "ApiToken": (identity.api_token, lambda m: ApiToken.from_model(m)),
    "ApprovalPolicy": (reads.pipeline, lambda m: ApprovalPolicy.from_model(m)),
    "ApprovalRequest": (visible_request, lambda m: ApprovalRequest.from_model(m)),
    "AuditEvent": (reads.audit_event, lambda m: AuditEvent.from_model(m)),
    "ChatChannel": (chat.channel, lambda m: ChatChannel.from_model(m)),
    "ChatDelivery": (chat.delivery, lambda m: ChatDelivery.from_model(m)),
    "DeployFreeze": (freezes.visible_freeze, lambda m: DeployFreeze.from_model(m)),
    "Deployment": (visible_deployment, lambda m: Deployment.from_model(m)),
    "Environment": (reads.environment, lambda m: Environment.from_model(m)),
    "Group": (teams.group, lambda m: Group.from_model(m)),
    "GroupRoleBinding": (teams.group_role_binding, lambda m: GroupRoleBinding.from_model(m)),
    "Image": (guards.visible_image, lambda m: Image.from_model(m)),
    "ImageCheck": (checks.visible_check, lambda m: ImageCheck.from_model(m)),
    "OutboxEmail": (outbox.email, lambda m: OutboxEmail.from_model(m)),
    "Pipeline": (reads.pipeline, lambda m: Pipeline.from_model(m)),
    "RoleBinding": (reads.role_binding, lambda m: RoleBinding.from_model(m)),
    "User": (reads.user, lambda m: User.from_model(m)),
}
MAX_NODES = reads.MAX_PAGE


async def _node(actor: Actor, node_id: str, field: str) -> Node:
    kind, pk = ids.decode_node(node_id, NODES, field)
    read, wrap = NODES[kind]
    return wrap(await read(actor, pk))


async def node(
    info: Info, id: Annotated[strawberry.ID, described('Any object\'s id, e.g. "Pipeline:3".')]
) -> Node | None:
    return await _node(info.context.actor, id, "id")


async def nodes(
    info: Info,
    node_ids: Annotated[
        list[strawberry.ID],
        strawberry.argument(name="ids", description=f"At most {MAX_NODES} ids, of any types."),
    ],
) -> list[Node | None]:
    if len(node_ids) > MAX_NODES:
        raise BadUserInput(f"ids: at most {MAX_NODES}, got {len(node_ids)}", field="ids")
    # One awaitable per id: GraphQL completes each on its own, so a missing, invisible or
    # malformed id is null with its own error (at nodes.<index>) and the others still answer.
    return [_node(info.context.actor, node_id, f"ids[{i}]") for i, node_id in enumerate(node_ids)]


def me(info: Info) -> User:
    return User.from_model(info.context.actor.user)


IncludeArchived = Annotated[
    bool | None, described("Archived ones too (super-admins only; FORBIDDEN otherwise). Left out by default.")
]


async def applications(info: Info, include_archived: IncludeArchived = False) -> list[Application]:
    found = await reads.applications(info.context.actor, bool(include_archived))
    return [Application.from_model(a) for a in found]


async def environments(info: Info, include_archived: IncludeArchived = False) -> list[Environment]:
    found = await reads.environments(info.context.actor, bool(include_archived))
    return [Environment.from_model(e) for e in found]


async def pipeline(
    info: Info, id: Annotated[strawberry.ID, described('"Pipeline:<number>".')]
) -> Pipeline | None:
    pid = ids.decode("Pipeline", id, "id")
    return Pipeline.from_model(await reads.pipeline(info.context.actor, pid))


async def pipeline_for(
    info: Info,
    application: Annotated[str, described("The application's name.")],
    environment: Annotated[str, described("The environment's name.")],
) -> Pipeline | None:
    found = await reads.pipeline_for(info.context.actor, application, environment)
    return Pipeline.from_model(found)


async def images(
    info: Info,
    application_id: Annotated[
        strawberry.ID, described("The application whose images to list (R1: one the caller sees).")
    ],
    first: First = 20,
    after: After = None,
    filter: Annotated[
        ImageFilter | None, described("Only the images matching it (branch, commit, label); omitted: all.")
    ] = None,
) -> Connection[Image]:
    app_id = ids.decode("Application", application_id, "applicationId")
    wanted = image_filter(filter)
    found = await reads.images(
        info.context.actor, app_id, first, ids.decode_cursor(after), None if wanted is None else wanted.q()
    )
    return connection(found, Image)


async def approval_requests(
    info: Info,
    filter: Annotated[
        ApprovalRequestFilter | None, described("Narrows the list; omitted: every visible request.")
    ] = None,
    first: First = 20,
    after: After = None,
) -> Connection[ApprovalRequest]:
    states = [ApprovalState(s) for s in filter.states] if filter and filter.states is not None else None
    pipeline_id = ids.decode_optional("Pipeline", filter.pipeline_id if filter else None, "pipelineId")
    found = await reads.approval_requests(
        info.context.actor,
        states=states,
        pipeline_id=pipeline_id,
        awaiting_my_approval=bool(filter and filter.awaiting_my_approval),
        first=first,
        after_id=ids.decode_cursor(after),
    )
    # the relations the query selects, one statement each, read before the page is answered
    await info.context.loaders.prefetch_requests(found.items, Selected.below(info, "edges", "node"))
    return connection(found, ApprovalRequest)


async def approval_request(
    info: Info, id: Annotated[strawberry.ID, described('"ApprovalRequest:<number>".')]
) -> ApprovalRequest | None:
    rid = ids.decode("ApprovalRequest", id, "id")
    return ApprovalRequest.from_model(await visible_request(info.context.actor, rid))


async def eligible_approvers(
    info: Info,
    pipeline_id: Annotated[strawberry.ID, described("The pipeline the caller would request approval on.")],
    image_id: Annotated[strawberry.ID, described("The image to be approved (its builder is left out, R9).")],
) -> list[User]:
    found = await approvals.eligible_approvers_for_caller(
        info.context.actor,
        ids.decode("Pipeline", pipeline_id, "pipelineId"),
        ids.decode("Image", image_id, "imageId"),
    )
    return [User.from_model(u) for u in found]


async def deployment(
    info: Info, id: Annotated[strawberry.ID, described('"Deployment:<number>".')]
) -> Deployment | None:
    did = ids.decode("Deployment", id, "id")
    return Deployment.from_model(await visible_deployment(info.context.actor, did))


async def users(info: Info) -> list[User]:
    return [User.from_model(u) for u in await reads.users(info.context.actor)]


async def audit_events(
    info: Info,
    filter: Annotated[AuditEventFilter | None, described("Narrows the log; omitted: every event.")] = None,
    first: First = 20,
    after: After = None,
) -> Connection[AuditEvent]:
    f = filter or AuditEventFilter()
    found = await reads.audit_events(
        info.context.actor,
        application=f.application,
        environment=f.environment,
        actor_id=ids.decode_optional("User", f.actor_id, "actorId"),
        action=f.action,
        since=f.since,
        until=f.until,
        first=first,
        after_id=ids.decode_cursor(after),
    )
    return connection(found, AuditEvent)


def notifications_enabled(info: Info) -> bool:
    return notifications.current().enabled


async def notification_outbox(
    info: Info,
    failed_only: Annotated[bool, described("Only the emails given up after their last attempt.")] = False,
    first: First = 20,
    after: After = None,
) -> Connection[OutboxEmail]:
    found = await outbox.list_emails(info.context.actor, failed_only, first, ids.decode_cursor(after))
    return connection(found, OutboxEmail)


async def can_i(
    info: Info,
    action: Annotated[ActionEnum, described("The action to ask about.")],
    application: Annotated[str, described("An application's name.")],
    environment: Annotated[str, described("An environment's name.")],
) -> Decision:
    found = await access.explain(info.context.actor, None, Action(action), application, environment)
    return Decision.of(found)


async def explain_access(
    info: Info,
    user_id: Annotated[strawberry.ID, described("The user to ask about.")],
    action: Annotated[ActionEnum, described("The action to ask about.")],
    application: Annotated[str, described("An application's name.")],
    environment: Annotated[str, described("An environment's name.")],
) -> Decision:
    uid = ids.decode("User", user_id, "userId")
    found = await access.explain(info.context.actor, uid, Action(action), application, environment)
    return Decision.of(found)


async def api_tokens(
    info: Info,
    user_id: Annotated[
        strawberry.ID | None,
        described(
            "Only this user's tokens (another's: super-admins only); omitted: one's own, or all for super-admins."
        ),
    ] = None,
    first: First = 20,
    after: After = None,
) -> Connection[ApiToken]:
    uid = ids.decode_optional("User", user_id, "userId")
    found = await identity.api_tokens(info.context.actor, uid, first, ids.decode_cursor(after))
    return connection(found, ApiToken)


async def my_api_tokens(info: Info, first: First = 20, after: After = None) -> Connection[ApiToken]:
    actor = info.context.actor
    found = await identity.api_tokens(actor, actor.id, first, ids.decode_cursor(after))
    return connection(found, ApiToken)


async def groups(info: Info, first: First = 20, after: After = None) -> Connection[Group]:
    return connection(await teams.groups(info.context.actor, first, ids.decode_cursor(after)), Group)


async def group(info: Info, id: Annotated[strawberry.ID, described('"Group:<number>".')]) -> Group:
    return Group.from_model(await teams.group(info.context.actor, ids.decode("Group", id, "id")))


async def user_connection(info: Info, first: First = 20, after: After = None) -> Connection[User]:
    return connection(await teams.users_page(info.context.actor, first, ids.decode_cursor(after)), User)


async def role_binding_connection(
    info: Info,
    user_id: Annotated[
        strawberry.ID | None, described("Only this user's bindings; omitted: every user's.")
    ] = None,
    first: First = 20,
    after: After = None,
) -> Connection[RoleBinding]:
    uid = ids.decode_optional("User", user_id, "userId")
    found = await teams.role_bindings_page(info.context.actor, uid, first, ids.decode_cursor(after))
    return connection(found, RoleBinding)


async def deploy_freezes(
    info: Info,
    environment_id: Annotated[
        strawberry.ID | None, described("Only the freezes on this environment.")
    ] = None,
    pipeline_id: Annotated[
        strawberry.ID | None,
        described("Only the freezes that apply to this pipeline (its own and its environment's)."),
    ] = None,
) -> list[DeployFreeze]:
    found = await freezes.visible_freezes(
        info.context.actor,
        environment_id=None
        if environment_id is None
        else ids.decode("Environment", environment_id, "environmentId"),
        pipeline_id=None if pipeline_id is None else ids.decode("Pipeline", pipeline_id, "pipelineId"),
    )
    return [DeployFreeze.from_model(f) for f in found]

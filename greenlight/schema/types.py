"""GraphQL object types of the contract. Each wraps a model; relations go through loaders."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

import strawberry
from strawberry.scalars import JSON

from greenlight import models
from greenlight.policies import Action
from greenlight.rollout import plan
from greenlight.schema import ids
from greenlight.schema.context import Info
from greenlight.schema.enums import (
    ApprovalPolicyKind,
    ApprovalState,
    DeploymentStatus,
    DeploymentStrategy,
    Role,
    TriggerType,
    Weekday,
)
from greenlight.workflow import freezes, policy, reads
from greenlight.workflow.clock import now
from greenlight.workflow.states import effective_state


@strawberry.interface(
    description="An object with a global id (Relay's Node): node(id) and nodes(ids) fetch it again, "
    "as its own query would (R1)."
)
class Node:
    """Implemented by every type with an id; each holds its row in `model` (ApprovalPolicy
    overrides `id`)."""

    @strawberry.field(
        description='"<Type>:<number>", e.g. "Pipeline:3": unique across types and stable, so a '
        "client's normalised cache can key on it."
    )
    def id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode(type(self).__name__, self.model.pk))


@strawberry.type(description="Where a page of a connection stands among all the items (Relay).")
class PageInfo:
    page: strawberry.Private[reads.Page]

    @strawberry.field(description="Whether more items follow: pass endCursor as `after` to fetch them.")
    def has_next_page(self) -> bool:
        return self.page.has_next

    @strawberry.field(
        description="Whether items come before this page (there are when `after` was given and "
        "newer items than it exist). Counted only when asked for."
    )
    async def has_previous_page(self) -> bool:
        return await self.page.has_previous()

    @strawberry.field(description="The cursor of the first edge; null on an empty page.")
    def start_cursor(self) -> str | None:
        return ids.encode_cursor(self.page.items[0].id) if self.page.items else None

    @strawberry.field(description="The cursor of the last edge, for `after`; null on an empty page.")
    def end_cursor(self) -> str | None:
        return ids.encode_cursor(self.page.items[-1].id) if self.page.items else None


@strawberry.type
class User(Node):
    model: strawberry.Private[models.User]

    @strawberry.field
    def email(self) -> str:
        return self.model.email

    @strawberry.field
    def name(self) -> str:
        return self.model.name

    @strawberry.field
    def is_active(self) -> bool:
        return self.model.is_active

    @strawberry.field
    def is_super_admin(self, info: Info) -> bool:
        return info.context.actor.authorizer.is_super_admin(self.model.id)

    @strawberry.field(description="Visible to the user themself and to super-admins.")
    async def role_bindings(self, info: Info) -> list[RoleBinding]:
        bindings = await info.context.loaders.role_bindings(info.context.actor).load(self.model.id)
        return [RoleBinding(model=b) for b in bindings]


async def _user(info: Info, user_id: int) -> User:
    return User(model=await info.context.loaders.user.load(user_id))


async def _users(info: Info, user_ids: list[int]) -> list[User]:
    return [User(model=u) for u in await info.context.loaders.user.load_many(user_ids)]


@strawberry.type
class RoleBinding(Node):
    model: strawberry.Private[models.RoleBinding]

    @strawberry.field
    async def user(self, info: Info) -> User:
        return await _user(info, self.model.user_id)

    @strawberry.field
    def role(self) -> Role:
        return models.Role(self.model.role)

    @strawberry.field
    def application(self) -> str:
        return self.model.application

    @strawberry.field
    def environment(self) -> str:
        return self.model.environment


@strawberry.type
class Environment(Node):
    model: strawberry.Private[models.Environment]

    @strawberry.field
    def name(self) -> str:
        return self.model.name


@strawberry.type
class Application(Node):
    model: strawberry.Private[models.Application]

    @strawberry.field
    def name(self) -> str:
        return self.model.name

    @strawberry.field
    async def pipelines(self, info: Info) -> list[Pipeline]:
        found = await info.context.loaders.pipelines(info.context.actor).load(self.model.id)
        return [Pipeline(model=p) for p in found]


@strawberry.type
class GroupQuorum:
    group_model: strawberry.Private[models.Group]
    min_approvals: int

    @strawberry.field
    def group(self) -> Group:
        return Group(model=self.group_model)


@strawberry.type
class ApprovalPolicy(Node):
    pipeline: strawberry.Private[models.Pipeline]

    @strawberry.field(
        description='"ApprovalPolicy:<pipeline number>": each pipeline has one policy, so its id '
        "follows the pipeline's."
    )
    def id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode("ApprovalPolicy", self.pipeline.id))

    @strawberry.field(description="0: deploys need no approval; otherwise the least number of approvals.")
    def required_approvals(self) -> int:
        return self.pipeline.required_approvals

    @strawberry.field
    def ttl_hours(self) -> int | None:
        return self.pipeline.ttl_hours

    @strawberry.field
    def approvers_can_deploy(self) -> bool:
        return self.pipeline.approvers_can_deploy

    @strawberry.field
    def kind(self) -> ApprovalPolicyKind:
        return models.ApprovalPolicyKind(self.pipeline.policy_kind)

    @strawberry.field(description="SPECIFIC_USERS: each of them must approve.")
    async def approvers(self, info: Info) -> list[User]:
        rows = await info.context.loaders.policy_approvers.load(self.pipeline.id)
        return await _users(info, [r.user_id for r in rows])

    @strawberry.field(description="GROUP_QUORUMS: at least minApprovals from each group.")
    async def group_quorums(self, info: Info) -> list[GroupQuorum]:
        rows = await info.context.loaders.group_quorums.load(self.pipeline.id)
        groups = await info.context.loaders.group.load_many([r.group_id for r in rows])
        return [
            GroupQuorum(group_model=g, min_approvals=r.min_approvals)
            for g, r in zip(groups, rows, strict=True)
        ]

    @strawberry.field(description="GROUP_QUORUMS: one person's approval counts toward one group only.")
    def count_once_per_person(self) -> bool:
        return self.pipeline.count_once_per_person

    @strawberry.field(description="Users who may deploy without approval.")
    async def exception_users(self, info: Info) -> list[User]:
        rows = await info.context.loaders.approval_exceptions.load(self.pipeline.id)
        return await _users(info, [r.user_id for r in rows if r.user_id is not None])

    @strawberry.field(description="Groups whose members may deploy without approval.")
    async def exception_groups(self, info: Info) -> list[Group]:
        rows = await info.context.loaders.approval_exceptions.load(self.pipeline.id)
        groups = await info.context.loaders.group.load_many(
            [r.group_id for r in rows if r.group_id is not None]
        )
        return [Group(model=g) for g in groups]

    @strawberry.field(
        description="Live requests for older images are cancelled when a newer one is deployed."
    )
    def cancel_stale_requests(self) -> bool:
        return self.pipeline.cancel_stale_requests


@strawberry.type
class WeeklyWindow:
    time_zone: str
    start_day: Weekday
    start_time: str
    end_day: Weekday
    end_time: str


@strawberry.type(description="A window in which deploys are refused with DEPLOY_FROZEN.")
class DeployFreeze(Node):
    model: strawberry.Private[models.DeployFreeze]

    @strawberry.field
    def name(self) -> str:
        return self.model.name

    @strawberry.field
    async def environment(self, info: Info) -> Environment | None:
        if self.model.environment_id is None:
            return None
        return Environment(model=await info.context.loaders.environment.load(self.model.environment_id))

    @strawberry.field
    async def pipeline(self, info: Info) -> Pipeline | None:
        if self.model.pipeline_id is None:
            return None
        return Pipeline(model=await info.context.loaders.pipeline.load(self.model.pipeline_id))

    @strawberry.field(description="One-off windows: from startsAt (frozen) to endsAt (open again).")
    def starts_at(self) -> datetime | None:
        return self.model.starts_at

    @strawberry.field
    def ends_at(self) -> datetime | None:
        return self.model.ends_at

    @strawberry.field(description="Weekly windows, wall-clock in their time zone.")
    def weekly(self) -> WeeklyWindow | None:
        m = self.model
        if m.time_zone is None:
            return None
        days = list(models.Weekday)
        return WeeklyWindow(
            time_zone=m.time_zone,
            start_day=days[m.start_day],
            start_time=m.start_time,
            end_day=days[m.end_day],
            end_time=m.end_time,
        )

    @strawberry.field
    async def created_by(self, info: Info) -> User:
        return await _user(info, self.model.created_by_id)

    @strawberry.field
    def created_at(self) -> datetime:
        return self.model.created_at


@strawberry.type
class Pipeline(Node):
    model: strawberry.Private[models.Pipeline]

    @strawberry.field
    async def application(self, info: Info) -> Application:
        return Application(model=await info.context.loaders.application.load(self.model.application_id))

    @strawberry.field
    async def environment(self, info: Info) -> Environment:
        return Environment(model=await info.context.loaders.environment.load(self.model.environment_id))

    @strawberry.field
    def strategy(self) -> DeploymentStrategy:
        return models.DeploymentStrategy(self.model.strategy)

    @strawberry.field
    def trigger_type(self) -> TriggerType:
        return models.TriggerType(self.model.trigger_type)

    @strawberry.field
    def approval_policy(self) -> ApprovalPolicy:
        return ApprovalPolicy(pipeline=self.model)

    @strawberry.field(description="Freezes on this pipeline and on its environment.")
    async def deploy_freezes(self, info: Info) -> list[DeployFreeze]:
        return [DeployFreeze(model=f) for f in await info.context.loaders.freezes.load(self.model.id)]

    @strawberry.field(description="Null: deploys are allowed now; otherwise when the freeze in force ends.")
    async def frozen_until(self, info: Info) -> datetime | None:
        return freezes.frozen_until(await info.context.loaders.freezes.load(self.model.id), now())

    @strawberry.field(description='The image "Active on <environment>" (R23).')
    async def active_image(self, info: Info) -> Image | None:
        deployment = await info.context.loaders.active_deployment.load(self.model.id)
        if deployment is None:
            return None
        return Image(model=await info.context.loaders.image.load(deployment.image_id))

    @strawberry.field
    async def active_deployment(self, info: Info) -> Deployment | None:
        deployment = await info.context.loaders.active_deployment.load(self.model.id)
        return Deployment(model=deployment) if deployment else None

    @strawberry.field(description='What "Select Image" lists, newest first (R19).')
    async def deployable_images(self, info: Info) -> list[Image]:
        return [Image(model=i) for i in await info.context.loaders.deployable_images.load(self.model.id)]

    @strawberry.field
    async def deployments(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Deployment]:
        found = await info.context.loaders.deployments.load((self.model.id, first, ids.decode_cursor(after)))
        return connection(found, Deployment)


@strawberry.type
class Image(Node):
    model: strawberry.Private[models.Image]

    @strawberry.field
    async def application(self, info: Info) -> Application:
        return Application(model=await info.context.loaders.application.load(self.model.application_id))

    @strawberry.field
    def repository(self) -> str:
        return self.model.repository

    @strawberry.field
    def tag(self) -> str:
        return self.model.tag

    @strawberry.field
    def digest(self) -> str:
        return self.model.digest

    @strawberry.field
    async def built_by(self, info: Info) -> User:
        return await _user(info, self.model.built_by_id)

    @strawberry.field
    def created_at(self) -> datetime:
        return self.model.created_at

    @strawberry.field(description="Environments where this image is active.")
    async def active_on(self, info: Info) -> list[Environment]:
        found = await info.context.loaders.active_on(info.context.actor).load(self.model.id)
        return [Environment(model=e) for e in found]

    @strawberry.field(description="The latest request's state on that pipeline; null if never requested.")
    async def approval_state(self, info: Info, pipeline_id: strawberry.ID) -> ApprovalState | None:
        pid = ids.decode("Pipeline", pipeline_id, "pipelineId")
        return await info.context.loaders.approval_state(info.context.actor).load((self.model.id, pid))


@strawberry.type
class Approval:
    user_id: strawberry.Private[int]
    decided_at: datetime
    comment: str | None

    @strawberry.field
    async def user(self, info: Info) -> User:
        return await _user(info, self.user_id)


@strawberry.type
class ApprovalRequirement:
    description: str
    required: int
    approved: int
    met: bool
    user_id: strawberry.Private[int | None]
    group_id: strawberry.Private[int | None]

    @classmethod
    def of(cls, line: policy.Requirement) -> ApprovalRequirement:
        return cls(
            description=line.description,
            required=line.required,
            approved=line.approved,
            met=line.met,
            user_id=line.user_id,
            group_id=line.group_id,
        )

    @strawberry.field
    async def user(self, info: Info) -> User | None:
        return None if self.user_id is None else await _user(info, self.user_id)

    @strawberry.field
    async def group(self, info: Info) -> Group | None:
        if self.group_id is None:
            return None
        found = await info.context.loaders.group.load(self.group_id)
        return None if found is None else Group(model=found)


@strawberry.type
class ApprovalRequest(Node):
    model: strawberry.Private[models.ApprovalRequest]

    @strawberry.field
    async def image(self, info: Info) -> Image:
        return Image(model=await info.context.loaders.image.load(self.model.image_id))

    @strawberry.field
    async def pipeline(self, info: Info) -> Pipeline:
        return Pipeline(model=await info.context.loaders.pipeline.load(self.model.pipeline_id))

    @strawberry.field
    def state(self) -> ApprovalState:
        return effective_state(self.model)

    @strawberry.field
    async def requested_by(self, info: Info) -> User:
        return await _user(info, self.model.requested_by_id)

    @strawberry.field
    def requested_at(self) -> datetime:
        return self.model.requested_at

    @strawberry.field
    def comment(self) -> str | None:
        return self.model.comment

    @strawberry.field(description="Fixed when the request is made (R7).")
    def required_approvals(self) -> int:
        return self.model.required_approvals

    @strawberry.field
    async def approvals(self, info: Info) -> list[Approval]:
        rows = await info.context.loaders.approvals.load(self.model.id)
        return [Approval(user_id=a.user_id, decided_at=a.decided_at, comment=a.comment) for a in rows]

    @strawberry.field(description="Set when REJECTED; comment holds the reason.")
    async def rejection(self, info: Info) -> Approval | None:
        row = await info.context.loaders.rejection.load(self.model.id)
        if row is None:
            return None
        return Approval(user_id=row.user_id, decided_at=row.decided_at, comment=row.reason)

    @strawberry.field(description="The approvers the requester named (R8).")
    async def notified_approvers(self, info: Info) -> list[User]:
        rows = await info.context.loaders.named_approvers.load(self.model.id)
        return await _users(info, [row.user_id for row in rows])

    @strawberry.field
    def expires_at(self) -> datetime | None:
        return self.model.expires_at

    @strawberry.field(description="The kind of the policy the request was made under (R7).")
    def policy_kind(self) -> ApprovalPolicyKind:
        return policy.Snapshot.of(self.model).kind

    @strawberry.field(description="Progress per requirement; the first line is the total.")
    async def requirements(self, info: Info) -> list[ApprovalRequirement]:
        return [ApprovalRequirement.of(line) for line in await self._progress(info)]

    @strawberry.field(description='The requirements in words: "approvals: 1 of 2, sre: 1 of 2".')
    async def progress(self, info: Info) -> str:
        return ", ".join(map(str, await self._progress(info)))

    async def _progress(self, info: Info) -> list[policy.Requirement]:
        rows = await info.context.loaders.approvals.load(self.model.id)
        return policy.requirements(
            self.model.required_approvals,
            policy.Snapshot.of(self.model),
            [(a.user_id, a.group_ids) for a in rows],
        )

    @strawberry.field(description="The image is older than the pipeline's active image.")
    def stale(self) -> bool:
        return self.model.stale

    @strawberry.field(description="Whether the caller may approve it right now.")
    async def viewer_can_approve(self, info: Info) -> bool:
        loaders = info.context.loaders
        request = self.model
        approvals = await loaders.approvals.load(request.id)
        image = await loaders.image.load(request.image_id)
        pipeline = await loaders.pipeline.load(request.pipeline_id)
        application = await loaders.application.load(pipeline.application_id)
        environment = await loaders.environment.load(pipeline.environment_id)
        return reads.viewer_can_approve(
            info.context.actor,
            request,
            built_by_id=image.built_by_id,
            approver_ids={a.user_id for a in approvals},
            application=application.name,
            environment=environment.name,
        )


@strawberry.type
class Deployment(Node):
    model: strawberry.Private[models.Deployment]

    @strawberry.field
    async def pipeline(self, info: Info) -> Pipeline:
        return Pipeline(model=await info.context.loaders.pipeline.load(self.model.pipeline_id))

    @strawberry.field
    async def image(self, info: Info) -> Image:
        return Image(model=await info.context.loaders.image.load(self.model.image_id))

    @strawberry.field
    def status(self) -> DeploymentStatus:
        return models.DeploymentStatus(self.model.status)

    @strawberry.field
    def strategy(self) -> DeploymentStrategy:
        return models.DeploymentStrategy(self.model.strategy)

    @strawberry.field
    async def triggered_by(self, info: Info) -> User:
        return await _user(info, self.model.triggered_by_id)

    @strawberry.field
    async def approval_request(self, info: Info) -> ApprovalRequest | None:
        if self.model.approval_request_id is None:
            return None
        return ApprovalRequest(model=await info.context.loaders.request.load(self.model.approval_request_id))

    @strawberry.field
    def started_at(self) -> datetime:
        return self.model.started_at

    @strawberry.field
    def finished_at(self) -> datetime | None:
        return self.model.finished_at

    @strawberry.field(description="Deployed by an exception user of the pipeline, without approval.")
    def approval_exception(self) -> bool:
        return self.model.approval_exception

    @strawberry.field(description="Set when a super-admin deployed through a freeze.")
    def freeze_override_reason(self) -> str | None:
        return self.model.freeze_override_reason

    @strawberry.field(description="What the rollout driver or CD system said last.")
    def message(self) -> str | None:
        return self.model.message

    @strawberry.field(description="The simulator's steps and where the rollout stands.")
    def steps(self) -> list[DeploymentStep]:
        return [DeploymentStep(name=step.name, status=step.status) for step in plan.steps(self.model, now())]


StepStatus = strawberry.enum(plan.StepStatus, name="StepStatus")


@strawberry.type
class DeploymentStep:
    name: str
    status: StepStatus


@strawberry.type
class AuditEvent(Node):
    model: strawberry.Private[models.AuditEvent]

    @strawberry.field
    def at(self) -> datetime:
        return self.model.at

    @strawberry.field(description="Null when Greenlight acted on its own.")
    async def actor(self, info: Info) -> User | None:
        if self.model.actor_id is None:
            return None
        return await _user(info, self.model.actor_id)

    @strawberry.field
    def action(self) -> str:
        return self.model.action

    @strawberry.field
    def object_id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode(self.model.object_type, self.model.object_id))

    @strawberry.field
    def application(self) -> str | None:
        return self.model.application

    @strawberry.field
    def environment(self) -> str | None:
        return self.model.environment

    @strawberry.field
    def before(self) -> JSON | None:
        return self.model.before

    @strawberry.field
    def after(self) -> JSON | None:
        return self.model.after


T = TypeVar("T")


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    """Named ImageConnection, ApprovalRequestConnection, ... by its node type."""

    edges: list[Edge[T]]
    page_info: PageInfo
    page: strawberry.Private[reads.Page]

    @strawberry.field(description="Counted only when asked for.")
    async def total_count(self) -> int:
        return await self.page.count()


def connection(page: reads.Page, node: type[T]) -> Connection[T]:
    edges = [Edge(cursor=ids.encode_cursor(m.id), node=node(model=m)) for m in page.items]
    return Connection(edges=edges, page_info=PageInfo(page=page), page=page)


@strawberry.type
class ApiToken(Node):
    model: strawberry.Private[models.ApiToken]

    @strawberry.field
    def name(self) -> str:
        return self.model.name

    @strawberry.field
    async def user(self, info: Info) -> User:
        return await _user(info, self.model.user_id)

    @strawberry.field
    def expires_at(self) -> datetime | None:
        return self.model.expires_at

    @strawberry.field
    def created_at(self) -> datetime:
        return self.model.created_at

    @strawberry.field
    def revoked_at(self) -> datetime | None:
        return self.model.revoked_at

    @strawberry.field
    def last_used_at(self) -> datetime | None:
        return self.model.last_used_at


@strawberry.type(description="The secret is shown once, here.")
class IssuedApiToken:
    token: str
    api_token: ApiToken


@strawberry.type(description="An email in the outbox (super-admins only).")
class OutboxEmail(Node):
    model: strawberry.Private[models.EmailOutbox]

    @strawberry.field
    def kind(self) -> str:
        return self.model.kind

    @strawberry.field
    def to_address(self) -> str:
        return self.model.to_address

    @strawberry.field
    def subject(self) -> str:
        return self.model.subject

    @strawberry.field
    def message_id(self) -> str:
        return self.model.message_id

    @strawberry.field
    def attempts(self) -> int:
        return self.model.attempts

    @strawberry.field
    def created_at(self) -> datetime:
        return self.model.created_at

    @strawberry.field
    def sent_at(self) -> datetime | None:
        return self.model.sent_at

    @strawberry.field
    def failed_at(self) -> datetime | None:
        return self.model.failed_at

    @strawberry.field
    def last_error(self) -> str | None:
        return self.model.last_error


ActionEnum = strawberry.enum(Action, name="Action")


@strawberry.type
class GroupRoleBinding(Node):
    model: strawberry.Private[models.RoleBinding]

    @strawberry.field
    async def group(self, info: Info) -> Group:
        return Group(model=await info.context.loaders.group.load(self.model.group_id))

    @strawberry.field
    def role(self) -> Role:
        return models.Role(self.model.role)

    @strawberry.field
    def application(self) -> str:
        return self.model.application

    @strawberry.field
    def environment(self) -> str:
        return self.model.environment


@strawberry.type(description="A team; its members inherit the roles granted to it.")
class Group(Node):
    model: strawberry.Private[models.Group]

    @strawberry.field
    def name(self) -> str:
        return self.model.name

    @strawberry.field(description="Super-admins only.")
    async def members(self, info: Info, first: int | None = 20, after: str | None = None) -> Connection[User]:
        loader = info.context.loaders.members(info.context.actor)
        return connection(await loader.load((self.model.id, first, ids.decode_cursor(after))), User)

    @strawberry.field(description="Super-admins only.")
    async def role_bindings(self, info: Info) -> list[GroupRoleBinding]:
        found = await info.context.loaders.group_bindings(info.context.actor).load(self.model.id)
        return [GroupRoleBinding(model=b) for b in found]


@strawberry.type(description="A role that allows the action, and where it comes from.")
class AccessGrant:
    role: Role
    application: str
    environment: str
    group: str | None = strawberry.field(description="The group it comes through; null if direct.")


@strawberry.type
class Decision:
    allowed: bool
    reason: str
    grants: list[AccessGrant]
    roles_needed: list[Role] = strawberry.field(description="Roles that allow the action.")

    @classmethod
    def of(cls, explanation) -> Decision:
        return cls(
            allowed=explanation.allowed,
            reason=explanation.reason,
            grants=[
                AccessGrant(
                    role=g.role,
                    application=g.scope.application,
                    environment=g.scope.environment,
                    group=g.group,
                )
                for g in explanation.grants
            ],
            roles_needed=[models.Role(r) for r in explanation.roles_needed],
        )

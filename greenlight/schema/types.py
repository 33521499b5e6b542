"""GraphQL object types of the contract. Each wraps a model, kept in a Private `model` for
its resolvers: `from_model` fills the declared fields, its plain columns; what computes,
authorises or loads a relation (through the loaders) stays a method.

A bare annotation above such a method (`user: User`) keeps that field in its place:
Strawberry lists annotated fields before the others, and schema.graphql keeps its order."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Generic, TypeVar

import strawberry
from strawberry.scalars import JSON

from greenlight import models
from greenlight.clock import now
from greenlight.policies import Action, Scope
from greenlight.rollout import plan
from greenlight.schema import ids
from greenlight.schema.arguments import After, First, described
from greenlight.schema.context import Info
from greenlight.schema.enums import (
    ApprovalPolicyKind,
    ApprovalState,
    DeploymentStatus,
    DeploymentStrategy,
    Role,
    TriggerType,
    Weekday,
    described_enum,
)
from greenlight.workflow import checks, decisions, freezes, notices, policy, reads
from greenlight.workflow.states import effective_state

if TYPE_CHECKING:
    from greenlight.schema.images import ImageCheck, ImageFilter, Label


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
        "newer items than it exist)."
    )
    async def has_previous_page(self) -> bool:
        return await self.page.has_previous()

    @strawberry.field(description="The cursor of the first edge; null on an empty page.")
    def start_cursor(self) -> str | None:
        return ids.encode_cursor(self.page.items[0].id) if self.page.items else None

    @strawberry.field(description="The cursor of the last edge, for `after`; null on an empty page.")
    def end_cursor(self) -> str | None:
        return ids.encode_cursor(self.page.items[-1].id) if self.page.items else None


@strawberry.type(description="A person (or CI system) who signs in with an API token or single sign-on.")
class User(Node):
    model: strawberry.Private[models.User]

    email: str = strawberry.field(
        description="The address that names the user (and where approver emails go)."
    )
    name: str = strawberry.field(description="The display name.")
    is_active: bool = strawberry.field(
        description="False once deactivated: every token and JWT of the user fails, and they are no eligible approver."
    )

    @strawberry.field(description="Whether the user holds super-admin (R2; the default approvers, R4).")
    def is_super_admin(self, info: Info) -> bool:
        return info.context.actor.authorizer.is_super_admin(self.model.id)

    @strawberry.field(
        description="Whether Greenlight emails the user its notices (outcomes, reminders, escalations); "
        "approval requests naming them come regardless. Visible to the user themself and to "
        "super-admins; null for anyone else."
    )
    def email_notices(self, info: Info) -> bool | None:
        return self.model.email_notices if notices.sees_settings(info.context.actor, self.model) else None

    @strawberry.field(description="Visible to the user themself and to super-admins.")
    async def role_bindings(self, info: Info) -> list[RoleBinding]:
        bindings = await info.context.loaders.role_bindings(info.context.actor).load(self.model.id)
        return [RoleBinding.from_model(b) for b in bindings]

    @classmethod
    def from_model(cls, model: models.User) -> User:
        return cls(
            model=model,
            email=model.email,
            name=model.name,
            is_active=model.is_active,
        )


async def _user(info: Info, user_id: int) -> User:
    return User.from_model(await info.context.loaders.user.load(user_id))


async def _users(info: Info, user_ids: list[int]) -> list[User]:
    return [User.from_model(u) for u in await info.context.loaders.user.load_many(user_ids)]


@strawberry.type(
    description="A role granted to a user on a scope (R1 to R5): an application name or *, an environment name or *."
)
class RoleBinding(Node):
    model: strawberry.Private[models.RoleBinding]

    user: User

    @strawberry.field(description="Who holds the role.")
    async def user(self, info: Info) -> User:
        return await _user(info, self.model.user_id)

    role: Role = strawberry.field(description="The role granted.")
    application: str = strawberry.field(description='An application name, or "*" for all.')
    environment: str = strawberry.field(description='An environment name, or "*" for all.')

    @classmethod
    def from_model(cls, model: models.RoleBinding) -> RoleBinding:
        return cls(
            model=model,
            role=models.Role(model.role),
            application=model.application,
            environment=model.environment,
        )


@strawberry.type(
    description="Where applications are deployed, such as staging or prod; visible through any role on it (R1)."
)
class Environment(Node):
    model: strawberry.Private[models.Environment]

    name: str = strawberry.field(description="Lowercase [a-z0-9][a-z0-9-]{0,62}, unique.")
    archived: bool = strawberry.field(
        description="Archived: left out of lists, takes no new requests or deployments; history kept."
    )
    archived_at: datetime | None = strawberry.field(description="When it was archived; null while it is not.")

    @classmethod
    def from_model(cls, model: models.Environment) -> Environment:
        return cls(
            model=model,
            name=model.name,
            archived=model.archived_at is not None,
            archived_at=model.archived_at,
        )


@strawberry.type(
    description="A deployable application; its images are registered by CI (R3). Visible through any role on it (R1)."
)
class Application(Node):
    model: strawberry.Private[models.Application]

    name: str = strawberry.field(description="Lowercase [a-z0-9][a-z0-9-]{0,62}, unique.")
    archived: bool = strawberry.field(
        description="Archived: left out of lists, takes no new requests or deployments; history kept."
    )
    archived_at: datetime | None = strawberry.field(description="When it was archived; null while it is not.")

    @strawberry.field(description="Its pipelines the caller can see (R1), oldest first.")
    async def pipelines(self, info: Info) -> list[Pipeline]:
        found = await info.context.loaders.pipelines(info.context.actor).load(self.model.id)
        return [Pipeline.from_model(p) for p in found]

    @classmethod
    def from_model(cls, model: models.Application) -> Application:
        return cls(
            model=model,
            name=model.name,
            archived=model.archived_at is not None,
            archived_at=model.archived_at,
        )


@strawberry.type(description="GROUP_QUORUMS: how many approvals a policy needs from one group's members.")
class GroupQuorum:
    group_model: strawberry.Private[models.Group]
    min_approvals: int = strawberry.field(
        description="The least number of approvals from the group's members."
    )

    @strawberry.field(description="The group (its name shows to anyone who sees the policy).")
    def group(self) -> Group:
        return Group.from_model(self.group_model)


@strawberry.type(
    description="What a pipeline's deploys need: how many approvals, from whom, for how long (R7, R12, R21)."
)
class ApprovalPolicy(Node):
    pipeline: strawberry.Private[models.Pipeline]

    @strawberry.field(
        description='"ApprovalPolicy:<pipeline number>": each pipeline has one policy, so its id '
        "follows the pipeline's."
    )
    def id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode("ApprovalPolicy", self.pipeline.id))

    required_approvals: int = strawberry.field(
        description="0: deploys need no approval; otherwise the least number of approvals."
    )
    ttl_hours: int | None = strawberry.field(
        description="Lifetime of a request, pending or approved, in hours (1 to 8760); null: no expiry (R7, R15)."
    )
    approvers_can_deploy: bool = strawberry.field(
        description="Whether a user who approved a request may deploy on it; otherwise APPROVER_CANNOT_DEPLOY (R21)."
    )
    kind: ApprovalPolicyKind = strawberry.field(
        description="Whose approvals count: anyone eligible, specific users, or quorums of groups."
    )

    approvers: list[User]

    @strawberry.field(description="SPECIFIC_USERS: each of them must approve.")
    async def approvers(self, info: Info) -> list[User]:
        rows = await info.context.loaders.policy_approvers.load(self.pipeline.id)
        return await _users(info, [r.user_id for r in rows])

    group_quorums: list[GroupQuorum]

    @strawberry.field(description="GROUP_QUORUMS: at least minApprovals from each group.")
    async def group_quorums(self, info: Info) -> list[GroupQuorum]:
        rows = await info.context.loaders.group_quorums.load(self.pipeline.id)
        groups = await info.context.loaders.group.load_many([r.group_id for r in rows])
        return [
            GroupQuorum(group_model=g, min_approvals=r.min_approvals)
            for g, r in zip(groups, rows, strict=True)
        ]

    count_once_per_person: bool = strawberry.field(
        description="GROUP_QUORUMS: one person's approval counts toward one group only."
    )

    exception_users: list[User]

    @strawberry.field(description="Users who may deploy without approval.")
    async def exception_users(self, info: Info) -> list[User]:
        rows = await info.context.loaders.approval_exceptions.load(self.pipeline.id)
        return await _users(info, [r.user_id for r in rows if r.user_id is not None])

    exception_groups: list[Group]

    @strawberry.field(description="Groups whose members may deploy without approval.")
    async def exception_groups(self, info: Info) -> list[Group]:
        rows = await info.context.loaders.approval_exceptions.load(self.pipeline.id)
        groups = await info.context.loaders.group.load_many(
            [r.group_id for r in rows if r.group_id is not None]
        )
        return [Group.from_model(g) for g in groups]

    cancel_stale_requests: bool = strawberry.field(
        description="Live requests for older images are cancelled when a newer one is deployed."
    )
    required_checks: list[str] = strawberry.field(
        description="Image checks that must have PASSED before a request is approved and before a deploy (CHECKS_NOT_PASSED)."
    )

    requires_healthy_on: Environment | None

    @strawberry.field(
        description="Promotion: the environment an image must have been HEALTHY on before it may be requested here (PROMOTION_REQUIRED); null: none."
    )
    async def requires_healthy_on(self, info: Info) -> Environment | None:
        if self.pipeline.requires_healthy_on_id is None:
            return None
        return Environment.from_model(
            await info.context.loaders.environment.load(self.pipeline.requires_healthy_on_id)
        )

    remind_after_hours: int | None = strawberry.field(
        description="A request pending this many hours reminds its named approvers who have not approved, "
        "once per such period; null: no reminders."
    )
    escalate_after_hours: int | None = strawberry.field(
        description="A request pending this many hours is escalated, once, to escalateToGroup's members "
        "or else the super-admins; null: no escalation."
    )

    @strawberry.field(description="Who is told of an escalation; null: the super-admins.")
    async def escalate_to_group(self, info: Info) -> Group | None:
        if self.pipeline.escalate_group_id is None:
            return None
        group = await info.context.loaders.group.load(self.pipeline.escalate_group_id)
        return None if group is None else Group.from_model(group)

    @classmethod
    def from_model(cls, pipeline: models.Pipeline) -> ApprovalPolicy:
        return cls(
            pipeline=pipeline,
            required_approvals=pipeline.required_approvals,
            ttl_hours=pipeline.ttl_hours,
            approvers_can_deploy=pipeline.approvers_can_deploy,
            kind=models.ApprovalPolicyKind(pipeline.policy_kind),
            count_once_per_person=pipeline.count_once_per_person,
            cancel_stale_requests=pipeline.cancel_stale_requests,
            required_checks=list(pipeline.required_checks or ()),
            remind_after_hours=pipeline.remind_after_hours,
            escalate_after_hours=pipeline.escalate_after_hours,
        )


@strawberry.type(
    description="A freeze that repeats every week, wall-clock in an IANA time zone (so it follows daylight saving time)."
)
class WeeklyWindow:
    time_zone: str = strawberry.field(description="An IANA time zone name, such as Europe/Berlin.")
    start_day: Weekday = strawberry.field(description="The day the freeze starts.")
    start_time: str = strawberry.field(
        description='"HH:MM" on startDay, wall-clock in timeZone: frozen from then.'
    )
    end_day: Weekday = strawberry.field(
        description="The day the freeze ends (may be earlier in the week than startDay: it wraps)."
    )
    end_time: str = strawberry.field(description='"HH:MM" on endDay: open again from then.')


@strawberry.type(description="A window in which deploys are refused with DEPLOY_FROZEN.")
class DeployFreeze(Node):
    model: strawberry.Private[models.DeployFreeze]

    name: str = strawberry.field(description="What the freeze is for, as people call it.")

    environment: Environment | None

    @strawberry.field(
        description="The environment frozen (every pipeline on it); null for a pipeline's freeze."
    )
    async def environment(self, info: Info) -> Environment | None:
        if self.model.environment_id is None:
            return None
        return Environment.from_model(await info.context.loaders.environment.load(self.model.environment_id))

    pipeline: Pipeline | None

    @strawberry.field(description="The pipeline frozen; null for an environment's freeze.")
    async def pipeline(self, info: Info) -> Pipeline | None:
        if self.model.pipeline_id is None:
            return None
        return Pipeline.from_model(await info.context.loaders.pipeline.load(self.model.pipeline_id))

    starts_at: datetime | None = strawberry.field(
        description="One-off windows: from startsAt (frozen) to endsAt (open again)."
    )
    ends_at: datetime | None = strawberry.field(
        description="One-off windows: when deploys are allowed again."
    )

    weekly: WeeklyWindow | None

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

    created_by: User

    @strawberry.field(description="The super-admin who made it.")
    async def created_by(self, info: Info) -> User:
        return await _user(info, self.model.created_by_id)

    created_at: datetime = strawberry.field(description="When it was made.")

    @classmethod
    def from_model(cls, model: models.DeployFreeze) -> DeployFreeze:
        return cls(
            model=model,
            name=model.name,
            starts_at=model.starts_at,
            ends_at=model.ends_at,
            created_at=model.created_at,
        )


@strawberry.type(
    description="One application deployed to one environment (R1): its strategy, trigger, approval policy, freezes and deployments."
)
class Pipeline(Node):
    model: strawberry.Private[models.Pipeline]

    application: Application

    @strawberry.field(description="The application it deploys.")
    async def application(self, info: Info) -> Application:
        return Application.from_model(await info.context.loaders.application.load(self.model.application_id))

    environment: Environment

    @strawberry.field(description="The environment it deploys to.")
    async def environment(self, info: Info) -> Environment:
        return Environment.from_model(await info.context.loaders.environment.load(self.model.environment_id))

    strategy: DeploymentStrategy = strawberry.field(description="How deployments roll out.")
    trigger_type: TriggerType = strawberry.field(
        description="AUTOMATIC: an image is deployed the moment its request becomes APPROVED (R24)."
    )

    @strawberry.field(description="What its deploys need (R7, R12, R21).")
    def approval_policy(self) -> ApprovalPolicy:
        return ApprovalPolicy.from_model(self.model)

    @strawberry.field(description="Freezes on this pipeline and on its environment.")
    async def deploy_freezes(self, info: Info) -> list[DeployFreeze]:
        return [DeployFreeze.from_model(f) for f in await info.context.loaders.freezes.load(self.model.id)]

    @strawberry.field(description="Null: deploys are allowed now; otherwise when the freeze in force ends.")
    async def frozen_until(self, info: Info) -> datetime | None:
        return freezes.frozen_until(await info.context.loaders.freezes.load(self.model.id), now())

    @strawberry.field(description='The image "Active on <environment>" (R23).')
    async def active_image(self, info: Info) -> Image | None:
        deployment = await info.context.loaders.active_deployment.load(self.model.id)
        if deployment is None:
            return None
        return Image.from_model(await info.context.loaders.image.load(deployment.image_id))

    @strawberry.field(description="Its newest deployment that is PROGRESSING or HEALTHY (R23); null if none.")
    async def active_deployment(self, info: Info) -> Deployment | None:
        deployment = await info.context.loaders.active_deployment.load(self.model.id)
        return Deployment.from_model(deployment) if deployment else None

    @strawberry.field(
        description='What "Select Image" lists, newest first (R19); images whose required checks have not all PASSED are left out.'
    )
    async def deployable_images(
        self,
        info: Info,
        filter: Annotated[
            Annotated[ImageFilter, strawberry.lazy("greenlight.schema.images")] | None,
            strawberry.argument(description="Only the images matching it (branch, commit, label)."),
        ] = None,
    ) -> list[Image]:
        from greenlight.schema.images import image_filter

        found = image_filter(filter)
        if found is None:
            rows = await info.context.loaders.deployable_images.load(self.model.id)
        else:
            rows = await info.context.loaders.deployable_images_filtered.load((self.model.id, found))
        return [Image.from_model(i) for i in rows]

    # --- "Why can't I?" (decided by greenlight.workflow.decisions, as the mutations are) ---
    @strawberry.field(
        description="Whether deployImage of this image here (no acknowledgeStale, no override) would succeed now, and why not."
    )
    async def viewer_can_deploy(
        self,
        info: Info,
        image_id: Annotated[strawberry.ID, strawberry.argument(description="The image to deploy.")],
    ) -> ActionDecision:
        image = ids.decode("Image", image_id, "imageId")
        return ActionDecision.of(await decisions.explain_deploy(info.context.actor, self.model.id, image))

    @strawberry.field(
        description="Whether requestApproval of this image here (naming no approvers) would succeed now, and why not."
    )
    async def viewer_can_request_approval(
        self,
        info: Info,
        image_id: Annotated[
            strawberry.ID, strawberry.argument(description="The image to request approval of.")
        ],
    ) -> ActionDecision:
        image = ids.decode("Image", image_id, "imageId")
        return ActionDecision.of(
            await decisions.explain_request_approval(info.context.actor, self.model.id, image)
        )

    @strawberry.field(description="Its deployments, newest first (R23).")
    async def deployments(self, info: Info, first: First = 20, after: After = None) -> Connection[Deployment]:
        found = await info.context.loaders.deployments.load((self.model.id, first, ids.decode_cursor(after)))
        return connection(found, Deployment)

    @classmethod
    def from_model(cls, model: models.Pipeline) -> Pipeline:
        return cls(
            model=model,
            strategy=models.DeploymentStrategy(model.strategy),
            trigger_type=models.TriggerType(model.trigger_type),
        )


@strawberry.type(
    description="A container image registered by CI for an application (R3); the same digest twice is a CONFLICT."
)
class Image(Node):
    model: strawberry.Private[models.Image]

    application: Application

    @strawberry.field(description="The application it was built for.")
    async def application(self, info: Info) -> Application:
        return Application.from_model(await info.context.loaders.application.load(self.model.application_id))

    repository: str = strawberry.field(description="Where it is stored, e.g. registry.example.com/acme/shop.")
    tag: str = strawberry.field(description="Its tag, e.g. 1.4.2.")
    digest: str = strawberry.field(description="sha256: and 64 lowercase hex digits; unique per application.")

    built_by: User

    @strawberry.field(description="The user whose credentials registered it; never an approver of it (R10).")
    async def built_by(self, info: Info) -> User:
        return await _user(info, self.model.built_by_id)

    created_at: datetime = strawberry.field(description="When it was registered.")
    commit: str | None = strawberry.field(
        description="The commit it was built from (7 to 40 lowercase hex digits); null if not given."
    )
    branch: str | None = strawberry.field(description="The branch it was built from; null if not given.")
    build_url: str | None = strawberry.field(
        description="The CI build that made it (http or https); null if not given."
    )

    @strawberry.field(description="The labels CI gave it, by key.")
    async def labels(self, info: Info) -> list[Annotated[Label, strawberry.lazy("greenlight.schema.images")]]:
        from greenlight.schema.images import Label

        rows = await info.context.loaders.image_labels.load(self.model.id)
        return [Label(key=r.key, value=r.value) for r in rows]

    @strawberry.field(description="The latest result of each check CI reported on it, by name.")
    async def checks(
        self, info: Info
    ) -> list[Annotated[ImageCheck, strawberry.lazy("greenlight.schema.images")]]:
        from greenlight.schema.images import ImageCheck

        return [ImageCheck.from_model(c) for c in await info.context.loaders.image_checks.load(self.model.id)]

    @strawberry.field(
        description="Its history on one pipeline: every request, oldest first, each asking again naming the "
        "rejected one before it (previousRequest). NOT_FOUND for a pipeline the caller cannot see (R1)."
    )
    async def approval_requests(
        self,
        info: Info,
        pipeline_id: Annotated[strawberry.ID, strawberry.argument(description="The pipeline.")],
    ) -> list[ApprovalRequest]:
        pid = ids.decode("Pipeline", pipeline_id, "pipelineId")
        found = await reads.request_chain(info.context.actor, self.model.id, pid)
        return [ApprovalRequest.from_model(r) for r in found]

    @strawberry.field(description="Environments where this image is active.")
    async def active_on(self, info: Info) -> list[Environment]:
        found = await info.context.loaders.active_on(info.context.actor).load(self.model.id)
        return [Environment.from_model(e) for e in found]

    @strawberry.field(description="The latest request's state on that pipeline; null if never requested.")
    async def approval_state(
        self,
        info: Info,
        pipeline_id: Annotated[strawberry.ID, described("A pipeline of the image's application.")],
    ) -> ApprovalState | None:
        pid = ids.decode("Pipeline", pipeline_id, "pipelineId")
        return await info.context.loaders.approval_state(info.context.actor).load((self.model.id, pid))

    @classmethod
    def from_model(cls, model: models.Image) -> Image:
        return cls(
            model=model,
            repository=model.repository,
            tag=model.tag,
            digest=model.digest,
            created_at=model.created_at,
            commit=model.commit,
            branch=model.branch,
            build_url=model.build_url,
        )


@strawberry.type(description="One approver's decision on a request, with when and why.")
class Approval:
    user_id: strawberry.Private[int]
    decided_at: datetime = strawberry.field(description="When the approver decided.")
    comment: str | None = strawberry.field(
        description="The approver's comment; for a rejection, the reason (R13)."
    )

    @strawberry.field(description="Who decided.")
    async def user(self, info: Info) -> User:
        return await _user(info, self.user_id)


@strawberry.type(
    description="One line of a request's progress (the first is the total): how many approvals it needs and has."
)
class ApprovalRequirement:
    description: str = strawberry.field(
        description="What the line counts, e.g. \"approvals\", a group's name or a user's email."
    )
    required: int = strawberry.field(description="How many approvals the line needs.")
    approved: int = strawberry.field(description="How many it has.")
    met: bool = strawberry.field(description="Whether approved reaches required.")
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

    @strawberry.field(description="SPECIFIC_USERS: the user whose approval the line waits for.")
    async def user(self, info: Info) -> User | None:
        return None if self.user_id is None else await _user(info, self.user_id)

    @strawberry.field(description="GROUP_QUORUMS: the group whose quorum the line counts.")
    async def group(self, info: Info) -> Group | None:
        if self.group_id is None:
            return None
        found = await info.context.loaders.group.load(self.group_id)
        return None if found is None else Group.from_model(found)


@strawberry.type(
    description="A request to approve one image for one pipeline (R6 to R18); deployable once APPROVED (R12, R20)."
)
class ApprovalRequest(Node):
    model: strawberry.Private[models.ApprovalRequest]

    image: Image

    @strawberry.field(description="The image to approve.")
    async def image(self, info: Info) -> Image:
        return Image.from_model(await info.context.loaders.image.load(self.model.image_id))

    pipeline: Pipeline

    @strawberry.field(description="Where it would be deployed.")
    async def pipeline(self, info: Info) -> Pipeline:
        return Pipeline.from_model(await info.context.loaders.pipeline.load(self.model.pipeline_id))

    state: ApprovalState

    @strawberry.field(description="Its state now: a passed expiresAt reads EXPIRED at once (R15).")
    def state(self) -> ApprovalState:
        return effective_state(self.model)

    requested_by: User

    @strawberry.field(description="Who asked (build-and-deploy, R3); never an approver of it (R10).")
    async def requested_by(self, info: Info) -> User:
        return await _user(info, self.model.requested_by_id)

    requested_at: datetime = strawberry.field(description="When it was asked.")
    comment: str | None = strawberry.field(description="The requester's comment.")
    required_approvals: int = strawberry.field(description="Fixed when the request is made (R7).")

    approvals: list[Approval]

    @strawberry.field(description="The approvals so far, each counted once (R11).")
    async def approvals(self, info: Info) -> list[Approval]:
        rows = await info.context.loaders.approvals.load(self.model.id)
        return [Approval(user_id=a.user_id, decided_at=a.decided_at, comment=a.comment) for a in rows]

    rejection: Approval | None

    @strawberry.field(description="Set when REJECTED; comment holds the reason.")
    async def rejection(self, info: Info) -> Approval | None:
        row = await info.context.loaders.rejection.load(self.model.id)
        if row is None:
            return None
        return Approval(user_id=row.user_id, decided_at=row.decided_at, comment=row.reason)

    previous_request: ApprovalRequest | None

    @strawberry.field(
        description="The REJECTED request this one asks again after (its reason: previousRequest.rejection); null if none."
    )
    async def previous_request(self, info: Info) -> ApprovalRequest | None:
        if self.model.previous_request_id is None:
            return None
        return ApprovalRequest.from_model(
            await info.context.loaders.request.load(self.model.previous_request_id)
        )

    next_request: ApprovalRequest | None

    @strawberry.field(
        description="The request that asked again after this one was rejected; null if none yet."
    )
    async def next_request(self, info: Info) -> ApprovalRequest | None:
        found = await info.context.loaders.next_request.load(self.model.id)
        return None if found is None else ApprovalRequest.from_model(found)

    history: list[ApprovalRequest]

    @strawberry.field(
        description="Every request of this image on this pipeline, this one included, oldest first."
    )
    async def history(self, info: Info) -> list[ApprovalRequest]:
        found = await reads.request_chain(info.context.actor, self.model.image_id, self.model.pipeline_id)
        return [ApprovalRequest.from_model(r) for r in found]

    notified_approvers: list[User]

    @strawberry.field(description="The approvers the requester named (R8).")
    async def notified_approvers(self, info: Info) -> list[User]:
        rows = await info.context.loaders.named_approvers.load(self.model.id)
        return await _users(info, [row.user_id for row in rows])

    expires_at: datetime | None = strawberry.field(
        description="When it expires, fixed when made from the policy's ttlHours (R7); null: never."
    )

    policy_kind: ApprovalPolicyKind

    @strawberry.field(description="The kind of the policy the request was made under (R7).")
    def policy_kind(self) -> ApprovalPolicyKind:
        return policy.Snapshot.of(self.model).kind

    requirements: list[ApprovalRequirement]

    @strawberry.field(description="Progress per requirement; the first line is the total.")
    async def requirements(self, info: Info) -> list[ApprovalRequirement]:
        return [ApprovalRequirement.of(line) for line in await self._progress(info)]

    progress: str

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

    stale: bool = strawberry.field(description="The image is older than the pipeline's active image.")

    @strawberry.field(
        description="Whether the caller may approve it right now (acknowledging a stale image)."
    )
    async def viewer_can_approve(self, info: Info) -> bool:
        facts, approver_ids = await self._facts(info)
        return decisions.approve(info.context.actor, facts, approver_ids, acknowledge_stale=True) is None

    # --- "Why can't I?" (decided by greenlight.workflow.decisions, as the mutations are) ---
    @strawberry.field(description="What the caller may do to this request now, and why not.")
    async def viewer_can(self, info: Info) -> RequestActions:
        facts, approver_ids = await self._facts(info)
        verdicts = decisions.explain_request(info.context.actor, facts, approver_ids)
        return RequestActions(
            approve=ActionDecision.of(verdicts.approve),
            reject=ActionDecision.of(verdicts.reject),
            cancel=ActionDecision.of(verdicts.cancel),
            expire=ActionDecision.of(verdicts.expire),
        )

    async def _facts(self, info: Info) -> tuple[decisions.RequestFacts, set[int]]:
        """The rows the decisions need, through the loaders (a list costs what one does)."""
        loaders = info.context.loaders
        request = self.model
        approvals = await loaders.approvals.load(request.id)
        image = await loaders.image.load(request.image_id)
        pipeline = await loaders.pipeline.load(request.pipeline_id)
        application = await loaders.application.load(pipeline.application_id)
        environment = await loaders.environment.load(pipeline.environment_id)
        scope = Scope(application.name, environment.name)
        unmet = checks.Unmet()
        if checks.required(pipeline):
            rows = await loaders.image_checks.load(request.image_id)
            unmet = checks.unmet(checks.required(pipeline), rows)
        facts = decisions.RequestFacts(request, scope, image.built_by_id, unmet)
        return facts, {a.user_id for a in approvals}

    @classmethod
    def from_model(cls, model: models.ApprovalRequest) -> ApprovalRequest:
        return cls(
            model=model,
            requested_at=model.requested_at,
            comment=model.comment,
            required_approvals=model.required_approvals,
            expires_at=model.expires_at,
            stale=model.stale,
        )


@strawberry.type(description="Whether the signed-in user may take one action on one object now, and why not.")
class ActionDecision:
    allowed: bool = strawberry.field(description="The mutation would succeed now.")
    code: str | None = strawberry.field(
        description="Null when allowed; otherwise exactly the error code the mutation would give."
    )
    reason: str = strawberry.field(description="Plain words for a person.")

    @classmethod
    def of(cls, verdict: decisions.Verdict) -> ActionDecision:
        return cls(allowed=verdict.allowed, code=verdict.code, reason=verdict.reason)


@strawberry.type(
    description="The caller's decisions on one approval request, as its mutations would take them."
)
class RequestActions:
    approve: ActionDecision = strawberry.field(description="approveRequest without acknowledgeStale.")
    reject: ActionDecision = strawberry.field(description="rejectRequest, given a reason.")
    cancel: ActionDecision = strawberry.field(description="cancelApprovalRequest.")
    expire: ActionDecision = strawberry.field(description="expireApproval.")


@strawberry.type(
    description="One image rolled out on one pipeline: PROGRESSING, then HEALTHY, DEGRADED, FAILED or SUPERSEDED (R23)."
)
class Deployment(Node):
    model: strawberry.Private[models.Deployment]

    pipeline: Pipeline

    @strawberry.field(description="Where it rolls out.")
    async def pipeline(self, info: Info) -> Pipeline:
        return Pipeline.from_model(await info.context.loaders.pipeline.load(self.model.pipeline_id))

    image: Image

    @strawberry.field(description="What it rolls out.")
    async def image(self, info: Info) -> Image:
        return Image.from_model(await info.context.loaders.image.load(self.model.image_id))

    status: DeploymentStatus = strawberry.field(description="Where the rollout stands (R23).")
    strategy: DeploymentStrategy = strawberry.field(description="The pipeline's strategy when it started.")

    triggered_by: User

    @strawberry.field(description="Who deployed; the requester for an automatic deploy (R24).")
    async def triggered_by(self, info: Info) -> User:
        return await _user(info, self.model.triggered_by_id)

    approval_request: ApprovalRequest | None

    @strawberry.field(description="The request it consumed (R20); null when none was needed.")
    async def approval_request(self, info: Info) -> ApprovalRequest | None:
        if self.model.approval_request_id is None:
            return None
        return ApprovalRequest.from_model(
            await info.context.loaders.request.load(self.model.approval_request_id)
        )

    started_at: datetime = strawberry.field(description="When it started.")
    finished_at: datetime | None = strawberry.field(description="When it ended; null while PROGRESSING.")
    approval_exception: bool = strawberry.field(
        description="Deployed by an exception user of the pipeline, without approval."
    )
    freeze_override_reason: str | None = strawberry.field(
        description="Set when a super-admin deployed through a freeze."
    )
    message: str | None = strawberry.field(description="What the rollout driver or CD system said last.")

    @strawberry.field(description="The simulator's steps and where the rollout stands.")
    def steps(self) -> list[DeploymentStep]:
        return [DeploymentStep(name=step.name, status=step.status) for step in plan.steps(self.model, now())]

    @classmethod
    def from_model(cls, model: models.Deployment) -> Deployment:
        return cls(
            model=model,
            status=models.DeploymentStatus(model.status),
            strategy=models.DeploymentStrategy(model.strategy),
            started_at=model.started_at,
            finished_at=model.finished_at,
            approval_exception=model.approval_exception,
            freeze_override_reason=model.freeze_override_reason,
            message=model.message,
        )


StepStatus = described_enum(
    plan.StepStatus,
    "Where one step of a rollout stands.",
    {
        "PENDING": "Not started yet.",
        "RUNNING": "Under way.",
        "DONE": "Finished.",
        "FAILED": "Failed: the deployment ends DEGRADED or FAILED.",
        "SKIPPED": "Not run: the rollout ended before it.",
    },
)


@strawberry.type(description="One step of a rollout, as the built-in simulator plays the strategy.")
class DeploymentStep:
    name: str = strawberry.field(description='The step, e.g. "canary 10%".')
    status: StepStatus = strawberry.field(description="Where the step stands.")


@strawberry.type(
    description="One entry of the audit log (R25): who did what to which object, when, and the states before and after."
)
class AuditEvent(Node):
    model: strawberry.Private[models.AuditEvent]

    at: datetime = strawberry.field(description="When it happened.")

    actor: User | None

    @strawberry.field(description="Null when Greenlight acted on its own.")
    async def actor(self, info: Info) -> User | None:
        if self.model.actor_id is None:
            return None
        return await _user(info, self.model.actor_id)

    action: str = strawberry.field(description='What was done, e.g. "approve", "deploy", "grant_role".')

    object_id: strawberry.ID

    @strawberry.field(description="The id of the object acted on.")
    def object_id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode(self.model.object_type, self.model.object_id))

    application: str | None = strawberry.field(description="The application concerned, if any.")
    environment: str | None = strawberry.field(description="The environment concerned, if any.")
    before: JSON | None = strawberry.field(
        description="The object's state before, as JSON; null for a creation."
    )
    after: JSON | None = strawberry.field(description="Its state after, as JSON; null for a deletion.")

    @classmethod
    def from_model(cls, model: models.AuditEvent) -> AuditEvent:
        return cls(
            model=model,
            at=model.at,
            action=model.action,
            application=model.application,
            environment=model.environment,
            before=model.before,
            after=model.after,
        )


T = TypeVar("T")


@strawberry.type(description="One item of a page, with the cursor that continues after it.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Pass it as `after` to continue after this item.")
    node: T = strawberry.field(description="The item.")


@strawberry.type(
    description="One page of a list, newest first (Relay connection): up to `first` items after the cursor `after`."
)
class Connection(Generic[T]):
    """Named ImageConnection, ApprovalRequestConnection, ... by its node type."""

    edges: list[Edge[T]] = strawberry.field(description="The page's items, newest first.")
    page_info: PageInfo = strawberry.field(
        description="Where the page stands, and the cursor for the next one."
    )
    page: strawberry.Private[reads.Page]

    @strawberry.field(description="Counted only when asked for.")
    async def total_count(self) -> int:
        return await self.page.count()


def connection(page: reads.Page, node: type[T]) -> Connection[T]:
    edges = [Edge(cursor=ids.encode_cursor(m.id), node=node.from_model(m)) for m in page.items]
    return Connection(edges=edges, page_info=PageInfo(page=page), page=page)


@strawberry.type(description="An API token (never its secret): send it as `Authorization: Bearer <token>`.")
class ApiToken(Node):
    model: strawberry.Private[models.ApiToken]

    name: str = strawberry.field(description="What the token is for, e.g. the CI system using it.")

    user: User

    @strawberry.field(description="Whose token it is: it acts as this user.")
    async def user(self, info: Info) -> User:
        return await _user(info, self.model.user_id)

    expires_at: datetime | None = strawberry.field(description="When it stops working; null: never.")
    created_at: datetime = strawberry.field(description="When it was issued.")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked; null while usable.")
    last_used_at: datetime | None = strawberry.field(description="When it was last used to authenticate.")
    actions: list[str] | None = strawberry.field(
        description="The only actions it may take (policy.csv names; view is always within); null: no limit."
    )

    @strawberry.field(description="The only applications it may act on; null: no limit.")
    async def applications(self) -> list[Application] | None:
        return await _limited(models.Application, Application, self.model.application_ids)

    @strawberry.field(description="The only environments it may act on; null: no limit.")
    async def environments(self) -> list[Environment] | None:
        return await _limited(models.Environment, Environment, self.model.environment_ids)

    @classmethod
    def from_model(cls, model: models.ApiToken) -> ApiToken:
        return cls(
            model=model,
            name=model.name,
            expires_at=model.expires_at,
            created_at=model.created_at,
            revoked_at=model.revoked_at,
            last_used_at=model.last_used_at,
            actions=model.actions,
        )


async def _limited(model, node, limit_ids: list[int] | None):
    """A token's application or environment limits, by name (one statement, only when set)."""
    if limit_ids is None:
        return None
    return [node.from_model(row) for row in await model.filter(id__in=limit_ids).order_by("name")]


@strawberry.type(description="The secret is shown once, here.")
class IssuedApiToken:
    token: str = strawberry.field(description="The secret: shown this once, stored only as a hash.")
    api_token: ApiToken = strawberry.field(description="The token's record, as apiTokens lists it.")


@strawberry.type(description="An email in the outbox (super-admins only).")
class OutboxEmail(Node):
    model: strawberry.Private[models.EmailOutbox]

    kind: str = strawberry.field(description='Why it is sent, e.g. "approval_requested", "request_approved".')
    to_address: str = strawberry.field(description="The recipient's address.")
    subject: str = strawberry.field(description="The subject line.")
    message_id: str = strawberry.field(description="The Message-ID header, the same on every attempt.")
    attempts: int = strawberry.field(description="How many times sending was tried.")
    created_at: datetime = strawberry.field(
        description="When it was queued, in the transaction of the change that caused it."
    )
    sent_at: datetime | None = strawberry.field(
        description="When the SMTP server accepted it; null until then."
    )
    failed_at: datetime | None = strawberry.field(
        description="When it was given up (after GREENLIGHT_EMAIL_MAX_ATTEMPTS); retryNotification queues it again."
    )
    last_error: str | None = strawberry.field(description="Why the last attempt failed.")
    outcome_unknown_attempts: int = strawberry.field(
        description=(
            "Attempts whose outcome could not be known after the message was handed to the SMTP "
            "server (the server process was killed, or the connection failed before the "
            "server's answer). Each was followed by another attempt with the same messageId: "
            "the recipient may have received this email more than once."
        )
    )

    @classmethod
    def from_model(cls, model: models.EmailOutbox) -> OutboxEmail:
        return cls(
            model=model,
            kind=model.kind,
            to_address=model.to_address,
            subject=model.subject,
            message_id=model.message_id,
            attempts=model.attempts,
            created_at=model.created_at,
            sent_at=model.sent_at,
            failed_at=model.failed_at,
            last_error=model.last_error,
            outcome_unknown_attempts=model.unknown_outcomes,
        )


ActionEnum = described_enum(
    Action,
    "What canI and explainAccess ask about: one action of the policy (policies/policy.csv).",
    {
        "VIEW": "See a scope's pipelines, images, requests and deployments (R1).",
        "REGISTER_IMAGE": "Register images for the application (R3).",
        "REQUEST_APPROVAL": "Ask for an image to be approved (R3).",
        "DEPLOY": "Deploy an image (R3).",
        "APPROVE": "Approve or reject requests (R4).",
        "CLOSE_ANY_REQUEST": "Cancel or expire another user's request (R14, R15).",
        "REPORT_IMAGE_CHECK": "Report a CI check's result on an application's images (as registering them, R3).",
        "REPORT_DEPLOYMENT_STATUS": "Report a rollout's progress (deploy-agent only).",
        "ADMINISTER": "Manage users, tokens, applications, environments, pipelines, policies and bindings (R2).",
    },
)


@strawberry.type(description="A role granted to a group on a scope; its members inherit it (R5).")
class GroupRoleBinding(Node):
    model: strawberry.Private[models.RoleBinding]

    group: Group

    @strawberry.field(description="The group holding the role.")
    async def group(self, info: Info) -> Group:
        return Group.from_model(await info.context.loaders.group.load(self.model.group_id))

    role: Role = strawberry.field(description="The role granted.")
    application: str = strawberry.field(description='An application name, or "*" for all.')
    environment: str = strawberry.field(description='An environment name, or "*" for all.')

    @classmethod
    def from_model(cls, model: models.RoleBinding) -> GroupRoleBinding:
        return cls(
            model=model,
            role=models.Role(model.role),
            application=model.application,
            environment=model.environment,
        )


@strawberry.type(description="A team; its members inherit the roles granted to it.")
class Group(Node):
    model: strawberry.Private[models.Group]

    name: str = strawberry.field(
        description="Unique; shown wherever the group is used (a policy's quorums and exceptions)."
    )

    @strawberry.field(description="Super-admins only.")
    async def members(self, info: Info, first: First = 20, after: After = None) -> Connection[User]:
        loader = info.context.loaders.members(info.context.actor)
        return connection(await loader.load((self.model.id, first, ids.decode_cursor(after))), User)

    @strawberry.field(description="Super-admins only.")
    async def role_bindings(self, info: Info) -> list[GroupRoleBinding]:
        found = await info.context.loaders.group_bindings(info.context.actor).load(self.model.id)
        return [GroupRoleBinding.from_model(b) for b in found]

    @classmethod
    def from_model(cls, model: models.Group) -> Group:
        return cls(
            model=model,
            name=model.name,
        )


@strawberry.type(description="A role that allows the action, and where it comes from.")
class AccessGrant:
    role: Role = strawberry.field(description="The role.")
    application: str = strawberry.field(description='Its application, or "*".')
    environment: str = strawberry.field(description='Its environment, or "*".')
    group: str | None = strawberry.field(description="The group it comes through; null if direct.")


@strawberry.type(description="The answer to canI / explainAccess: whether the action is allowed, and why.")
class Decision:
    allowed: bool = strawberry.field(description="Whether the action is allowed on that scope.")
    reason: str = strawberry.field(
        description="Why, in words: the binding (and group) that grants it, or the roles that would."
    )
    grants: list[AccessGrant] = strawberry.field(description="The bindings that allow it; empty when denied.")
    roles_needed: list[Role] = strawberry.field(description="Roles that allow the action.")
    code: str | None = strawberry.field(
        default=None,
        description="TOKEN_SCOPE when the roles allow it but the API token asking is limited to less; else null.",
    )

    @classmethod
    def of(cls, explanation) -> Decision:
        return cls(
            code=explanation.code,
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

"""What is deployed where: applications, environments, the pipelines between them, and each
pipeline's approval policy and deploy freezes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from greenlight import models
from greenlight.clock import now
from greenlight.schema import ids
from greenlight.schema.arguments import After, First
from greenlight.schema.context import Info
from greenlight.schema.enums import ApprovalPolicyKind, DeploymentStrategy, TriggerType, Weekday
from greenlight.schema.identity import Group, User, load_users, user_of
from greenlight.schema.loaders import Selected, now_or_later
from greenlight.schema.nodes import Connection, Node, connection
from greenlight.workflow import decisions, freezes

if TYPE_CHECKING:
    from greenlight.schema.deployments import Deployment
    from greenlight.schema.images import Image, ImageFilter
    from greenlight.schema.requests import ActionDecision


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

    id: strawberry.ID = strawberry.field(
        description='"ApprovalPolicy:<pipeline number>": each pipeline has one policy, so its id '
        "follows the pipeline's.",
        default=strawberry.ID(""),
    )

    def __post_init__(self) -> None:
        self.id = strawberry.ID(ids.encode("ApprovalPolicy", self.pipeline.id))

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
        return await load_users(info, [r.user_id for r in rows])

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
        return await load_users(info, [r.user_id for r in rows if r.user_id is not None])

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
    def created_by(self, info: Info) -> User:
        return user_of(info, self.model.created_by_id)

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
    def application(self, info: Info) -> Application:
        return now_or_later(
            info.context.loaders.application, self.model.application_id, Application.from_model
        )

    environment: Environment

    @strawberry.field(description="The environment it deploys to.")
    def environment(self, info: Info) -> Environment:
        return now_or_later(
            info.context.loaders.environment, self.model.environment_id, Environment.from_model
        )

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
    async def active_image(
        self, info: Info
    ) -> Annotated[Image, strawberry.lazy("greenlight.schema.images")] | None:
        from greenlight.schema.images import Image

        deployment = await info.context.loaders.active_deployment.load(self.model.id)
        if deployment is None:
            return None
        return Image.from_model(await info.context.loaders.image.load(deployment.image_id))

    @strawberry.field(description="Its newest deployment that is PROGRESSING or HEALTHY (R23); null if none.")
    async def active_deployment(
        self, info: Info
    ) -> Annotated[Deployment, strawberry.lazy("greenlight.schema.deployments")] | None:
        from greenlight.schema.deployments import Deployment

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
    ) -> list[Annotated[Image, strawberry.lazy("greenlight.schema.images")]]:
        from greenlight.schema.images import Image, image_filter

        found = image_filter(filter)
        if found is None:
            rows = await info.context.loaders.deployable_images.load(self.model.id)
        else:
            rows = await info.context.loaders.deployable_images_filtered.load((self.model.id, found))
        await info.context.loaders.prefetch_images(rows, Selected.below(info), info.context.actor)
        return [Image.from_model(i) for i in rows]

    # --- "Why can't I?" (decided by greenlight.workflow.decisions, as the mutations are) ---
    @strawberry.field(
        description="Whether deployImage of this image here (no acknowledgeStale, no override) would succeed now, and why not."
    )
    async def viewer_can_deploy(
        self,
        info: Info,
        image_id: Annotated[strawberry.ID, strawberry.argument(description="The image to deploy.")],
    ) -> Annotated[ActionDecision, strawberry.lazy("greenlight.schema.requests")]:
        from greenlight.schema.requests import ActionDecision

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
    ) -> Annotated[ActionDecision, strawberry.lazy("greenlight.schema.requests")]:
        from greenlight.schema.requests import ActionDecision

        image = ids.decode("Image", image_id, "imageId")
        return ActionDecision.of(
            await decisions.explain_request_approval(info.context.actor, self.model.id, image)
        )

    @strawberry.field(description="Its deployments, newest first (R23).")
    async def deployments(
        self, info: Info, first: First = 20, after: After = None
    ) -> Connection[Annotated[Deployment, strawberry.lazy("greenlight.schema.deployments")]]:
        from greenlight.schema.deployments import Deployment

        found = await info.context.loaders.deployments.load((self.model.id, first, ids.decode_cursor(after)))
        return connection(found, Deployment)

    @classmethod
    def from_model(cls, model: models.Pipeline) -> Pipeline:
        return cls(
            model=model,
            strategy=models.DeploymentStrategy(model.strategy),
            trigger_type=models.TriggerType(model.trigger_type),
        )

"""Approval requests: the approvals on one, its progress per requirement, and what the
caller may do to it now ("why can't I?", decided as the mutations decide)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from greenlight import models
from greenlight.policies import Scope
from greenlight.schema.catalog import Pipeline
from greenlight.schema.context import Info
from greenlight.schema.enums import ApprovalPolicyKind, ApprovalState
from greenlight.schema.identity import Group, User, load_users, user_of
from greenlight.schema.images import Image
from greenlight.schema.loaders import now_or_later
from greenlight.schema.nodes import Node
from greenlight.workflow import checks, decisions, policy, reads
from greenlight.workflow.states import effective_state


@strawberry.type(description="One approver's decision on a request, with when and why.")
class Approval:
    user_id: strawberry.Private[int]
    decided_at: datetime = strawberry.field(description="When the approver decided.")
    comment: str | None = strawberry.field(
        description="The approver's comment; for a rejection, the reason (R13)."
    )

    @strawberry.field(description="Who decided.")
    def user(self, info: Info) -> User:
        return user_of(info, self.user_id)


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
    def user(self, info: Info) -> User | None:
        return None if self.user_id is None else user_of(info, self.user_id)

    @strawberry.field(description="GROUP_QUORUMS: the group whose quorum the line counts.")
    async def group(self, info: Info) -> Group | None:
        if self.group_id is None:
            return None
        found = await info.context.loaders.group.load(self.group_id)
        return None if found is None else Group.from_model(found)


def _approvals(rows: list[models.Approval]) -> list[Approval]:
    return [Approval(user_id=a.user_id, decided_at=a.decided_at, comment=a.comment) for a in rows]


@strawberry.type(
    description="A request to approve one image for one pipeline (R6 to R18); deployable once APPROVED (R12, R20)."
)
class ApprovalRequest(Node):
    model: strawberry.Private[models.ApprovalRequest]

    image: Image

    @strawberry.field(description="The image to approve.")
    def image(self, info: Info) -> Image:
        return now_or_later(info.context.loaders.image, self.model.image_id, Image.from_model)

    pipeline: Pipeline

    @strawberry.field(description="Where it would be deployed.")
    def pipeline(self, info: Info) -> Pipeline:
        return now_or_later(info.context.loaders.pipeline, self.model.pipeline_id, Pipeline.from_model)

    state: ApprovalState = strawberry.field(
        description="Its state now: a passed expiresAt reads EXPIRED at once (R15)."
    )

    requested_by: User

    @strawberry.field(description="Who asked (build-and-deploy, R3); never an approver of it (R10).")
    def requested_by(self, info: Info) -> User:
        return user_of(info, self.model.requested_by_id)

    requested_at: datetime = strawberry.field(description="When it was asked.")
    comment: str | None = strawberry.field(description="The requester's comment.")
    required_approvals: int = strawberry.field(description="Fixed when the request is made (R7).")

    approvals: list[Approval]

    @strawberry.field(description="The approvals so far, each counted once (R11).")
    def approvals(self, info: Info) -> list[Approval]:
        return now_or_later(info.context.loaders.approvals, self.model.id, _approvals)

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
        return await load_users(info, [row.user_id for row in rows])

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
            state=effective_state(model),  # at the moment the answer is made (R15)
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

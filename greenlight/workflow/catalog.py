"""Applications, environments, pipelines with their approval policies, and images."""

from __future__ import annotations

from dataclasses import dataclass

from greenlight.clock import now
from greenlight.errors import BadUserInput, Conflict, Forbidden, TokenScopeRefused, not_found
from greenlight.models import (
    LIVE_STATES,
    Application,
    ApprovalRequest,
    ApprovalState,
    DeploymentStrategy,
    Environment,
    Image,
    Pipeline,
    RoleBinding,
    TriggerType,
)
from greenlight.policies import Action, Actor
from greenlight.policies.authorizer import lock_policy
from greenlight.tx import access_transaction, transaction
from greenlight.workflow import audit, checks, images, lifecycle, policy, reminders, validation
from greenlight.workflow.guards import pipeline_scope, require_admin, sees_application
from greenlight.workflow.policy import PolicyChange
from greenlight.workflow.states import effective_state


async def _create_named(actor: Actor, model: type, kind: str, name: str):
    """R2; names are unique and lowercase ("Things" in RULES.md)."""
    require_admin(actor, f"create {kind}s")
    validation.name("name", name)
    async with transaction():
        existing = await model.get_or_none(name=name)
        if existing is not None:
            raise Conflict(f"{kind} {name} exists", existing=existing)
        created = await model.create(name=name)
        await audit.record(f"create_{kind}", created, actor_id=actor.id, **{kind: name})
    return created


async def create_application(actor: Actor, name: str) -> Application:
    return await _create_named(actor, Application, "application", name)


async def create_environment(actor: Actor, name: str) -> Environment:
    return await _create_named(actor, Environment, "environment", name)


async def _update_named(
    actor: Actor, model: type, kind: str, object_id: int, name: str | None, archived: bool | None
):
    """R2: rename (the name format and uniqueness as at creation) and archive or restore;
    what is left out keeps its value. Role bindings name their scope, so a rename moves
    the bindings on the old name to the new one, a change of roles in force at once (R5)."""
    require_admin(actor, f"change {kind}s")
    if name is not None:
        validation.name("name", name)
    async with access_transaction(actor):
        await lock_policy()  # first, as every change to who may do what takes it: no deadlock
        found = await model.select_for_update().get_or_none(id=object_id)
        if found is None:
            raise not_found(kind)
        before = {"name": found.name, "archived": found.archived_at is not None}
        old_name = found.name
        if name is not None and name != found.name:
            existing = await model.get_or_none(name=name)
            if existing is not None:
                raise Conflict(f"{kind} {name} exists", existing=existing)
            found.name = name
            # the R5 triggers on role_bindings record the change for every holder
            await RoleBinding.filter(**{kind: old_name}).update(**{kind: name})
        if archived is not None and archived != (found.archived_at is not None):
            found.archived_at = now() if archived else None
        await found.save(update_fields=["name", "archived_at"])
        after = {"name": found.name, "archived": found.archived_at is not None}
        await audit.record(
            f"update_{kind}", found, actor_id=actor.id, before=before, after=after, **{kind: found.name}
        )
    return found


async def update_application(
    actor: Actor, application_id: int, name: str | None, archived: bool | None
) -> Application:
    """updateApplication: rename, archive (hidden from lists, no new requests or
    deployments, history kept) or restore."""
    return await _update_named(actor, Application, "application", application_id, name, archived)


async def update_environment(
    actor: Actor, environment_id: int, name: str | None, archived: bool | None
) -> Environment:
    """updateEnvironment: as updateApplication."""
    return await _update_named(actor, Environment, "environment", environment_id, name, archived)


def _policy(pipeline: Pipeline) -> dict:
    return {
        "requiredApprovals": pipeline.required_approvals,
        "ttlHours": pipeline.ttl_hours,
        "approversCanDeploy": pipeline.approvers_can_deploy,
    }


async def create_pipeline(
    actor: Actor,
    application_id: int,
    environment_id: int,
    strategy: DeploymentStrategy,
    trigger_type: TriggerType,
    required_approvals: int,
    ttl_hours: int | None,
    approvers_can_deploy: bool,
) -> Pipeline:
    """R2; the policy ranges of RULES.md 'Things'."""
    require_admin(actor, "create pipelines")
    validation.approval_policy(required_approvals, ttl_hours)
    async with transaction():
        application = await Application.get_or_none(id=application_id)
        if application is None:
            raise not_found("application")
        environment = await Environment.get_or_none(id=environment_id)
        if environment is None:
            raise not_found("environment")
        existing = await Pipeline.get_or_none(application_id=application_id, environment_id=environment_id)
        if existing is not None:
            raise Conflict(
                f"a pipeline for {application.name} on {environment.name} exists",
                existing=existing,
            )
        pipeline = await Pipeline.create(
            application=application,
            environment=environment,
            strategy=strategy,
            trigger_type=trigger_type,
            required_approvals=required_approvals,
            ttl_hours=ttl_hours,
            approvers_can_deploy=approvers_can_deploy,
        )
        await audit.record(
            "create_pipeline",
            pipeline,
            actor_id=actor.id,
            after=_policy(pipeline),
            application=application.name,
            environment=environment.name,
        )
    return pipeline


@dataclass(frozen=True)
class PipelineEdit:
    """What an edit of a pipeline sets; None keeps the current value (`clear_ttl_hours`
    sets ttlHours to none: no expiry)."""

    strategy: DeploymentStrategy | None = None
    trigger_type: TriggerType | None = None
    required_approvals: int | None = None
    ttl_hours: int | None = None
    clear_ttl_hours: bool = False
    approvers_can_deploy: bool | None = None
    # Reminders and escalation (greenlight.workflow.reminders); `clear_*` removes one.
    remind_after_hours: int | None = None
    clear_remind_after_hours: bool = False
    escalate_after_hours: int | None = None
    clear_escalate_after_hours: bool = False
    escalate_to_group_id: int | None = None
    clear_escalate_to_group: bool = False


async def update_approval_policy(
    actor: Actor,
    pipeline_id: int,
    required_approvals: int,
    ttl_hours: int | None,
    approvers_can_deploy: bool,
    change: PolicyChange | None = None,
) -> Pipeline:
    """The contract's whole policy: requiredApprovals, ttlHours (None: no expiry) and
    approversCanDeploy are set as given; `change` as in edit_pipeline."""
    whole = PipelineEdit(
        required_approvals=required_approvals,
        ttl_hours=ttl_hours,
        clear_ttl_hours=ttl_hours is None,
        approvers_can_deploy=approvers_can_deploy,
    )
    return await edit_pipeline(actor, pipeline_id, whole, change, action="update_approval_policy")


async def update_pipeline(
    actor: Actor, pipeline_id: int, edit: PipelineEdit, change: PolicyChange | None = None
) -> Pipeline:
    """updatePipeline: only what the edit names changes."""
    return await edit_pipeline(actor, pipeline_id, edit, change, action="update_pipeline")


async def edit_pipeline(
    actor: Actor,
    pipeline_id: int,
    edit: PipelineEdit,
    change: PolicyChange | None,
    *,
    action: str,
) -> Pipeline:
    """R2, R7 (requests keep their snapshot), R18 (0 cancels live requests); the policy's
    kind, its listed users or group quorums, exceptions, stale-request handling
    (policy.apply_change). The one path of every change to a pipeline's settings."""
    require_admin(actor, "change pipelines and their approval policies")
    if edit.required_approvals is not None:
        validation.in_range(
            "requiredApprovals", edit.required_approvals, 0, validation.MAX_REQUIRED_APPROVALS
        )
    if edit.ttl_hours is not None:
        if edit.clear_ttl_hours:
            raise BadUserInput("ttlHours: give a value or clearTtlHours, not both", field="ttlHours")
        validation.in_range("ttlHours", edit.ttl_hours, 1, validation.MAX_TTL_HOURS)
    async with transaction():
        pipeline = await Pipeline.select_for_update().get_or_none(id=pipeline_id)
        if pipeline is None:
            raise not_found("pipeline")
        await pipeline.fetch_related("application", "environment")
        scope = pipeline_scope(pipeline)
        with_settings = action == "update_pipeline"
        before = await _described(pipeline, with_settings)
        if edit.strategy is not None:
            pipeline.strategy = edit.strategy
        if edit.trigger_type is not None:
            pipeline.trigger_type = edit.trigger_type
        if edit.required_approvals is not None:
            pipeline.required_approvals = edit.required_approvals
        if edit.clear_ttl_hours:
            pipeline.ttl_hours = None
        elif edit.ttl_hours is not None:
            pipeline.ttl_hours = edit.ttl_hours
        if edit.approvers_can_deploy is not None:
            pipeline.approvers_can_deploy = edit.approvers_can_deploy
        change = change or PolicyChange()
        await checks.apply_settings(
            pipeline, change.required_checks, change.requires_healthy_on_id, change.clear_requires_healthy_on
        )
        await reminders.apply_settings(pipeline, edit)
        await policy.apply_change(actor, pipeline, change)
        await pipeline.save(
            update_fields=[
                "strategy",
                "trigger_type",
                "required_approvals",
                "ttl_hours",
                "approvers_can_deploy",
                "required_checks",
                "requires_healthy_on_id",
                *reminders.SETTINGS,
            ]
        )
        await audit.record(
            action,
            pipeline,
            actor_id=actor.id,
            before=before,
            after=await _described(pipeline, with_settings),
            scope=scope,
        )
        if pipeline.required_approvals == 0:
            live = await ApprovalRequest.select_for_update().filter(
                pipeline_id=pipeline.id, state__in=list(LIVE_STATES)
            )
            for request in live:
                # One that has already run out reads EXPIRED; record it as such.
                new_state = (
                    ApprovalState.EXPIRED
                    if effective_state(request) == ApprovalState.EXPIRED
                    else ApprovalState.CANCELLED
                )
                await lifecycle.close(request, new_state, actor_id=actor.id, scope=scope)
    return pipeline


async def _described(pipeline: Pipeline, with_settings: bool) -> dict:
    """The policy for the audit log; with the strategy and trigger for updatePipeline."""
    described = await policy.describe(pipeline)
    if with_settings:
        described["strategy"] = DeploymentStrategy(pipeline.strategy).value
        described["triggerType"] = TriggerType(pipeline.trigger_type).value
        described.update(reminders.describe(pipeline))
    return described


async def register_image(
    actor: Actor,
    application_name: str,
    repository: str,
    tag: str,
    digest: str,
    *,
    commit: str | None = None,
    branch: str | None = None,
    build_url: str | None = None,
    labels: list[tuple[str, str]] | None = None,
) -> Image:
    """R3: build-and-deploy on any environment of the application registers its images;
    with what CI says it built from (greenlight.workflow.images: commit, branch, build URL,
    labels)."""
    validation.name("application", application_name)
    validation.repository(repository)
    validation.tag(tag)
    validation.digest(digest)
    metadata = images.metadata(commit, branch, build_url, labels)
    application = await Application.get_or_none(name=application_name)
    if application is None or not sees_application(actor, application_name):
        raise not_found("application")
    if not any(s.covers_application(application_name) for s in actor.scopes(Action.REGISTER_IMAGE)):
        owner = actor.authorizer.scopes(actor.id, Action.REGISTER_IMAGE)
        if any(s.covers_application(application_name) for s in owner):
            # the owner may: the token's limits refuse it
            raise TokenScopeRefused(
                actor.token.refusal(Action.REGISTER_IMAGE, application_name, "*")
                or f"this API token may not register images for {application_name}"
            )
        raise Forbidden(f"you may not register images for {application_name}")
    async with transaction():
        existing = await Image.get_or_none(application_id=application.id, digest=digest)
        if existing is not None:
            raise Conflict(
                f"digest {digest} is registered for {application_name} already",
                existing=existing,
            )
        image = await Image.create(
            application=application,
            repository=repository,
            tag=tag,
            digest=digest,
            built_by_id=actor.id,
            commit=metadata.commit,
            branch=metadata.branch,
            build_url=metadata.build_url,
        )
        await images.write_labels(image, metadata)
        await audit.record(
            "register_image",
            image,
            actor_id=actor.id,
            after={"repository": repository, "tag": tag, "digest": digest, **metadata.described()},
            application=application_name,
        )
    return image

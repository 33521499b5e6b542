"""Loading objects as the actor may see them, and requiring permissions (R1 to R4)."""

from __future__ import annotations

from greenlight.errors import BadUserInput, Forbidden, TokenScopeRefused, not_found
from greenlight.models import Application, ApprovalRequest, Deployment, Image, Pipeline
from greenlight.policies import Action, Actor, Scope
from greenlight.scopes import EVERYTHING


def pipeline_scope(pipeline: Pipeline) -> Scope:
    return Scope(pipeline.application.name, pipeline.environment.name)


def sees_application(actor: Actor, application_name: str) -> bool:
    """An application is visible through any scope on it, whatever the environment."""
    return any(s.covers_application(application_name) for s in actor.scopes(Action.VIEW))


def sees_environment(actor: Actor, environment_name: str) -> bool:
    """An environment is visible through any scope on it, whatever the application."""
    return any(s.covers_environment(environment_name) for s in actor.scopes(Action.VIEW))


def token_refusal(actor: Actor, action: Action, scope: Scope) -> TokenScopeRefused | None:
    """TOKEN_SCOPE when the token's owner may do it now but the token's limits refuse it."""
    if not actor.token.limited or not actor.authorizer.may(actor.id, action, scope):
        return None
    reason = actor.token.refusal(action, scope.application, scope.environment)
    return None if reason is None else TokenScopeRefused(reason)


def require(actor: Actor, action: Action, scope: Scope, what: str) -> None:
    if not actor.may(action, scope):
        raise token_refusal(actor, action, scope) or Forbidden(
            f"you may not {what} on {scope.application}/{scope.environment}"
        )


def require_admin(actor: Actor, what: str) -> None:
    if not actor.is_super_admin:
        raise token_refusal(actor, Action.ADMINISTER, EVERYTHING) or Forbidden(
            f"only super-admins may {what}"
        )


async def find_pipeline(pipeline_id: int, *, lock: bool = False) -> Pipeline | None:
    """The pipeline with its application and environment, in one statement; `lock` locks
    the pipeline's row (not theirs). Whoever asks: see `visible_pipeline`."""
    query = Pipeline.filter(id=pipeline_id).select_related("application", "environment")
    if lock:
        query = query.select_for_update(of=(Pipeline._meta.db_table,))
    return await query.first()


def sees_pipeline(actor: Actor, pipeline: Pipeline | None) -> bool:
    """R1: any role on the pipeline's scope."""
    return pipeline is not None and actor.may(Action.VIEW, pipeline_scope(pipeline))


async def visible_pipeline(actor: Actor, pipeline_id: int, *, lock: bool = False) -> Pipeline:
    pipeline = await find_pipeline(pipeline_id, lock=lock)
    if not sees_pipeline(actor, pipeline):
        raise not_found("pipeline")
    return pipeline


async def visible_application(actor: Actor, application_id: int) -> Application:
    application = await Application.get_or_none(id=application_id)
    if application is None or not sees_application(actor, application.name):
        raise not_found("application")
    return application


async def find_image(image_id: int) -> Image | None:
    """The image with its application, whoever asks: see `visible_image`."""
    return await Image.filter(id=image_id).select_related("application").first()


def sees_image(actor: Actor, image: Image | None) -> bool:
    return image is not None and sees_application(actor, image.application.name)


async def visible_image(actor: Actor, image_id: int) -> Image:
    image = await find_image(image_id)
    if not sees_image(actor, image):
        raise not_found("image")
    return image


async def _visible_in_pipeline(actor: Actor, model, object_id: int, kind: str):
    """A row of a pipeline's (a request, a deployment), with its pipeline, if the actor may
    see the pipeline; NOT_FOUND otherwise, as for one that does not exist (R1)."""
    found = (
        await model.filter(id=object_id)
        .select_related("pipeline__application", "pipeline__environment")
        .first()
    )
    if found is None or not actor.may(Action.VIEW, pipeline_scope(found.pipeline)):
        raise not_found(kind)
    return found


async def visible_request(actor: Actor, request_id: int) -> ApprovalRequest:
    return await _visible_in_pipeline(actor, ApprovalRequest, request_id, "approval request")


async def visible_deployment(actor: Actor, deployment_id: int) -> Deployment:
    return await _visible_in_pipeline(actor, Deployment, deployment_id, "deployment")


def other_application(image: Image, pipeline: Pipeline) -> BadUserInput | None:
    """R6: an image is requested and deployed only on its own application's pipelines."""
    if image.application_id == pipeline.application_id:
        return None
    return BadUserInput(
        f"image belongs to application {image.application.name}, "
        f"not to the pipeline's application {pipeline.application.name}",
        field="imageId",
    )


def image_of_pipeline(image: Image, pipeline: Pipeline) -> None:
    if (error := other_application(image, pipeline)) is not None:
        raise error

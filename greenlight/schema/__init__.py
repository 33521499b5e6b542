"""The GraphQL schema: the contract's Query, Mutation and Subscription, wired to resolvers."""

from __future__ import annotations

import contextlib

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)

from greenlight.limits.rates import TokenBucket
from greenlight.observability.requests import OperationObserver
from greenlight.resolvers import mutations, queries
from greenlight.schema.context import Context
from greenlight.schema.errors import (
    Authentication,
    ErrorCodes,
    MutationRateLimit,
    SayNothingBeforeAuthentication,
    to_contract,
)
from greenlight.schema.subscriptions import Subscription


@strawberry.type
class Query:
    me = strawberry.field(resolver=queries.me)
    deploy_freezes = strawberry.field(
        resolver=queries.deploy_freezes, description="The freezes on what the caller can see."
    )
    applications = strawberry.field(
        resolver=queries.applications, description="Only those the caller can see."
    )
    environments = strawberry.field(resolver=queries.environments)
    pipeline = strawberry.field(resolver=queries.pipeline)
    pipeline_for = strawberry.field(resolver=queries.pipeline_for)
    images = strawberry.field(resolver=queries.images, description="Newest first.")
    approval_requests = strawberry.field(resolver=queries.approval_requests)
    approval_request = strawberry.field(resolver=queries.approval_request)
    eligible_approvers = strawberry.field(
        resolver=queries.eligible_approvers,
        description="Who could approve the caller's request (R9); builder and caller excluded.",
    )
    deployment = strawberry.field(resolver=queries.deployment)
    users = strawberry.field(resolver=queries.users, description="Super-admins only.")
    can_i = strawberry.field(
        resolver=queries.can_i, description="Whether the caller may do an action on a scope, and why."
    )
    explain_access = strawberry.field(
        resolver=queries.explain_access, description="canI for any user; super-admins only."
    )
    api_tokens = strawberry.field(
        resolver=queries.api_tokens,
        description="API tokens (never their secrets): your own; super-admins anyone's.",
    )
    groups = strawberry.field(resolver=queries.groups, description="Super-admins only.")
    group = strawberry.field(resolver=queries.group, description="Super-admins only.")
    user_connection = strawberry.field(
        resolver=queries.user_connection, description="Users, paginated; super-admins only."
    )
    role_binding_connection = strawberry.field(
        resolver=queries.role_binding_connection,
        description="Users' role bindings, paginated; super-admins only.",
    )
    notifications_enabled = strawberry.field(
        resolver=queries.notifications_enabled,
        description="Whether email is configured: offer the approver picker only then.",
    )
    notification_outbox = strawberry.field(
        resolver=queries.notification_outbox,
        description="Emails, newest first (failedOnly: those given up); super-admins only.",
    )
    audit_events = strawberry.field(
        resolver=queries.audit_events, description="The audit log, newest first; super-admins only."
    )


@strawberry.type
class Mutation:
    register_image = strawberry.mutation(resolver=mutations.register_image)
    request_approval = strawberry.mutation(resolver=mutations.request_approval)
    approve_request = strawberry.mutation(resolver=mutations.approve_request)
    reject_request = strawberry.mutation(resolver=mutations.reject_request)
    cancel_approval_request = strawberry.mutation(resolver=mutations.cancel_approval_request)
    expire_approval = strawberry.mutation(resolver=mutations.expire_approval)
    deploy_image = strawberry.mutation(resolver=mutations.deploy_image)
    report_deployment_status = strawberry.mutation(
        resolver=mutations.report_deployment_status,
        description="An external CD system (deploy-agent role) reports a rollout's progress or end.",
    )
    retry_notification = strawberry.mutation(
        resolver=mutations.retry_notification,
        description="Queue a failed email again; super-admins only.",
    )
    create_user = strawberry.mutation(resolver=mutations.create_user)
    issue_api_token = strawberry.mutation(resolver=mutations.issue_api_token)
    revoke_api_token = strawberry.mutation(resolver=mutations.revoke_api_token)
    create_application = strawberry.mutation(resolver=mutations.create_application)
    create_environment = strawberry.mutation(resolver=mutations.create_environment)
    create_pipeline = strawberry.mutation(resolver=mutations.create_pipeline)
    update_approval_policy = strawberry.mutation(resolver=mutations.update_approval_policy)
    create_deploy_freeze = strawberry.mutation(
        resolver=mutations.create_deploy_freeze,
        description="Refuse deploys in a window (DEPLOY_FROZEN); super-admins only.",
    )
    delete_deploy_freeze = strawberry.mutation(resolver=mutations.delete_deploy_freeze)
    grant_role = strawberry.mutation(resolver=mutations.grant_role)
    revoke_role = strawberry.mutation(resolver=mutations.revoke_role)
    create_group = strawberry.mutation(resolver=mutations.create_group)
    add_group_member = strawberry.mutation(resolver=mutations.add_group_member)
    remove_group_member = strawberry.mutation(resolver=mutations.remove_group_member)
    grant_group_role = strawberry.mutation(
        resolver=mutations.grant_group_role,
        description="grantRole for a group: its members inherit the role.",
    )
    revoke_group_role = strawberry.mutation(resolver=mutations.revoke_group_role)
    deactivate_user = strawberry.mutation(
        resolver=mutations.deactivate_user,
        description="Every token and JWT of the user fails at once; roles are kept.",
    )
    reactivate_user = strawberry.mutation(resolver=mutations.reactivate_user)


class GreenlightSchema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        """Logging happens in ErrorCodes, only for unexpected errors."""

    async def stream(self, *args, **kwargs):
        """Operations sent on a WebSocket (queries, mutations, subscriptions). Each is
        authorised at its start as an HTTP request is, never with the identity the socket
        connected with (greenlight.schema.context); streamed results get the contract's
        error codes too."""
        context = kwargs.get("context_value")
        if isinstance(context, Context) and context.is_websocket:
            context = kwargs["context_value"] = await context.for_operation()
        source = await super().stream(*args, **kwargs)
        request_id = getattr(context, "request_id", "-")

        async def coded():
            async with contextlib.aclosing(source):
                async for result in source:
                    if getattr(result, "errors", None):
                        result.errors = [to_contract(e, request_id) for e in result.errors]
                    yield result

        return coded()


def build_schema(settings=None) -> GreenlightSchema:
    """The schema with the limits of `settings` (defaults when None): query depth, tokens
    and aliases (QUERY_TOO_COMPLEX), mutation rate, and introspection on or off."""
    from greenlight.config import Settings

    settings = settings or Settings()
    extensions = [
        OperationObserver,
        Authentication,
        MutationRateLimit(TokenBucket(settings.mutations_per_minute)),
        ErrorCodes,
        MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        ParserCache(maxsize=512),
        QueryDepthLimiter(max_depth=settings.max_query_depth),
        MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        ValidationCache(maxsize=512),
        SayNothingBeforeAuthentication,  # after ValidationCache: its refusal wins
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection())
    return GreenlightSchema(query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions)


schema = build_schema()

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
from greenlight.resolvers import chat, mutations, queries
from greenlight.resolvers.subscriptions import Subscription
from greenlight.schema.context import Context
from greenlight.schema.errors import (
    Authentication,
    ErrorCodes,
    MutationRateLimit,
    OperationTimeLimit,
    QueryCost,
    SayNothingBeforeAuthentication,
    to_contract,
)


@strawberry.type(
    description="Reads. Every one needs valid credentials (UNAUTHENTICATED) and shows only what the caller may see (R1)."
)
class Query:
    node = strawberry.field(
        resolver=queries.node,
        description="Any object by its id (Relay), as its own query would give it: null with "
        "NOT_FOUND when it does not exist or the caller cannot see it (R1); a malformed id is "
        "BAD_USER_INPUT.",
    )
    nodes = strawberry.field(
        resolver=queries.nodes,
        description="node(id) for several ids, in their order: each missing, invisible or "
        "malformed one is null with its own error.",
    )
    me = strawberry.field(resolver=queries.me, description="The caller.")
    deploy_freezes = strawberry.field(
        resolver=queries.deploy_freezes, description="The freezes on what the caller can see."
    )
    applications = strawberry.field(
        resolver=queries.applications,
        description="Only those the caller can see; archived ones only when asked.",
    )
    environments = strawberry.field(
        resolver=queries.environments,
        description="Only those the caller can see (R1), by name; archived ones only when asked.",
    )
    pipeline = strawberry.field(
        resolver=queries.pipeline,
        description="A pipeline by id; null with NOT_FOUND when it does not exist or the caller cannot see it (R1).",
    )
    pipeline_for = strawberry.field(
        resolver=queries.pipeline_for,
        description="The pipeline of an application on an environment, by names; null with NOT_FOUND as pipeline(id) (R1).",
    )
    images = strawberry.field(resolver=queries.images, description="Newest first.")
    approval_requests = strawberry.field(
        resolver=queries.approval_requests,
        description="Approval requests the caller can see (R1), newest first.",
    )
    approval_request = strawberry.field(
        resolver=queries.approval_request,
        description="A request by id; null with NOT_FOUND when it does not exist or the caller cannot see it (R1).",
    )
    eligible_approvers = strawberry.field(
        resolver=queries.eligible_approvers,
        description="Who could approve the caller's request (R9); builder and caller excluded.",
    )
    deployment = strawberry.field(
        resolver=queries.deployment,
        description="A deployment by id; null with NOT_FOUND when it does not exist or the caller cannot see it (R1).",
    )
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
    my_api_tokens = strawberry.field(
        resolver=queries.my_api_tokens, description="The caller's own API tokens (never their secrets)."
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
    chat_channels = strawberry.field(
        resolver=chat.chat_channels,
        description="Where approval events are told, oldest first; super-admins only (R2).",
    )
    chat_deliveries = strawberry.field(
        resolver=chat.chat_deliveries,
        description="Chat notices, newest first (failedOnly: those given up); super-admins only (R2).",
    )


@strawberry.type(description="Changes. Each runs in one transaction: a failed mutation changes nothing.")
class Mutation:
    register_image = strawberry.mutation(
        resolver=mutations.register_image,
        description="CI registers an image it built (R3: build-and-deploy on the application); builtBy is the caller.",
    )
    request_approval = strawberry.mutation(
        resolver=mutations.request_approval,
        description="Ask for an image to be approved for a pipeline (R3, R6 to R8); a second live request is CONFLICT with extensions.existingId.",
    )
    approve_request = strawberry.mutation(
        resolver=mutations.approve_request,
        description="Approve a PENDING request (R4, R10, R11); it becomes APPROVED when its approvals reach requiredApprovals (R12).",
    )
    reject_request = strawberry.mutation(
        resolver=mutations.reject_request,
        description="Reject a PENDING request, with a reason (R4, R10, R13).",
    )
    cancel_approval_request = strawberry.mutation(
        resolver=mutations.cancel_approval_request,
        description="Withdraw a PENDING or APPROVED request: the requester or a super-admin (R14).",
    )
    expire_approval = strawberry.mutation(
        resolver=mutations.expire_approval,
        description="Let an APPROVED request expire: the requester or a super-admin (R15).",
    )
    withdraw_approval = strawberry.mutation(
        resolver=mutations.withdraw_approval,
        description="Take back your own approval while the request is PENDING (R11, R17); it no longer counts.",
    )
    deploy_image = strawberry.mutation(
        resolver=mutations.deploy_image,
        description="Deploy an image on a pipeline (R3, R19 to R22); consumes its APPROVED request in the same transaction (R20).",
    )
    report_image_check = strawberry.mutation(
        resolver=mutations.report_image_check,
        description="CI reports a check's result on an image (whoever may register the application's images, or a super-admin); reporting a name again updates it, audited.",
    )
    report_deployment_status = strawberry.mutation(
        resolver=mutations.report_deployment_status,
        description="An external CD system (deploy-agent role) reports a rollout's progress or end.",
    )
    retry_notification = strawberry.mutation(
        resolver=mutations.retry_notification,
        description="Queue a failed email again; super-admins only.",
    )
    update_my_notification_settings = strawberry.mutation(
        resolver=mutations.update_my_notification_settings,
        description="The caller's own notice settings (emailNotices); anyone, for themself only.",
    )
    create_user = strawberry.mutation(
        resolver=mutations.create_user, description="A new user, with no roles; super-admins only (R2)."
    )
    issue_api_token = strawberry.mutation(
        resolver=mutations.issue_api_token,
        description="A new API token, its secret shown once: for yourself (anyone), or for another user "
        "(super-admins only, R2); it may be limited to some actions, applications and environments.",
    )
    revoke_api_token = strawberry.mutation(
        resolver=mutations.revoke_api_token,
        description="Revoke a token at once: one's own, or anyone's for super-admins.",
    )
    create_application = strawberry.mutation(
        resolver=mutations.create_application,
        description="A new application; super-admins only (R2). A taken name is CONFLICT.",
    )
    create_environment = strawberry.mutation(
        resolver=mutations.create_environment,
        description="A new environment; super-admins only (R2). A taken name is CONFLICT.",
    )
    update_application = strawberry.mutation(
        resolver=mutations.update_application,
        description="Rename or archive (or restore) an application; super-admins only (R2). A taken name is CONFLICT.",
    )
    update_environment = strawberry.mutation(
        resolver=mutations.update_environment,
        description="Rename or archive (or restore) an environment; super-admins only (R2). A taken name is CONFLICT.",
    )
    create_pipeline = strawberry.mutation(
        resolver=mutations.create_pipeline,
        description="A new pipeline for an application and environment; super-admins only (R2).",
    )
    update_approval_policy = strawberry.mutation(
        resolver=mutations.update_approval_policy,
        description=(
            "Sets the whole approval policy (super-admins, R2): a left-out ttlHours becomes null "
            "(no expiry) and a left-out approversCanDeploy false; fields after approversCanDeploy "
            "keep their value when left out. To change one setting alone, use updatePipeline."
        ),
    )
    update_pipeline = strawberry.mutation(
        resolver=mutations.update_pipeline,
        description=(
            "Changes only the settings given, each left out keeps its value (super-admins, R2); "
            "requiredApprovals 0 cancels live requests (R18), live requests keep their snapshot (R7)."
        ),
    )
    create_deploy_freeze = strawberry.mutation(
        resolver=mutations.create_deploy_freeze,
        description="Refuse deploys in a window (DEPLOY_FROZEN); super-admins only.",
    )
    delete_deploy_freeze = strawberry.mutation(
        resolver=mutations.delete_deploy_freeze, description="Remove a freeze; super-admins only."
    )
    create_chat_channel = strawberry.mutation(
        resolver=chat.create_chat_channel,
        description="Tell a pipeline's (or an environment's) approval events to Slack, Teams or a "
        "signed webhook; super-admins only (R2). A WEBHOOK channel's signingSecret is in this answer only.",
    )
    delete_chat_channel = strawberry.mutation(
        resolver=chat.delete_chat_channel,
        description="Stop telling a channel; what it was not sent yet is marked failed. Super-admins only (R2).",
    )
    retry_chat_delivery = strawberry.mutation(
        resolver=chat.retry_chat_delivery,
        description="Queue a failed chat notice again, the same message; super-admins only (R2).",
    )
    grant_role = strawberry.mutation(
        resolver=mutations.grant_role,
        description="Grant a user a role on a scope; super-admins only (R2). Takes effect on the next request, on every process (R5).",
    )
    revoke_role = strawberry.mutation(
        resolver=mutations.revoke_role,
        description="Remove a user's role binding; super-admins only (R2, R5).",
    )
    create_group = strawberry.mutation(
        resolver=mutations.create_group, description="A new group (team); super-admins only (R2)."
    )
    delete_group = strawberry.mutation(
        resolver=mutations.delete_group,
        description="Delete a group with its memberships and role bindings; its members lose those roles at once (R5). "
        "Super-admins only; a group named by a pipeline's approval policy is INVALID_STATE.",
    )
    add_group_member = strawberry.mutation(
        resolver=mutations.add_group_member,
        description="Add a user to a group: they inherit its roles (R5); super-admins only.",
    )
    remove_group_member = strawberry.mutation(
        resolver=mutations.remove_group_member, description="Remove a user from a group; super-admins only."
    )
    grant_group_role = strawberry.mutation(
        resolver=mutations.grant_group_role,
        description="grantRole for a group: its members inherit the role.",
    )
    revoke_group_role = strawberry.mutation(
        resolver=mutations.revoke_group_role,
        description="Remove a group's role binding; super-admins only (R2, R5).",
    )
    deactivate_user = strawberry.mutation(
        resolver=mutations.deactivate_user,
        description="Every token and JWT of the user fails at once; roles are kept.",
    )
    reactivate_user = strawberry.mutation(
        resolver=mutations.reactivate_user,
        description="Restore a deactivated user's access, with the roles kept; super-admins only.",
    )


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
    """The schema with the limits of `settings` (defaults when None): query depth, tokens,
    aliases and cost (QUERY_TOO_COMPLEX), mutation rate, time per operation
    (OPERATION_TIMEOUT), and introspection on or off."""
    from greenlight.config import Settings

    settings = settings or Settings()
    extensions = [
        OperationObserver,
        Authentication,
        QueryCost(settings.max_query_cost),
        MutationRateLimit(TokenBucket(settings.mutations_per_minute)),
        OperationTimeLimit(settings.operation_timeout_seconds),
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

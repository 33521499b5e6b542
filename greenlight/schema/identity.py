"""Who: users, their role bindings, groups, API tokens, and canI / explainAccess's answers."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from greenlight import models
from greenlight.policies import Action
from greenlight.schema import ids
from greenlight.schema.arguments import After, First
from greenlight.schema.context import Info
from greenlight.schema.enums import Role, described_enum
from greenlight.schema.loaders import now_or_later
from greenlight.schema.nodes import Connection, Node, connection
from greenlight.workflow import notices

if TYPE_CHECKING:
    from greenlight.schema.catalog import Application, Environment


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


def user_of(info: Info, user_id: int) -> User:
    """A user by id: at once when the request has read them already (a list's prefetch),
    else through the loader (the caller's field is then answered when it has)."""
    return now_or_later(info.context.loaders.user, user_id, User.from_model)


async def load_users(info: Info, user_ids: list[int]) -> list[User]:
    """Users by id, in their order, through the request's loader (one statement)."""
    return [User.from_model(u) for u in await info.context.loaders.user.load_many(user_ids)]


class _BindingOfModel:
    """`from_model` of the two kinds of role binding (a user's, a group's): the same row,
    the same role, application and environment; their holder is the field that differs."""

    @classmethod
    def from_model(cls, model: models.RoleBinding):
        return cls(
            model=model,
            role=models.Role(model.role),
            application=model.application,
            environment=model.environment,
        )


@strawberry.type(
    description="A role granted to a user on a scope (R1 to R5): an application name or *, an environment name or *."
)
class RoleBinding(_BindingOfModel, Node):
    model: strawberry.Private[models.RoleBinding]

    user: User

    @strawberry.field(description="Who holds the role.")
    def user(self, info: Info) -> User:
        return user_of(info, self.model.user_id)

    role: Role = strawberry.field(description="The role granted.")
    application: str = strawberry.field(description='An application name, or "*" for all.')
    environment: str = strawberry.field(description='An environment name, or "*" for all.')


@strawberry.type(description="An API token (never its secret): send it as `Authorization: Bearer <token>`.")
class ApiToken(Node):
    model: strawberry.Private[models.ApiToken]

    name: str = strawberry.field(description="What the token is for, e.g. the CI system using it.")

    user: User

    @strawberry.field(description="Whose token it is: it acts as this user.")
    def user(self, info: Info) -> User:
        return user_of(info, self.model.user_id)

    expires_at: datetime | None = strawberry.field(description="When it stops working; null: never.")
    created_at: datetime = strawberry.field(description="When it was issued.")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked; null while usable.")
    last_used_at: datetime | None = strawberry.field(description="When it was last used to authenticate.")
    actions: list[str] | None = strawberry.field(
        description="The only actions it may take (policy.csv names; view is always within); null: no limit."
    )

    @strawberry.field(description="The only applications it may act on; null: no limit.")
    async def applications(
        self,
    ) -> list[Annotated[Application, strawberry.lazy("greenlight.schema.catalog")]] | None:
        from greenlight.schema.catalog import Application

        return await _limited(models.Application, Application, self.model.application_ids)

    @strawberry.field(description="The only environments it may act on; null: no limit.")
    async def environments(
        self,
    ) -> list[Annotated[Environment, strawberry.lazy("greenlight.schema.catalog")]] | None:
        from greenlight.schema.catalog import Environment

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
class GroupRoleBinding(_BindingOfModel, Node):
    model: strawberry.Private[models.RoleBinding]

    group: Group

    @strawberry.field(description="The group holding the role.")
    async def group(self, info: Info) -> Group:
        return Group.from_model(await info.context.loaders.group.load(self.model.group_id))

    role: Role = strawberry.field(description="The role granted.")
    application: str = strawberry.field(description='An application name, or "*" for all.')
    environment: str = strawberry.field(description='An environment name, or "*" for all.')


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

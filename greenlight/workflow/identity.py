"""Users, API tokens, role bindings and the first super-admin (R2, R5)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from tortoise.exceptions import IntegrityError

from greenlight import sso
from greenlight.clock import now
from greenlight.errors import (
    BadUserInput,
    Conflict,
    GreenlightError,
    InvalidState,
    TokenScopeRefused,
    Unauthenticated,
    not_found,
)
from greenlight.models import (
    ApiToken,
    Application,
    Environment,
    Group,
    GroupMember,
    Role,
    RoleBinding,
    User,
    queries,
)
from greenlight.policies import Actor, Authorizer
from greenlight.policies.authorizer import lock_policy
from greenlight.policies.token_scope import ACTION_NAMES, UNLIMITED, TokenScope
from greenlight.scopes import EVERYTHING, Scope
from greenlight.tx import access_transaction, transaction
from greenlight.workflow import audit, validation
from greenlight.workflow.guards import require_admin, sees_application, sees_environment
from greenlight.workflow.reads import page

TOKEN_PREFIX = "glt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def authorize(authorization: str | None, authorizer: Authorizer) -> Actor:
    """The actor behind credentials at this moment: how every operation is let in, an HTTP
    request or each operation on an open WebSocket. The credentials must still be valid
    (token neither revoked nor expired, user active, JWT unexpired), and the roles are as
    of now: the authorizer applies every change committed by any process first (R5), after
    authenticating, which may itself change group memberships (a JWT's groups claim)."""
    user, api_token = await credentials(authorization)
    scope = await token_scope(api_token)
    await authorizer.refresh()
    return Actor(user=user, authorizer=authorizer, token=scope)


async def token_scope(api_token: ApiToken | None) -> TokenScope:
    """The token's limits by name, as decisions compare them (its ids kept, so a renamed
    application stays within them); UNLIMITED for a JWT or a token without limits."""
    if api_token is None:
        return UNLIMITED
    applications = environments = None
    if api_token.application_ids is not None:
        found = await Application.filter(id__in=api_token.application_ids).values_list("name", flat=True)
        applications = frozenset(found)
    if api_token.environment_ids is not None:
        found = await Environment.filter(id__in=api_token.environment_ids).values_list("name", flat=True)
        environments = frozenset(found)
    actions = frozenset(api_token.actions) if api_token.actions is not None else None
    return TokenScope(actions, applications, environments, api_token.expires_at)


async def authenticate(authorization: str | None) -> User:
    """The user behind an `Authorization: Bearer <token>` header (an API token, or a JWT
    from the identity provider when single sign-on is configured), or UNAUTHENTICATED."""
    user, _ = await credentials(authorization)
    return user


async def credentials(authorization: str | None) -> tuple[User, ApiToken | None]:
    """The user behind the header, and the API token it carried (None for a JWT)."""
    if not authorization:
        raise Unauthenticated("missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("malformed Authorization header: expected 'Bearer <token>'")
    if sso.current().enabled and sso.looks_like_jwt(token):
        return await _user_of_jwt(token), None
    api_token = await queries.token_with_user(hash_token(token))
    if api_token is None:
        raise Unauthenticated("invalid token")
    if api_token.revoked_at is not None:
        raise Unauthenticated("token revoked")
    if api_token.expires_at is not None and api_token.expires_at <= now():
        raise Unauthenticated("token expired")
    if not api_token.user.is_active:
        raise Unauthenticated("user deactivated")
    at = now()
    if api_token.last_used_at is None or at - api_token.last_used_at > LAST_USED_PRECISION:
        await ApiToken.filter(id=api_token.id).update(last_used_at=at)
    return api_token.user, api_token


LAST_USED_PRECISION = timedelta(minutes=1)


async def _user_of_jwt(token: str) -> User:
    config = sso.current()
    claims = await sso.verify(token)
    raw_email = claims.get(config.email_claim)
    if not isinstance(raw_email, str):
        raise Unauthenticated(f"token has no {config.email_claim!r} claim")
    # Only a JSON true vouches for the address: "false", 0 or "no" are no verification.
    if "email_verified" in claims and claims["email_verified"] is not True:
        raise Unauthenticated("the identity provider has not verified this email address")
    try:
        email = validation.email(raw_email)
    except BadUserInput:
        raise Unauthenticated(f"the {config.email_claim!r} claim is not an email address") from None
    user = await User.get_or_none(email=email)
    if user is None:
        if not config.auto_provision:
            raise Unauthenticated(f"no Greenlight user for {email}; ask a super-admin for one")
        user = await _provision(email, claims.get("name"))
    if not user.is_active:
        raise Unauthenticated("user deactivated")
    groups = claims.get(config.groups_claim) if config.groups_claim else None
    # An absent (or null) claim says nothing about groups: memberships stay as they are,
    # those a super-admin added included. A list, even an empty one, decides them.
    if isinstance(groups, str):
        groups = [groups]
    if isinstance(groups, list):
        await _sync_groups(user, {g for g in groups if isinstance(g, str)})
    return user


async def _provision(email: str, name: object) -> User:
    """A user the identity provider vouches for, created on first sign-in with no roles."""
    display = name.strip()[:200] if isinstance(name, str) and name.strip() else email.split("@")[0]
    async with transaction():
        existing = await User.get_or_none(email=email)
        if existing is not None:
            return existing
        try:
            user = await User.create(email=email, name=display)
        except IntegrityError:  # provisioned by a concurrent request
            return await User.get(email=email)
        await audit.record("provision_user", user, actor_id=None, after={"email": email})
    return user


async def _sync_groups(user: User, names: set[str]) -> None:
    """The identity provider's groups claim decides the user's memberships: of the
    Greenlight groups of those names, and of no other group."""
    wanted = set(await Group.filter(name__in=names).values_list("id", flat=True)) if names else set()
    current = set(await GroupMember.filter(user_id=user.id).values_list("group_id", flat=True))
    if wanted == current:
        return
    async with transaction():
        await lock_policy()  # first, as every change to who may do what takes it: no deadlock
        await GroupMember.filter(user_id=user.id, group_id__in=current - wanted).delete()
        for group_id in wanted - current:
            await GroupMember.get_or_create(user_id=user.id, group_id=group_id)
        await audit.record(
            "sync_groups",
            user,
            actor_id=None,
            before={"groups": sorted(current)},
            after={"groups": sorted(wanted)},
        )


async def create_user(actor: Actor, email: str, name: str) -> User:
    """R2."""
    require_admin(actor, "create users")
    email = validation.email(email)
    name = validation.text("name", name, required=True, limit=200)
    async with transaction():
        existing = await User.get_or_none(email=email)
        if existing is not None:
            raise Conflict(f"a user with email {email} exists", existing=existing)
        user = await User.create(email=email, name=name)
        await audit.record("create_user", user, actor_id=actor.id, after={"email": email})
    return user


@dataclass(frozen=True)
class TokenLimits:
    """What a new token is limited to; None in a field: no limit there."""

    actions: list[str] | None = None
    application_ids: list[int] | None = None
    environment_ids: list[int] | None = None


NO_LIMITS = TokenLimits()


async def _issue_token(
    user: User, name: str, ttl_hours: int | None, limits: TokenLimits = NO_LIMITS
) -> tuple[str, ApiToken]:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now() + timedelta(hours=ttl_hours) if ttl_hours else None
    api_token = await ApiToken.create(
        user=user,
        name=name,
        token_hash=hash_token(secret),
        expires_at=expires_at,
        actions=limits.actions,
        application_ids=limits.application_ids,
        environment_ids=limits.environment_ids,
    )
    return secret, api_token


def _action_names(raw: list[str] | None) -> list[str] | None:
    """Action names of policy.csv (`register_image`; `REGISTER_IMAGE` and `registerImage`
    name it too); an unknown one is BAD_USER_INPUT."""
    if raw is None:
        return None
    names = []
    for given in raw:
        name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", given.strip()).lower()
        if name not in ACTION_NAMES:
            raise BadUserInput(
                f"actions: {given!r} is not an action; known: {', '.join(ACTION_NAMES)}", field="actions"
            )
        names.append(name)
    return sorted(set(names))


async def _limited_to(actor: Actor, model: type, kind: str, ids: list[int] | None) -> list[str] | None:
    """The names of the applications or environments a token is limited to; each must be
    one the caller can see (R1), else NOT_FOUND."""
    if ids is None:
        return None
    found = {row.id: row for row in await model.filter(id__in=ids)}
    sees = sees_application if kind == "application" else sees_environment
    for wanted in ids:
        row = found.get(wanted)
        if row is None or not sees(actor, row.name):
            raise not_found(kind)
    return sorted(row.name for row in found.values())


async def issue_api_token(
    actor: Actor,
    user_id: int,
    name: str,
    ttl_hours: int | None,
    limits: TokenLimits = NO_LIMITS,
) -> tuple[str, ApiToken]:
    """Anyone issues tokens for themself, super-admins for anyone (R2). A token may be
    limited to some actions, applications and environments: it can then do what its owner
    may do now, within them (greenlight.policies.token_scope). A token issued with a
    limited token is limited at least as much, and expires no later. The secret is
    returned once and stored only as a hash."""
    if user_id != actor.id:
        require_admin(actor, "issue API tokens for other users")
    name = validation.text("name", name, required=True, limit=200)
    validation.in_range("ttlHours", ttl_hours, 1, validation.MAX_TOKEN_TTL_HOURS, nullable=True)
    actions = _action_names(limits.actions)
    app_ids = sorted(set(limits.application_ids)) if limits.application_ids is not None else None
    env_ids = sorted(set(limits.environment_ids)) if limits.environment_ids is not None else None
    async with transaction():
        user = await User.get_or_none(id=user_id)
        if user is None:
            raise not_found("user")
        apps = await _limited_to(actor, Application, "application", app_ids)
        envs = await _limited_to(actor, Environment, "environment", env_ids)
        asked = TokenScope(
            frozenset(actions) if actions is not None else None,
            frozenset(apps) if apps is not None else None,
            frozenset(envs) if envs is not None else None,
        )
        if not asked.within(actor.token):
            raise TokenScopeRefused(
                "this API token is limited: a token it issues must be limited to the same "
                "actions, applications and environments, or fewer"
            )
        ends = actor.token.expires_at
        if ends is not None and (ttl_hours is None or now() + timedelta(hours=ttl_hours) > ends):
            raise TokenScopeRefused(
                f"this API token expires at {ends.isoformat()}: a token it issues must expire by then (ttlHours)"
            )
        limited = TokenLimits(actions, app_ids, env_ids)
        secret, api_token = await _issue_token(user, name, ttl_hours, limited)
        after = {"user": user.id, "name": name}
        if asked.limited:
            after["limits"] = {"actions": actions, "applications": apps, "environments": envs}
        await audit.record("issue_api_token", api_token, actor_id=actor.id, after=after)
    return secret, api_token


async def revoke_api_token(actor: Actor, token_id: int) -> ApiToken:
    """R2; a user may also revoke their own tokens."""
    async with transaction():
        api_token = await ApiToken.select_for_update().get_or_none(id=token_id)
        if api_token is None or (api_token.user_id != actor.id and not actor.is_super_admin):
            # Another user's token is as invisible as one that does not exist (R1).
            raise not_found("API token")
        if api_token.revoked_at is not None:
            raise InvalidState("this token is already revoked")
        api_token.revoked_at = now()
        await api_token.save(update_fields=["revoked_at"])
        await audit.record("revoke_api_token", api_token, actor_id=actor.id)
    return api_token


async def api_token(actor: Actor, token_id: int) -> ApiToken:
    """A token (never its secret): the caller's own; super-admins anyone's. Another user's
    token is as invisible as one that does not exist (R1)."""
    found = await ApiToken.get_or_none(id=token_id)
    if found is None or (found.user_id != actor.id and not actor.is_super_admin):
        raise not_found("API token")
    return found


async def api_tokens(actor: Actor, user_id: int | None, first: int | None, after_id: int | None):
    """Tokens (never their secrets): a user's own; super-admins anyone's, or all."""
    query = ApiToken.all()
    if not actor.is_super_admin:
        if user_id is not None and user_id != actor.id:
            require_admin(actor, "list other users' tokens")
        query = query.filter(user_id=actor.id)
    elif user_id is not None:
        query = query.filter(user_id=user_id)
    return await page(query, first, after_id)


async def _set_active(actor: Actor, user_id: int, active: bool) -> User:
    require_admin(actor, "deactivate or reactivate users")
    async with access_transaction(actor):
        await lock_policy()  # serialises deactivations (the last super-admin stays)
        user = await User.select_for_update().get_or_none(id=user_id)
        if user is None:
            raise not_found("user")
        if user.is_active == active:
            raise InvalidState(f"this user is already {'active' if active else 'deactivated'}")
        if not active:
            if user.id == actor.id:
                raise InvalidState("you cannot deactivate yourself")
            # (counted only for a super-admin: it reads every binding of the role)
            if actor.authorizer.is_super_admin(user.id) and not await RoleBinding.exists(
                role=Role.SUPER_ADMIN, user__is_active=True, user_id__not=user.id
            ):
                raise InvalidState("this is the last active super-admin")
        user.is_active = active
        await user.save(update_fields=["is_active"])
        await audit.record(
            "reactivate_user" if active else "deactivate_user",
            user,
            actor_id=actor.id,
            before={"active": not active},
            after={"active": active},
        )
    return user


async def deactivate_user(actor: Actor, user_id: int) -> User:
    """Every token and JWT of the user fails at once; they leave eligible approvers; their
    past actions stay in the audit log; their roles are kept for a reactivation."""
    return await _set_active(actor, user_id, False)


async def reactivate_user(actor: Actor, user_id: int) -> User:
    return await _set_active(actor, user_id, True)


async def check_scope_exists(application: str, environment: str) -> None:
    scope = Scope(application, environment)
    if not scope.every_application and not await Application.exists(name=application):
        raise not_found("application")
    if not scope.every_environment and not await Environment.exists(name=environment):
        raise not_found("environment")


async def grant_role(
    actor: Actor, user_id: int, role: Role, application: str | None, environment: str | None
) -> RoleBinding:
    """R2, R5: super-admins grant; super-admin is only ever granted on every scope."""
    return await create_binding(actor, "user", user_id, role, application, environment)


async def create_binding(
    actor: Actor,
    holder: str,
    holder_id: int,
    role: Role,
    application: str | None,
    environment: str | None,
) -> RoleBinding:
    """A role for a user or a group ("user" or "group" `holder`) on a scope (R2, R5); "*"
    only where written (validation.scope_part)."""
    require_admin(actor, "grant roles")
    application = validation.scope_part("application", application)
    environment = validation.scope_part("environment", environment)
    if role == Role.SUPER_ADMIN and not Scope(application, environment).is_everything:
        raise BadUserInput("super-admin is global: grant it with application and environment '*'")
    model = User if holder == "user" else Group
    async with access_transaction(actor):
        await lock_policy()  # first, as every change to who may do what takes it: no deadlock
        if not await model.exists(id=holder_id):
            raise not_found(holder)
        await check_scope_exists(application, environment)
        fields = {
            f"{holder}_id": holder_id,
            "role": role,
            "application": application,
            "environment": environment,
        }
        existing = await RoleBinding.get_or_none(**fields)
        if existing is not None:
            raise Conflict("this role binding exists", existing=existing)
        binding = await RoleBinding.create(**fields)
        await audit.record(
            "grant_role",
            binding,
            actor_id=actor.id,
            after={holder: holder_id, "role": role.value, "scope": f"{application}/{environment}"},
            application=application,
            environment=environment,
        )
    return binding


async def revoke_role(actor: Actor, binding_id: int) -> RoleBinding:
    """R2, R5. The last super-admin binding cannot be revoked: someone must administer."""
    return await delete_binding(actor, "user", binding_id)


async def delete_binding(actor: Actor, holder: str, binding_id: int) -> RoleBinding:
    """Revoke a user's or a group's ("user" or "group" `holder`) role binding (R2, R5)."""
    require_admin(actor, "revoke roles")
    async with access_transaction(actor):
        await lock_policy()  # serialises concurrent revocations
        binding = await RoleBinding.get_or_none(id=binding_id, **{f"{holder}_id__isnull": False})
        if binding is None:
            raise not_found("role binding" if holder == "user" else "group role binding")
        if (
            holder == "user"
            and binding.role == Role.SUPER_ADMIN
            and await User.exists(id=binding.user_id, is_active=True)
        ):
            others = (
                await RoleBinding.filter(role=Role.SUPER_ADMIN, user__is_active=True)
                .exclude(id=binding.id)
                .count()
            )
            if others == 0:
                raise InvalidState("this is the last super-admin; grant another one first")
        before = {
            holder: getattr(binding, f"{holder}_id"),
            "role": Role(binding.role).value,
            "scope": f"{binding.application}/{binding.environment}",
        }
        await binding.delete()
        await audit.record(
            "revoke_role",
            binding,
            actor_id=actor.id,
            before=before,
            application=binding.application,
            environment=binding.environment,
        )
    return binding


class BootstrapError(GreenlightError):
    code = "BAD_USER_INPUT"


async def bootstrap(email: str) -> tuple[User, str]:
    """Make EMAIL the first super-admin (or reuse it if it is one) and issue it a token."""
    email = validation.email(email)
    async with transaction():
        await lock_policy()  # serialises concurrent bootstraps
        admin_ids = set(await RoleBinding.filter(role=Role.SUPER_ADMIN).values_list("user_id", flat=True))
        user = await User.get_or_none(email=email)
        if admin_ids and (user is None or user.id not in admin_ids):
            raise BootstrapError("a super-admin exists already; ask them for an account and a token")
        if user is None:
            user = await User.create(email=email, name=email.split("@")[0])
            await audit.record("create_user", user, actor_id=None, after={"email": email})
        if not user.is_active:
            raise BootstrapError(f"{email} is deactivated")
        if user.id not in admin_ids:
            try:
                binding = await RoleBinding.create(
                    user=user,
                    role=Role.SUPER_ADMIN,
                    application=EVERYTHING.application,
                    environment=EVERYTHING.environment,
                )
            except IntegrityError:  # pragma: no cover - guarded by the policy lock
                raise BootstrapError("bootstrap raced with another; run it again") from None
            await audit.record(
                "grant_role",
                binding,
                actor_id=None,
                after={"user": user.id, "role": Role.SUPER_ADMIN.value, "scope": "*/*"},
            )
        secret, api_token = await _issue_token(user, "bootstrap", None)
        await audit.record("issue_api_token", api_token, actor_id=None, after={"user": user.id})
    return user, secret

"""Users, API tokens, role bindings and the first super-admin (R2, R5)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from tortoise.exceptions import IntegrityError

from greenlight.models import ApiToken, Application, Environment, Role, RoleBinding, User
from greenlight.policies import Actor
from greenlight.policies.authorizer import bump_policy_version
from greenlight.workflow import audit, validation
from greenlight.workflow.clock import now
from greenlight.workflow.errors import (
    BadUserInput,
    Conflict,
    GreenlightError,
    InvalidState,
    Unauthenticated,
    not_found,
)
from greenlight.workflow.guards import require_admin
from greenlight.workflow.tx import transaction

TOKEN_PREFIX = "glt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def authenticate(authorization: str | None) -> User:
    """The user behind an `Authorization: Bearer <token>` header, or UNAUTHENTICATED."""
    if not authorization:
        raise Unauthenticated("missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("malformed Authorization header: expected 'Bearer <token>'")
    api_token = await ApiToken.get_or_none(token_hash=hash_token(token)).prefetch_related("user")
    if api_token is None:
        raise Unauthenticated("invalid token")
    if api_token.revoked_at is not None:
        raise Unauthenticated("token revoked")
    if api_token.expires_at is not None and api_token.expires_at <= now():
        raise Unauthenticated("token expired")
    if not api_token.user.is_active:
        raise Unauthenticated("user deactivated")
    return api_token.user


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


async def _issue_token(user: User, name: str, ttl_hours: int | None) -> tuple[str, ApiToken]:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now() + timedelta(hours=ttl_hours) if ttl_hours else None
    api_token = await ApiToken.create(
        user=user, name=name, token_hash=hash_token(secret), expires_at=expires_at
    )
    return secret, api_token


async def issue_api_token(
    actor: Actor, user_id: int, name: str, ttl_hours: int | None
) -> tuple[str, ApiToken]:
    """R2. The secret is returned once and stored only as a hash."""
    require_admin(actor, "issue API tokens")
    name = validation.text("name", name, required=True, limit=200)
    validation.in_range("ttlHours", ttl_hours, 1, validation.MAX_TOKEN_TTL_HOURS, nullable=True)
    async with transaction():
        user = await User.get_or_none(id=user_id)
        if user is None:
            raise not_found("user")
        secret, api_token = await _issue_token(user, name, ttl_hours)
        await audit.record(
            "issue_api_token", api_token, actor_id=actor.id, after={"user": user.id, "name": name}
        )
    return secret, api_token


async def revoke_api_token(actor: Actor, token_id: int) -> ApiToken:
    """R2."""
    require_admin(actor, "revoke API tokens")
    async with transaction():
        api_token = await ApiToken.select_for_update().get_or_none(id=token_id)
        if api_token is None:
            raise not_found("API token")
        if api_token.revoked_at is not None:
            raise InvalidState("this token is already revoked")
        api_token.revoked_at = now()
        await api_token.save(update_fields=["revoked_at"])
        await audit.record("revoke_api_token", api_token, actor_id=actor.id)
    return api_token


async def _check_scope_exists(application: str, environment: str) -> None:
    if application != "*" and not await Application.exists(name=application):
        raise not_found("application")
    if environment != "*" and not await Environment.exists(name=environment):
        raise not_found("environment")


async def grant_role(
    actor: Actor, user_id: int, role: Role, application: str, environment: str
) -> RoleBinding:
    """R2, R5: super-admins grant; super-admin is only ever granted on every scope."""
    require_admin(actor, "grant roles")
    validation.scope_part("application", application)
    validation.scope_part("environment", environment)
    if role == Role.SUPER_ADMIN and (application, environment) != ("*", "*"):
        raise BadUserInput("super-admin is global: grant it with application and environment '*'")
    async with transaction():
        user = await User.get_or_none(id=user_id)
        if user is None:
            raise not_found("user")
        await _check_scope_exists(application, environment)
        existing = await RoleBinding.get_or_none(
            user_id=user_id, role=role, application=application, environment=environment
        )
        if existing is not None:
            raise Conflict("this role binding exists", existing=existing)
        binding = await RoleBinding.create(
            user=user, role=role, application=application, environment=environment
        )
        await bump_policy_version()
        await audit.record(
            "grant_role",
            binding,
            actor_id=actor.id,
            after={"user": user_id, "role": role.value, "scope": f"{application}/{environment}"},
            application=application,
            environment=environment,
        )
    return binding


async def revoke_role(actor: Actor, binding_id: int) -> RoleBinding:
    """R2, R5. The last super-admin binding cannot be revoked: someone must administer."""
    require_admin(actor, "revoke roles")
    async with transaction():
        await bump_policy_version()  # also serialises concurrent revocations
        binding = await RoleBinding.get_or_none(id=binding_id)
        if binding is None:
            raise not_found("role binding")
        if binding.role == Role.SUPER_ADMIN:
            admins = await RoleBinding.filter(role=Role.SUPER_ADMIN, user__is_active=True).count()
            if admins <= 1:
                raise InvalidState("this is the last super-admin; grant another one first")
        before = {
            "user": binding.user_id,
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
        await bump_policy_version()  # serialises concurrent bootstraps
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
                    user=user, role=Role.SUPER_ADMIN, application="*", environment="*"
                )
            except IntegrityError:  # pragma: no cover - guarded by the version lock
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

"""Why may (or may not) someone do something: "can I?" for everyone, "explain" for
super-admins about anyone, and the CLI's `greenlight policy check`."""

from __future__ import annotations

from dataclasses import dataclass

from greenlight.errors import not_found
from greenlight.models import User
from greenlight.policies import Action, Actor, Authorizer, Scope
from greenlight.policies.authorizer import Grant
from greenlight.workflow import validation
from greenlight.workflow.guards import require_admin, token_refusal


@dataclass(frozen=True)
class Explanation:
    allowed: bool
    reason: str
    grants: list[Grant]
    roles_needed: list[str]
    code: str | None = None  # TOKEN_SCOPE when the caller's roles allow it but the token does not


def _describe(grant: Grant) -> str:
    via = f"through group {grant.group}" if grant.group else "granted directly"
    return f"{grant.role.value} on {grant.scope.application}/{grant.scope.environment} ({via})"


def explain_for(authorizer: Authorizer, user: User, action: Action, scope: Scope) -> Explanation:
    decision = authorizer.explain(user.id, action, scope)
    needed = [role.value for role in decision.roles_needed]
    where = f"{scope.application}/{scope.environment}"
    if not user.is_active:
        return Explanation(False, f"{user.email} is deactivated", [], needed)
    if decision.allowed:
        reason = f"{user.email} may {action.value} on {where}: " + "; ".join(
            _describe(g) for g in decision.grants
        )
        return Explanation(True, reason, decision.grants, needed)
    reason = (
        f"{user.email} may not {action.value} on {where}: that needs one of "
        f"{', '.join(needed)} on {where} (or on a scope with '*' covering it)"
    )
    return Explanation(False, reason, [], needed)


async def explain(
    actor: Actor, user_id: int | None, action: Action, application: str, environment: str
) -> Explanation:
    """`canI` (user_id None: the caller) and `explainAccess` (super-admins, anyone)."""
    validation.scope_part("application", application)
    validation.scope_part("environment", environment)
    if user_id is None or user_id == actor.id:
        user = actor.user
    else:
        require_admin(actor, "explain other users' access")
        user = await User.get_or_none(id=user_id)
        if user is None:
            raise not_found("user")
    scope = Scope(application, environment)
    found = explain_for(actor.authorizer, user, action, scope)
    if user is actor.user and found.allowed and (limited := token_refusal(actor, action, scope)):
        # the roles allow it; the API token asking is limited to less
        return Explanation(False, limited.message, [], found.roles_needed, limited.code)
    return found

"""The Casbin enforcer, fed with role bindings from our own table."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import casbin
from casbin.persist.adapters.asyncio import AsyncAdapter

from greenlight.models import GroupMember, PolicyVersion, Role, RoleBinding, User
from greenlight.policies.actions import Action

POLICY_DIR = Path(__file__).parent
MODEL_PATH = POLICY_DIR / "model.conf"
POLICY_PATH = POLICY_DIR / "policy.csv"

WILDCARD = "*"

# Casbin logs every decision (denials as warnings); decisions are ours to report.
logging.getLogger("casbin").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Scope:
    """An application name and an environment name, either of which may be '*'."""

    application: str
    environment: str

    @property
    def domain(self) -> str:
        return f"{self.application}/{self.environment}"

    @property
    def is_everything(self) -> bool:
        return self.application == WILDCARD and self.environment == WILDCARD


EVERYTHING = Scope(WILDCARD, WILDCARD)


def subject(user_id: int) -> str:
    return f"user:{user_id}"


def _role_action_lines() -> list[list[str]]:
    rows = []
    for raw in POLICY_PATH.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rows.append([token.strip() for token in line.split(",")])
    return rows


def _load_rule(model, key: str, rule: list[str]) -> None:
    """What casbin.persist.load_policy_line does, without parsing a text line."""
    model.model[key[0]][key].policy.append(rule)


def group_subject(group_id: int) -> str:
    return f"group:{group_id}"


@dataclass(frozen=True)
class Grant:
    """A role a user holds on a scope, directly or through a group: the answer to "why"."""

    role: Role
    scope: Scope
    binding_id: int
    group: str | None = None  # the group's name when the role comes through it

    def covers(self, scope: Scope) -> bool:
        return self.scope.application in (WILDCARD, scope.application) and self.scope.environment in (
            WILDCARD,
            scope.environment,
        )


class BindingAdapter(AsyncAdapter):
    """Loads policy.csv, the role_bindings table and group memberships into the Casbin
    model (read only).

    A user's membership of a group becomes a Casbin role link from the user to the group
    in every scope the group holds a role on, so members inherit the group's roles through
    Casbin's own role inheritance.
    """

    def __init__(self) -> None:
        self.grants: dict[int, list[Grant]] = {}

    async def load_policy(self, model) -> None:
        for key, *rule in _role_action_lines():
            _load_rule(model, key, rule)
        grants: dict[int, list[Grant]] = defaultdict(list)
        direct = await RoleBinding.filter(user__is_active=True).values_list(
            "id", "user_id", "role", "application", "environment"
        )
        for binding_id, user_id, role, app, env in direct:
            _load_rule(model, "g", [subject(user_id), str(role), f"{app}/{env}"])
            grants[user_id].append(Grant(Role(role), Scope(app, env), binding_id))
        by_group: dict[int, list[tuple[int, Role, Scope]]] = defaultdict(list)
        through_groups = await RoleBinding.filter(group_id__isnull=False).values_list(
            "id", "group_id", "role", "application", "environment"
        )
        for binding_id, group_id, role, app, env in through_groups:
            _load_rule(model, "g", [group_subject(group_id), str(role), f"{app}/{env}"])
            by_group[group_id].append((binding_id, Role(role), Scope(app, env)))
        memberships = await GroupMember.filter(user__is_active=True).values_list(
            "group_id", "user_id", "group__name"
        )
        for group_id, user_id, group_name in memberships:
            for binding_id, role, scope in by_group.get(group_id, []):
                _load_rule(model, "g", [subject(user_id), group_subject(group_id), scope.domain])
                grants[user_id].append(Grant(role, scope, binding_id, group_name))
        self.grants = dict(grants)

    # Role bindings are written by the workflow layer (greenlight.workflow.identity), in
    # the transaction of the mutation that changes them; the enforcer never writes.
    async def save_policy(self, model) -> bool:
        raise NotImplementedError("the Casbin enforcer is read only here")

    async def add_policy(self, sec, ptype, rule) -> bool:
        raise NotImplementedError("the Casbin enforcer is read only here")

    async def remove_policy(self, sec, ptype, rule) -> bool:
        raise NotImplementedError("the Casbin enforcer is read only here")

    async def remove_filtered_policy(self, sec, ptype, field_index, *field_values) -> bool:
        raise NotImplementedError("the Casbin enforcer is read only here")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    grants: list[Grant]  # the roles that allow it (empty when refused)
    roles_needed: list[Role]  # the roles that would allow it


class Authorizer:
    """One per server process. Reloads bindings when the stored policy version moves (R5)."""

    def __init__(self) -> None:
        self._adapter = BindingAdapter()
        self._enforcer = casbin.AsyncEnforcer(str(MODEL_PATH), self._adapter)
        self._version: int | None = None
        self._lock = asyncio.Lock()
        self._grants: dict[int, list[Grant]] = {}
        self._roles_by_action: dict[str, set[str]] = defaultdict(set)
        for _, role, action in _role_action_lines():
            self._roles_by_action[action].add(role)

    async def refresh(self) -> None:
        """Bring the loaded bindings up to date with the database, if they moved."""
        version = await current_policy_version()
        if version == self._version:
            return
        async with self._lock:
            version = await current_policy_version()
            if version == self._version:
                return
            await self._enforcer.load_policy()
            self._grants = self._adapter.grants
            self._version = version

    def may(self, user_id: int, action: Action, scope: Scope) -> bool:
        return self._enforcer.enforce(subject(user_id), scope.application, scope.environment, action.value)

    def scopes(self, user_id: int, action: Action) -> list[Scope]:
        roles = self._roles_by_action[action.value]
        return [grant.scope for grant in self._grants.get(user_id, []) if grant.role.value in roles]

    def is_super_admin(self, user_id: int) -> bool:
        return self.may(user_id, Action.ADMINISTER, EVERYTHING)

    def explain(self, user_id: int, action: Action, scope: Scope) -> Decision:
        """Whether the user may, and why: the grants that allow it, or the roles that would."""
        roles = self._roles_by_action[action.value]
        grants = [g for g in self._grants.get(user_id, []) if g.role.value in roles and g.covers(scope)]
        allowed = self.may(user_id, action, scope)
        return Decision(
            allowed=allowed,
            grants=grants if allowed else [],
            roles_needed=sorted((Role(r) for r in roles), key=lambda r: r.value),
        )

    def users_with(self, action: Action, scope: Scope) -> set[int]:
        """Every user (directly or through a group) holding a role that allows the action."""
        domains = {
            scope.domain,
            f"{scope.application}/{WILDCARD}",
            f"{WILDCARD}/{scope.environment}",
            EVERYTHING.domain,
        }
        role_manager = self._enforcer.get_role_manager()
        users: set[int] = set()
        for role in self._roles_by_action[action.value]:
            for domain in domains:
                for sub in role_manager.get_users(role, domain):
                    if sub.startswith("group:"):
                        members = role_manager.get_users(sub, domain)
                        users.update(int(m.removeprefix("user:")) for m in members)
                    else:
                        users.add(int(sub.removeprefix("user:")))
        return users


async def current_policy_version() -> int:
    row = await PolicyVersion.filter(id=1).first().values_list("version", flat=True)
    return int(row or 0)


async def bump_policy_version() -> None:
    """Call inside the transaction that changes role bindings or deactivates a user."""
    await PolicyVersion.get_or_create(id=1, defaults={"version": 0})
    row = await PolicyVersion.select_for_update().get(id=1)
    row.version += 1
    await row.save(update_fields=["version"])


@dataclass
class Actor:
    """The authenticated user behind a request, with the process's authorizer."""

    user: User
    authorizer: Authorizer

    @property
    def id(self) -> int:
        return self.user.id

    def may(self, action: Action, scope: Scope) -> bool:
        return self.authorizer.may(self.user.id, action, scope)

    def scopes(self, action: Action) -> list[Scope]:
        return self.authorizer.scopes(self.user.id, action)

    @property
    def is_super_admin(self) -> bool:
        return self.authorizer.is_super_admin(self.user.id)

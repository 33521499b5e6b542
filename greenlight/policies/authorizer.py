"""The Casbin enforcer, fed with role bindings from our own table."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import casbin
from casbin.persist.adapters.asyncio import AsyncAdapter

from greenlight.models import PolicyVersion, Role, RoleBinding, User
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


class BindingAdapter(AsyncAdapter):
    """Loads policy.csv and the role_bindings table into the Casbin model (read only)."""

    def __init__(self) -> None:
        self.bindings: list[tuple[int, Role, str, str]] = []

    async def load_policy(self, model) -> None:
        for key, *rule in _role_action_lines():
            _load_rule(model, key, rule)
        self.bindings = [
            (user_id, Role(role), app, env)
            for user_id, role, app, env in await RoleBinding.filter(user__is_active=True).values_list(
                "user_id", "role", "application", "environment"
            )
        ]
        for user_id, role, app, env in self.bindings:
            _load_rule(model, "g", [subject(user_id), role.value, f"{app}/{env}"])

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


class Authorizer:
    """One per server process. Reloads bindings when the stored policy version moves (R5)."""

    def __init__(self) -> None:
        self._adapter = BindingAdapter()
        self._enforcer = casbin.AsyncEnforcer(str(MODEL_PATH), self._adapter)
        self._version: int | None = None
        self._lock = asyncio.Lock()
        self._bindings_by_user: dict[int, list[tuple[Role, Scope]]] = {}
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
            by_user: dict[int, list[tuple[Role, Scope]]] = defaultdict(list)
            for user_id, role, app, env in self._adapter.bindings:
                by_user[user_id].append((role, Scope(app, env)))
            self._bindings_by_user = dict(by_user)
            self._version = version

    def may(self, user_id: int, action: Action, scope: Scope) -> bool:
        return self._enforcer.enforce(subject(user_id), scope.application, scope.environment, action.value)

    def scopes(self, user_id: int, action: Action) -> list[Scope]:
        roles = self._roles_by_action[action.value]
        return [scope for role, scope in self._bindings_by_user.get(user_id, []) if role in roles]

    def is_super_admin(self, user_id: int) -> bool:
        return self.may(user_id, Action.ADMINISTER, EVERYTHING)

    def users_with(self, action: Action, scope: Scope) -> set[int]:
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

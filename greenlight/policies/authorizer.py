"""The decision API: may this actor do this action on this scope, on which scopes may it,
who may on a scope, and why (R1-R5).

Casbin decides (`greenlight.policies.matcher`), over the rules of who holds what
(`greenlight.policies.rules`), which every process keeps up to date change by change
(`greenlight.policies.changes`). Each process caches its decisions per (user,
application, environment, action). On each request (and each operation on an open
WebSocket) a process reads the latest version and the changes since the one it applied,
in one statement, and, when it has moved, re-derives the rules of only the users and
groups named since, and forgets only their cached decisions (R5). A new process loads
every binding at once.

The names the modules beside this one define are imported here too, where they were
before, for the callers that import them from here.
"""

from __future__ import annotations

import asyncio
import gc
from collections import defaultdict
from dataclasses import dataclass

from greenlight.models import Role, User
from greenlight.policies.actions import Action
from greenlight.policies.changes import (  # noqa: F401
    FULL_RELOAD_AFTER,
    GROUP_BINDINGS,
    GROUP_MEMBERS,
    GROUP_NAMES,
    POLICY_LOCK,
    USER_BINDINGS,
    USER_GROUPS,
    GroupData,
    UserData,
    changes_since,
    latest_policy_version,
    lock_policy,
    read_changes,
)
from greenlight.policies.matcher import (  # noqa: F401
    MODEL_PATH,
    POLICY_DIR,
    POLICY_PATH,
    CompiledMatcher,
    DomainRoleManager,
    GroupingRules,
    RoleEnforcer,
)
from greenlight.policies.matcher import role_action_lines as _role_action_lines
from greenlight.policies.rules import ROLES, Grant, Rules, group_subject, subject  # noqa: F401
from greenlight.policies.token_scope import UNLIMITED, TokenScope
from greenlight.scopes import EVERYTHING, WILDCARD, Scope  # noqa: F401

# Rules loaded at once from which the garbage collector is told to leave them alone.
FREEZE_AFTER_LOADING = 50_000
# A process forgets every cached decision when it holds more than this many.
MAX_CACHED_DECISIONS = 1_000_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    grants: list[Grant]  # the roles that allow it (empty when refused)
    roles_needed: list[Role]  # the roles that would allow it


class Authorizer:
    """One per server process. Applies every change to role bindings, group memberships and
    users' active state made through any process before it answers a request (R5)."""

    def __init__(self) -> None:
        self._rules = Rules()
        self._version: int | None = None
        self._lock = asyncio.Lock()
        self._decisions: dict[int, dict[tuple[str, str, str], bool]] = {}
        self._cached = 0
        self._roles_by_action: dict[str, set[str]] = defaultdict(set)
        for _, role, action in _role_action_lines():
            self._roles_by_action[action].add(role)

    @property
    def version(self) -> int | None:
        """The latest change applied (None before the first refresh)."""
        return self._version

    async def refresh(self, latest: int | None = None) -> None:
        """Bring the rules up to date with the database, if they moved: on every request.

        `latest` is the latest version as this request read it already, with nothing
        written since by the request itself: if it is the version applied, nothing is read."""
        version = self._version
        if latest is not None and latest == version:
            return
        latest, changes = await changes_since(version)
        if latest == version:
            return
        async with self._lock:
            if self._version != version:  # another request moved it while this one waited
                version = self._version
                latest, changes = await changes_since(version)
                if latest == version:
                    return
            if version is None or latest < version or len(changes) > FULL_RELOAD_AFTER:
                # first request, the log went back (a restored database), or far behind
                await self._load_everything()
                return
            await self._apply(latest, changes)

    async def reload(self) -> None:
        """Load every binding afresh (what a new process does on its first request)."""
        async with self._lock:
            await self._load_everything()

    async def _load_everything(self) -> None:
        version = await latest_policy_version()  # before reading: later changes apply again
        collecting = gc.isenabled()
        gc.disable()  # a million new objects: collections meanwhile would pass over them again and again
        try:
            self._rules = await Rules.load()
        finally:
            if collecting:
                gc.enable()
        self._decisions = {}
        self._cached = 0
        self._version = version
        if len(self._rules.enforcer.model.model["g"]["g"].policy) >= FREEZE_AFTER_LOADING:
            # Hundreds of thousands of long-lived objects: a full collection would scan them
            # all (some 0.2 s at 100,000 bindings) now and then, in the middle of a request.
            gc.freeze()

    async def _apply(self, latest: int, changes: list[tuple[int, int | None, int | None]]) -> None:
        user_ids = {user_id for _, user_id, _ in changes if user_id is not None}
        group_ids = {group_id for _, _, group_id in changes if group_id is not None}
        if user_ids or group_ids:
            users, groups = await read_changes(user_ids, group_ids)
            # From here to the end, no await: requests see the rules before or after, whole.
            for user_id in self._rules.apply(users, groups):
                self._forget(user_id)
        self._version = max([latest, *(change_id for change_id, _, _ in changes)])

    def _forget(self, user_id: int) -> None:
        decisions = self._decisions.pop(user_id, None)
        if decisions:
            self._cached -= len(decisions)

    def may(self, user_id: int, action: Action, scope: Scope) -> bool:
        # _value_: Enum.value is a descriptor costing more than the rest of a cached decision
        key = (scope.application, scope.environment, action._value_)
        decisions = self._decisions.get(user_id)
        if decisions is None:
            decisions = self._decisions[user_id] = {}
        else:
            allowed = decisions.get(key)
            if allowed is not None:
                return allowed
        allowed = self._rules.enforcer.enforce(subject(user_id), *key)
        if self._cached >= MAX_CACHED_DECISIONS:
            self._decisions = {user_id: decisions}
            decisions.clear()
            self._cached = 0
        decisions[key] = allowed
        self._cached += 1
        return allowed

    def cached(self, user_id: int, action: Action, scope: Scope) -> bool | None:
        """The cached decision, or None if there is none (for tests and the benchmark)."""
        return self._decisions.get(user_id, {}).get((scope.application, scope.environment, action._value_))

    def decide(self, user_id: int, action: Action, scope: Scope) -> bool:
        """Casbin's decision, without the cache (for the benchmark and tests)."""
        return self._rules.enforcer.enforce(
            subject(user_id), scope.application, scope.environment, action.value
        )

    def scopes(self, user_id: int, action: Action) -> list[Scope]:
        roles = self._roles_by_action[action.value]
        return [grant.scope for grant in self._rules.grants(user_id) if grant.role._value_ in roles]

    def is_super_admin(self, user_id: int) -> bool:
        return self.may(user_id, Action.ADMINISTER, EVERYTHING)

    def explain(self, user_id: int, action: Action, scope: Scope) -> Decision:
        """Whether the user may, and why: the grants that allow it, or the roles that would."""
        roles = self._roles_by_action[action.value]
        grants = [g for g in self._rules.grants(user_id) if g.role._value_ in roles and g.covers(scope)]
        allowed = self.may(user_id, action, scope)
        return Decision(
            allowed=allowed,
            grants=grants if allowed else [],
            roles_needed=sorted((Role(r) for r in roles), key=lambda r: r.value),
        )

    def users_with(self, action: Action, scope: Scope) -> set[int]:
        """Every user (directly or through a group) holding a role that allows the action."""
        domains = {covering.domain for covering in scope.covering()}
        role_manager = self._rules.enforcer.role_manager
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


@dataclass
class Actor:
    """The authenticated user behind a request, with the process's authorizer."""

    user: User
    authorizer: Authorizer
    token: TokenScope = UNLIMITED  # the limits of the API token it signed in with

    @property
    def id(self) -> int:
        return self.user.id

    def may(self, action: Action, scope: Scope) -> bool:
        return self.authorizer.may(self.user.id, action, scope) and self.token.permits(
            action, scope.application, scope.environment
        )

    def scopes(self, action: Action) -> list[Scope]:
        found = self.authorizer.scopes(self.user.id, action)
        if not self.token.limited:
            return found
        if not self.token.allows_action(action):
            return []
        return [Scope(*part) for s in found for part in self.token.narrow(s.application, s.environment)]

    @property
    def is_super_admin(self) -> bool:
        return self.may(Action.ADMINISTER, EVERYTHING)

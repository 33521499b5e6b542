"""The Casbin enforcer, fed with role bindings from our own tables and kept up to date
change by change.

Casbin decides: every decision evaluates model.conf's matcher, as Casbin parses it, over
policy.csv's role-to-action rows and the `g` rules (who holds which role on which scope).
Around it, three things make it cheap at 100,000 role bindings:

- a role manager that keeps the `g` links in dictionaries (`DomainRoleManager`): adding
  or removing a link, and asking whether one holds, costs the same however many there are
  (Casbin's default domain manager rebuilds a domain's links on first use, in quadratic
  time);
- the enforcer evaluates the matcher, parsed by Casbin and compiled once, over only the
  policy.csv rows of the requested action, without the bookkeeping `enforce_ex` repeats on
  every call (for this model's "some allow" effect; any other model goes through
  `enforce_ex`);
- each process caches its decisions per (user, application, environment, action).

Every change to who may do what appends a `PolicyVersion` row naming the user or group
whose rules changed, in the transaction that makes the change (`record_policy_change`).
On each request (and each operation on an open WebSocket) a process reads the latest
version and the changes since the one it applied, in one statement, and, when it has moved,
re-derives the rules of only the users and groups named since, and forgets only
their cached decisions (R5). A new process loads every binding at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import casbin
from casbin import util
from casbin.model import FastPolicy, fast_policy_filter
from casbin.model.policy_op import PolicyOp
from casbin.rbac import RoleManager
from tortoise import connections

from greenlight.models import PolicyVersion, Role, User
from greenlight.policies.actions import Action
from greenlight.policies.token_scope import UNLIMITED, TokenScope

POLICY_DIR = Path(__file__).parent
MODEL_PATH = POLICY_DIR / "model.conf"
POLICY_PATH = POLICY_DIR / "policy.csv"

WILDCARD = "*"

# Casbin logs every decision (denials as warnings); decisions are ours to report.
logging.getLogger("casbin").setLevel(logging.ERROR)

# More changes than this since the version a process has applied: it reloads everything.
FULL_RELOAD_AFTER = 1000
# Rules loaded at once from which the garbage collector is told to leave them alone.
FREEZE_AFTER_LOADING = 50_000
# A process forgets every cached decision when it holds more than this many.
MAX_CACHED_DECISIONS = 1_000_000
# The PostgreSQL advisory lock that serialises changes to who may do what.
POLICY_LOCK = 0x676C_706F_6C69_6379  # "glpolicy"


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


def group_subject(group_id: int) -> str:
    return f"group:{group_id}"


def _role_action_lines() -> list[list[str]]:
    rows = []
    for raw in POLICY_PATH.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rows.append([token.strip() for token in line.split(",")])
    return rows


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


# --- Casbin, made to scale ---------------------------------------------------------------------


class GroupingRules:
    """The model's `g` rules: a list to Casbin, a dictionary inside, so that `in`, `append`
    and `remove` cost the same at any size (Casbin's `FastPolicy` does the same for `p`)."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Iterable[Iterable[str]] = ()) -> None:
        self._rules: dict[tuple[str, ...], None] = dict.fromkeys(tuple(rule) for rule in rules)

    def __iter__(self) -> Iterator[list[str]]:
        return (list(rule) for rule in self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule: object) -> bool:
        return isinstance(rule, list | tuple) and tuple(rule) in self._rules

    def __getitem__(self, index: int) -> list[str]:
        return list(list(self._rules)[index])

    def append(self, rule: Iterable[str]) -> None:
        self._rules[tuple(rule)] = None

    def remove(self, rule: Iterable[str]) -> None:
        try:
            del self._rules[tuple(rule)]
        except KeyError:
            raise ValueError(f"{rule} is not a rule") from None


class DomainRoleManager(RoleManager):
    """Casbin role links per domain (here a scope, "<application>/<environment>"), kept in
    dictionaries: `has_link` walks only the subject's own links, and adding or deleting a
    link is constant time. Link semantics are those of Casbin's default role manager (a
    name holds itself; inheritance is followed up to `max_hierarchy_level` links)."""

    def __init__(self, max_hierarchy_level: int = 10) -> None:
        self.max_hierarchy_level = max_hierarchy_level
        self._roles: dict[tuple[str, str], set[str]] = {}  # (name, domain) -> its roles
        self._users: dict[tuple[str, str], set[str]] = {}  # (role, domain) -> who holds it

    @staticmethod
    def _domain(domain: tuple[str, ...]) -> str:
        if len(domain) > 1:
            raise RuntimeError("error: domain should be 1 parameter")
        return domain[0] if domain else ""

    def clear(self) -> None:
        self._roles = {}
        self._users = {}

    def add_link(self, name1: str, name2: str, *domain: str) -> None:
        where = self._domain(domain)
        self._roles.setdefault((name1, where), set()).add(name2)
        self._users.setdefault((name2, where), set()).add(name1)

    def load(self, links: Iterable[tuple[str, str, str]]) -> None:
        """Every link (name1, name2, domain) at once: what add_link does for each, faster."""
        roles: dict[tuple[str, str], set[str]] = {}
        users: dict[tuple[str, str], set[str]] = {}
        for name1, name2, where in links:
            held = roles.get((name1, where))
            if held is None:
                roles[(name1, where)] = {name2}
            else:
                held.add(name2)
            holders = users.get((name2, where))
            if holders is None:
                users[(name2, where)] = {name1}
            else:
                holders.add(name1)
        self._roles, self._users = roles, users

    def delete_link(self, name1: str, name2: str, *domain: str) -> None:
        where = self._domain(domain)
        roles = self._roles.get((name1, where))
        if roles is None or name2 not in roles:
            return
        roles.discard(name2)
        if not roles:
            del self._roles[(name1, where)]
        users = self._users[(name2, where)]
        users.discard(name1)
        if not users:
            del self._users[(name2, where)]

    def has_link(self, name1: str, name2: str, *domain: str) -> bool:
        if name1 == name2:
            return True
        links = self._roles
        frontier = links.get((name1, domain[0] if len(domain) == 1 else self._domain(domain)))
        if not frontier:  # most calls: the subject holds nothing on this scope
            return False
        if name2 in frontier:
            return True
        where = self._domain(domain)
        seen: set[str] = set()
        for _ in range(self.max_hierarchy_level - 1):
            if not frontier:
                return False
            if name2 in frontier:
                return True
            following: set[str] = set()
            for role in frontier - seen:
                more = links.get((role, where))
                if more:
                    following |= more
            seen |= frontier
            frontier = following
        return False

    def get_roles(self, name: str, *domain: str) -> list[str]:
        return list(self._roles.get((name, self._domain(domain)), ()))

    def get_users(self, name: str, *domain: str) -> list[str]:
        return list(self._users.get((name, self._domain(domain)), ()))

    def print_roles(self) -> None:
        pass


class CompiledMatcher:
    """The matcher as Casbin rewrites it (`&&` to `and`, ...), compiled to Python bytecode
    once, where Casbin walks its syntax tree with simpleeval for every policy row. The
    matcher is model.conf's, a file of ours, checked at start-up (greenlight.policies.
    validate); it sees only the request and policy values and Casbin's functions."""

    def __init__(self, expr: str, functions: dict) -> None:
        self.expr = expr
        self.code = compile(expr.strip(), "<model.conf matcher>", "eval")
        # Casbin makes a new g() for each decision, over the same role manager: one will do.
        self.functions = {"__builtins__": {}, **(functions or {})}

    def eval(self, names: dict | None = None):
        return eval(self.code, self.functions, names or {})


class RoleEnforcer(casbin.Enforcer):
    """Casbin's enforcer over model.conf and policy.csv, with the `g` rules in a
    `DomainRoleManager`. It has no adapter: the rules are written into its model by `Rules`
    and never saved from here.

    A decision evaluates model.conf's matcher, as Casbin rewrites it and compiled once, over
    the policy.csv rows of the requested action, with `g` answered by the role manager; it
    allows when a row matches. That is `enforce_ex` for a model whose effect is "some allow"
    and whose matcher has no eval(), without what `enforce_ex` does around it on every call
    (its `g` function made anew, the request and row parameters copied into new
    dictionaries, every row's effect collected): a third of the time. For any other model,
    `enforce` is `enforce_ex`, on the rows of the action (`FastPolicy` keyed on p.act)."""

    ACTION = 1  # p = role, act
    REQUEST_ACTION = 3  # r = sub, app, env, act
    REQUEST_TOKENS = ["r_sub", "r_app", "r_env", "r_act"]
    POLICY_TOKENS = ["p_role", "p_act"]
    SOME_ALLOW = "some(where (p_eft == allow))"

    def __init__(self) -> None:
        self._expressions: dict[str, object] = {}
        model = casbin.Enforcer.new_model(str(MODEL_PATH))
        model.model["p"]["p"].policy = FastPolicy([self.ACTION])
        model.model["g"]["g"].policy = GroupingRules()
        self._rows: dict[str, list[tuple[str, str]]] = {}  # action -> its (role, action) rows
        for key, *rule in _role_action_lines():
            model.model[key[0]][key].policy.append(rule)
            if key == "p":
                self._rows.setdefault(rule[self.ACTION], []).append(tuple(rule))
        super().__init__(model)
        self.role_manager = DomainRoleManager()
        self.set_role_manager(self.role_manager)
        model.model["g"]["g"].rm = self.role_manager
        self._matcher = self._direct_matcher()

    def _direct_matcher(self) -> CompiledMatcher | None:
        """The compiled matcher with `g` bound to the role manager, when the model is one
        `enforce` can evaluate directly (see the class); None otherwise."""
        model = self.model.model
        matcher = model["m"]["m"].value
        if (
            model["e"]["e"].value != self.SOME_ALLOW
            or util.has_eval(matcher)
            or model["r"]["r"].tokens != self.REQUEST_TOKENS
            or model["p"]["p"].tokens != self.POLICY_TOKENS
            or list(model["g"]) != ["g"]
        ):
            return None
        parsed = casbin.Enforcer._get_expression(matcher, None)  # Casbin's rewriting
        return CompiledMatcher(parsed.expr, {**self.fm.get_functions(), "g": self.role_manager.has_link})

    def _get_expression(self, expr, functions=None):
        expression = self._expressions.get(expr)
        if expression is None:
            parsed = casbin.Enforcer._get_expression(expr, functions)  # Casbin's rewriting
            expression = self._expressions[expr] = CompiledMatcher(parsed.expr, functions)
        return expression

    def enforce(self, *rvals) -> bool:
        matcher = self._matcher
        if matcher is None or not self.enabled:
            return self.enforce_casbin(*rvals)
        sub, app, env, act = rvals
        names = {"r_sub": sub, "r_app": app, "r_env": env, "r_act": act}
        evaluate, code, functions = eval, matcher.code, matcher.functions
        for role, action in self._rows.get(act, ()):
            names["p_role"] = role
            names["p_act"] = action
            if evaluate(code, functions, names):
                return True
        return False

    def enforce_casbin(self, *rvals) -> bool:
        """The decision as Casbin's `enforce_ex` makes it (for tests)."""
        with fast_policy_filter(self.model.model["p"]["p"].policy, rvals[self.REQUEST_ACTION]):
            return self.enforce_ex(*rvals)[0]

    def load_rules(self, rules: list[tuple[str, str, str]]) -> None:
        """Every `g` rule at once, and the role links built from them once."""
        self.model.model["g"]["g"].policy = GroupingRules(rules)
        self.role_manager.load(rules)

    def remove_rules(self, rules: list[list[str]]) -> None:
        removed = self.model.remove_policies_with_effected("g", "g", rules)
        self.model.build_incremental_role_links(self.role_manager, PolicyOp.Policy_remove, "g", "g", removed)

    def add_rules(self, rules: list[list[str]]) -> None:
        self.model.add_policies_ex("g", "g", rules)
        self.model.build_incremental_role_links(self.role_manager, PolicyOp.Policy_add, "g", "g", rules)


# --- who holds what, in memory ---------------------------------------------------------------------

Bound = tuple[int, str, str, str]  # a binding: id, role (its value), application, environment
ROLES = {role.value: role for role in Role}
Rule = tuple[str, str, str]  # a Casbin `g` rule: subject, role (or group), domain


@dataclass
class UserData:
    """A user's own bindings and groups as stored (none if the user is deactivated)."""

    bindings: list[Bound]
    groups: dict[int, str]  # group id -> name


@dataclass
class GroupData:
    name: str | None
    bindings: list[Bound]
    members: set[int]  # active members


class Rules:
    """The bindings and memberships of active users, and the Casbin enforcer holding them
    as `g` rules.

    A user's binding is the rule (user, role, scope); a group's is (group, role, scope); a
    user's membership of a group is the rule (user, group, scope) for every scope the group
    holds a role on, so members inherit the group's roles through Casbin's own role
    inheritance.
    """

    def __init__(self) -> None:
        self.enforcer = RoleEnforcer()
        self.direct: dict[int, list[Bound]] = {}  # active user -> own bindings
        self.group_bindings: dict[int, list[Bound]] = {}
        self.group_names: dict[int, str] = {}
        self.groups_of: dict[int, set[int]] = {}  # active user -> groups
        self.members: dict[int, set[int]] = {}  # group -> active members
        self._grants: dict[int, list[Grant]] = {}  # derived lazily

    # -- loading everything --

    @classmethod
    async def load(cls) -> Rules:
        rules = cls()
        rules.build(
            await _fetch(USER_BINDINGS),
            await _fetch(GROUP_BINDINGS),
            await _fetch(GROUP_MEMBERS),
            await _fetch(GROUP_NAMES),
        )
        return rules

    def build(self, direct, through_groups, memberships, names) -> None:
        everything: list[Rule] = []
        rule = everything.append
        for user_id, binding_id, role, app, env in direct:
            role = str(role)
            self.direct.setdefault(user_id, []).append((binding_id, role, app, env))
            rule((subject(user_id), role, f"{app}/{env}"))
        domains: dict[int, set[str]] = {}
        for group_id, binding_id, role, app, env in through_groups:
            role = str(role)
            self.group_bindings.setdefault(group_id, []).append((binding_id, role, app, env))
            domains.setdefault(group_id, set()).add(f"{app}/{env}")
            rule((group_subject(group_id), role, f"{app}/{env}"))
        for group_id, user_id in memberships:
            self.groups_of.setdefault(user_id, set()).add(group_id)
            self.members.setdefault(group_id, set()).add(user_id)
            sub, group = subject(user_id), group_subject(group_id)
            everything.extend((sub, group, domain) for domain in domains.get(group_id, ()))
        self.group_names = dict(names)
        self.enforcer.load_rules(everything)

    # -- the rules of one user or group, from what is in memory --

    def _domains(self, group_id: int) -> set[str]:
        return {f"{app}/{env}" for _, _, app, env in self.group_bindings.get(group_id, ())}

    def _group_rules(self, group_id: int) -> set[Rule]:
        sub = group_subject(group_id)
        return {(sub, role, f"{app}/{env}") for _, role, app, env in self.group_bindings.get(group_id, ())}

    def grants(self, user_id: int) -> list[Grant]:
        found = self._grants.get(user_id)
        if found is None:
            found = [
                Grant(ROLES[role], Scope(app, env), bid)
                for bid, role, app, env in self.direct.get(user_id, ())
            ]
            for group_id in sorted(self.groups_of.get(user_id, ())):
                name = self.group_names.get(group_id, str(group_id))
                found.extend(
                    Grant(ROLES[role], Scope(app, env), bid, name)
                    for bid, role, app, env in self.group_bindings.get(group_id, ())
                )
            self._grants[user_id] = found
        return found

    # -- applying changes --

    def _join(self, user_id: int, group_id: int) -> None:
        self.groups_of.setdefault(user_id, set()).add(group_id)
        self.members.setdefault(group_id, set()).add(user_id)

    def _leave(self, user_id: int, group_id: int) -> None:
        groups = self.groups_of.get(user_id)
        if groups is not None:
            groups.discard(group_id)
            if not groups:
                del self.groups_of[user_id]
        members = self.members.get(group_id)
        if members is not None:
            members.discard(user_id)
            if not members:
                del self.members[group_id]

    def apply(self, users: dict[int, UserData], groups: dict[int, GroupData]) -> set[int]:
        """Replaces what is held about these users and groups with what is stored, in the
        enforcer too, rule by rule; returns the users whose rules may have changed.

        Groups first: their bindings (the group's rules, and its scopes, on each of which
        every member has a link to it) and their members; then each user: their own
        bindings, and the groups they joined or left."""
        removed: set[Rule] = set()
        added: set[Rule] = set()
        affected = set(users)

        def links(user_id: int, group_id: int, domains: Iterable[str]) -> set[Rule]:
            sub, group = subject(user_id), group_subject(group_id)
            return {(sub, group, domain) for domain in domains}

        for group_id, group in groups.items():
            old_rules, old_domains = self._group_rules(group_id), self._domains(group_id)
            old_members = set(self.members.get(group_id, ()))
            if group.name is not None:
                self.group_names[group_id] = group.name
            if group.bindings:
                self.group_bindings[group_id] = group.bindings
            else:
                self.group_bindings.pop(group_id, None)
            new_rules, new_domains = self._group_rules(group_id), self._domains(group_id)
            removed |= old_rules - new_rules
            added |= new_rules - old_rules
            for user_id in old_members - group.members:
                self._leave(user_id, group_id)
                removed |= links(user_id, group_id, old_domains)
            for user_id in group.members - old_members:
                self._join(user_id, group_id)
                added |= links(user_id, group_id, new_domains)
            if old_domains != new_domains:
                for user_id in old_members & group.members:
                    removed |= links(user_id, group_id, old_domains - new_domains)
                    added |= links(user_id, group_id, new_domains - old_domains)
            affected |= old_members | group.members

        for user_id, user in users.items():
            sub = subject(user_id)
            old_direct = {(sub, role, f"{app}/{env}") for _, role, app, env in self.direct.get(user_id, ())}
            new_direct = {(sub, role, f"{app}/{env}") for _, role, app, env in user.bindings}
            removed |= old_direct - new_direct
            added |= new_direct - old_direct
            if user.bindings:
                self.direct[user_id] = user.bindings
            else:
                self.direct.pop(user_id, None)
            self.group_names.update(user.groups)
            current = set(self.groups_of.get(user_id, ()))
            for group_id in current - user.groups.keys():
                self._leave(user_id, group_id)
                removed |= links(user_id, group_id, self._domains(group_id))
            for group_id in user.groups.keys() - current:
                self._join(user_id, group_id)
                added |= links(user_id, group_id, self._domains(group_id))

        for user_id in affected:
            self._grants.pop(user_id, None)
        # A rule both removed and added (a group left and joined again) stays.
        if removed - added:
            self.enforcer.remove_rules([list(rule) for rule in removed - added])
        if added - removed:
            self.enforcer.add_rules([list(rule) for rule in added - removed])
        return affected


async def read_changes(
    user_ids: set[int], group_ids: set[int]
) -> tuple[dict[int, UserData], dict[int, GroupData]]:
    """What is stored now about these users and groups (deactivated users hold nothing)."""
    users = {user_id: UserData([], {}) for user_id in user_ids}
    groups = {group_id: GroupData(None, [], set()) for group_id in group_ids}
    if user_ids:
        for user_id, binding_id, role, app, env in await _fetch(USER_BINDINGS, "b.user_id", user_ids):
            users[user_id].bindings.append((binding_id, str(role), app, env))
        for group_id, user_id, name in await _fetch(USER_GROUPS, "m.user_id", user_ids):
            users[user_id].groups[group_id] = name
    if group_ids:
        for group_id, name in await _fetch(GROUP_NAMES, "id", group_ids):
            groups[group_id].name = name
        for group_id, binding_id, role, app, env in await _fetch(GROUP_BINDINGS, "group_id", group_ids):
            groups[group_id].bindings.append((binding_id, str(role), app, env))
        for group_id, user_id in await _fetch(GROUP_MEMBERS, "m.group_id", group_ids):
            groups[group_id].members.add(user_id)
    for user in users.values():
        user.bindings.sort()
    for group in groups.values():
        group.bindings.sort()
    return users, groups


# The reads on every request and every change go around the ORM: its query building costs
# more than the queries themselves (a few hundred microseconds each). Every value put into
# these statements is an integer.
#
# What is read about who may do what, once each: in full by a new process (Rules.load), for
# some users or groups as they change (read_changes). Deactivated users hold nothing.
USER_BINDINGS = (
    "SELECT b.user_id, b.id, b.role, b.application, b.environment FROM role_bindings b"
    " JOIN users u ON u.id = b.user_id WHERE u.is_active"
)
USER_GROUPS = (
    "SELECT m.group_id, m.user_id, g.name FROM group_members m"
    " JOIN users u ON u.id = m.user_id JOIN groups g ON g.id = m.group_id WHERE u.is_active"
)
GROUP_BINDINGS = (
    "SELECT group_id, id, role, application, environment FROM role_bindings WHERE group_id IS NOT NULL"
)
GROUP_MEMBERS = (
    "SELECT m.group_id, m.user_id FROM group_members m JOIN users u ON u.id = m.user_id WHERE u.is_active"
)
GROUP_NAMES = "SELECT id, name FROM groups WHERE TRUE"


async def _fetch(sql: str, column: str | None = None, among: Iterable[int] = ()) -> list[tuple]:
    """The rows of `sql`, only those whose `column` is one of `among` when given."""
    if column is not None:
        sql = f"{sql} AND {column} IN ({_ids(among)})"
    _, rows = await connections.get("default").execute_query(sql)
    return [tuple(row) for row in rows]


def _ids(values: Iterable[int]) -> str:
    return ", ".join(str(int(value)) for value in sorted(values))


async def changes_since(version: int | None) -> tuple[int, list[tuple[int, int | None, int | None]]]:
    """The latest version (0 for none) and the changes after `version`, oldest first, at
    most FULL_RELOAD_AFTER + 1 of them: one query, on the primary key's index."""
    if version is None:
        return await latest_policy_version(), []
    rows = await _fetch(
        "SELECT 0, MAX(id), NULL, NULL FROM policy_version UNION ALL"
        " SELECT 1, id, user_id, group_id FROM (SELECT id, user_id, group_id FROM policy_version"
        f" WHERE id > {int(version)} ORDER BY id LIMIT {FULL_RELOAD_AFTER + 1}) AS changes"
    )
    latest = next((int(row[1] or 0) for row in rows if row[0] == 0), 0)
    changes = sorted((row[1], row[2], row[3]) for row in rows if row[0] == 1)
    return latest, changes


# --- the authorizer --------------------------------------------------------------------------------


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
        domains = {
            scope.domain,
            f"{scope.application}/{WILDCARD}",
            f"{WILDCARD}/{scope.environment}",
            EVERYTHING.domain,
        }
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


# --- the change log -----------------------------------------------------------------------------


async def latest_policy_version() -> int:
    """The id of the latest change to who may do what (0 for none): one indexed read."""
    rows = await _fetch("SELECT MAX(id) FROM policy_version")
    return int(rows[0][0] or 0) if rows else 0


async def lock_policy() -> None:
    """Serialise changes to who may do what until the current transaction ends.

    Call inside the transaction. On PostgreSQL a transaction-scoped advisory lock; SQLite
    lets one transaction write at a time already. Holding it until commit is what makes
    change ids follow commit order, so no process skips a change committed late."""
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [POLICY_LOCK])


async def record_policy_change(*, user_id: int | None = None, group_id: int | None = None) -> None:
    """Call inside the transaction that changes a user's role bindings, group memberships or
    active state (`user_id`), or a group's role bindings (`group_id`): every process
    re-derives that user's or group's rules before its next request."""
    await lock_policy()
    await PolicyVersion.create(user_id=user_id, group_id=group_id)


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

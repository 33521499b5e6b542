"""Casbin, made to scale: the enforcer over model.conf and policy.csv, with the `g` rules
(who holds which role on which scope) in dictionaries and the matcher compiled once.

- a role manager that keeps the `g` links in dictionaries (`DomainRoleManager`): adding
  or removing a link, and asking whether one holds, costs the same however many there are
  (Casbin's default domain manager rebuilds a domain's links on first use, in quadratic
  time);
- the enforcer evaluates the matcher, parsed by Casbin and compiled once, over only the
  policy.csv rows of the requested action, without the bookkeeping `enforce_ex` repeats on
  every call (for this model's "some allow" effect; any other model goes through
  `enforce_ex`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import casbin
from casbin import util
from casbin.model import FastPolicy, fast_policy_filter
from casbin.model.policy_op import PolicyOp
from casbin.rbac import RoleManager

POLICY_DIR = Path(__file__).parent
MODEL_PATH = POLICY_DIR / "model.conf"
POLICY_PATH = POLICY_DIR / "policy.csv"

# Casbin logs every decision (denials as warnings); decisions are ours to report.
logging.getLogger("casbin").setLevel(logging.ERROR)


def role_action_lines() -> list[list[str]]:
    """policy.csv's rows, each a list of its values."""
    rows = []
    for raw in POLICY_PATH.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rows.append([token.strip() for token in line.split(",")])
    return rows


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
        for key, *rule in role_action_lines():
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

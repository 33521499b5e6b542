"""Who holds what, in memory: the bindings and memberships of active users as Casbin `g`
rules, loaded at once and then replaced user by user, group by group, as they change."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from greenlight.models import Role
from greenlight.policies.changes import Bound, GroupData, UserData, read_everything
from greenlight.policies.matcher import RoleEnforcer
from greenlight.scopes import Scope


def subject(user_id: int) -> str:
    return f"user:{user_id}"


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
        return self.scope.covers(scope)


ROLES = {role.value: role for role in Role}
Rule = tuple[str, str, str]  # a Casbin `g` rule: subject, role (or group), domain


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
        rules.build(*await read_everything())
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
